"""Timestamps in answers and transcripts become links that seek the player.

The model cites moments as `[mm:ss]`, `[h:mm:ss]` or ranges like `[00:12-00:20]`. Each time inside a
bracket becomes `<a class="seek" data-seek="SECONDS" href="#t=SECONDS">`; a delegated click
listener (assets/seek.js) sets the player's `currentTime`. Model text is HTML-escaped first so
only the links we make are markup.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

# One clock: h:mm:ss, mm:ss or m:ss, with optional fraction (".5").
_CLOCK = r"\d{1,2}(?::\d{2}){1,2}(?:\.\d+)?"
# A bracketed group of one or more clocks joined by -, –, —, "to", "," or "and".
_GROUP_RE = re.compile(
    rf"\[\s*({_CLOCK}(?:\s*(?:-|–|—|to|,|and)\s*{_CLOCK})*)\s*\]",
    flags=re.IGNORECASE,
)
_CLOCK_RE = re.compile(_CLOCK)


def parse_clock(text: str) -> float:
    """`"1:02:03"` -> 3723.0, `"02:03.5"` -> 123.5. Raises ValueError for malformed clocks."""
    if not re.fullmatch(_CLOCK, text.strip()):
        raise ValueError(f"not a clock: {text!r}")
    parts = text.strip().split(":")
    *whole, last = parts
    seconds = float(last)
    if any(int(p) < 0 for p in whole) or seconds >= 60 or (len(parts) == 3 and int(parts[1]) >= 60):
        raise ValueError(f"not a clock: {text!r}")
    value = 0.0
    for p in whole:
        value = value * 60 + int(p)
    return value * 60 + seconds


def format_clock(seconds: float, force_hours: bool = False) -> str:
    """3723.4 -> "1:02:03"; 83 -> "01:23" (the form the model is asked to cite in)."""
    total = max(0, int(seconds))
    h, rem = divmod(total, 3600)
    m, s = divmod(rem, 60)
    if h or force_hours:
        return f"{h}:{m:02d}:{s:02d}"
    return f"{m:02d}:{s:02d}"


def seek_link(seconds: float, label: str | None = None) -> str:
    """The anchor the click listener understands; `label` defaults to `[mm:ss]`."""
    label = f"[{format_clock(seconds)}]" if label is None else label
    t = f"{seconds:.2f}".rstrip("0").rstrip(".")
    return f'<a class="seek" data-seek="{t}" href="#t={t}" title="Play from {format_clock(seconds)}">{html.escape(label)}</a>'


def find_times(text: str) -> list[float]:
    """Every cited time in `text`, in order (ranges give both ends)."""
    out: list[float] = []
    for group in _GROUP_RE.finditer(text):
        for clock in _CLOCK_RE.findall(group.group(1)):
            try:
                out.append(parse_clock(clock))
            except ValueError:
                continue
    return out


def linkify_times(text: str, duration: float | None = None) -> str:
    """HTML-escape `text` and turn each bracketed time into a seek link.

    Times past the end of the video (when `duration` is known) stay plain text: a link there
    would seek nowhere, and the user should see the model cited a moment that does not exist.
    """

    def clock_link(m: re.Match[str]) -> str:
        clock = m.group(0)
        try:
            t = parse_clock(clock)
        except ValueError:
            return clock
        if duration is not None and t > duration + 1.0:
            return clock
        return seek_link(t, clock)

    def group_link(m: re.Match[str]) -> str:
        inner = _CLOCK_RE.sub(clock_link, m.group(1))  # digits, colons and joiners only
        return f"[{inner}]"

    escaped = html.escape(text, quote=False)
    return _GROUP_RE.sub(group_link, escaped)


def transcript_html(segments: Iterable[object], empty: str = "No speech was found in this video.") -> str:
    """The transcript as lines `[mm:ss] text`, each time a seek link (segments: model.speech.Segment)."""
    rows = []
    for seg in segments:
        start = float(seg.start)  # type: ignore[attr-defined]
        text = html.escape(str(seg.text).strip())  # type: ignore[attr-defined]
        rows.append(f'<div class="tline">{seek_link(start)} <span>{text}</span></div>')
    if not rows:
        return f'<div class="transcript empty">{html.escape(empty)}</div>'
    return '<div class="transcript">' + "\n".join(rows) + "</div>"


def moments_html(moments: Iterable[tuple[float, float, str]], title: str = "Found moments") -> str:
    """A list of (start, end, label) moments with seek links; empty string when there are none."""
    items = []
    for start, end, label in moments:
        span = seek_link(start, f"[{format_clock(start)}–{format_clock(end)}]")
        items.append(f"<li>{span} {html.escape(label)}</li>")
    if not items:
        return ""
    return f'<div class="moments"><b>{html.escape(title)}</b><ul>' + "".join(items) + "</ul></div>"
