"""Timestamps in answers and transcripts become links that seek the player.

The model cites moments as `[mm:ss]`, `[h:mm:ss]` or ranges like `[00:12-00:20]`. Each time inside a
bracket becomes `<a class="seek" data-seek="SECONDS" href="#t=SECONDS">`; a delegated click
listener (assets/seek.js) sets the player's `currentTime`. Model text is HTML-escaped first so
only the links we make are markup.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence

from model.timecode import CITATION_GROUP_RE, CLOCK_RE, find_times, format_time, parse_clock

__all__ = ["find_times", "format_clock", "linkify_times", "moments_html", "parse_clock", "seek_link", "transcript_html"]


def format_clock(seconds: float, duration: float | None = None) -> str:
    """The project's one clock (`model.timecode.format_time`): `mm:ss`, `h:mm:ss` for an hour-long video."""
    return format_time(seconds, duration)


def seek_link(seconds: float, label: str | None = None, duration: float | None = None) -> str:
    """The anchor the click listener understands; `label` defaults to `[mm:ss]`."""
    label = f"[{format_clock(seconds, duration)}]" if label is None else label
    t = f"{seconds:.2f}".rstrip("0").rstrip(".")
    return f'<a class="seek" data-seek="{t}" href="#t={t}" title="Play from {format_clock(seconds, duration)}">{html.escape(label)}</a>'


def linkify_times(text: str, duration: float | None = None, cited: Sequence[float] | None = None) -> str:
    """HTML-escape `text` and turn each bracketed time into a seek link.

    With `cited` (the checked `Answer.citations`' times, ends included) only those times become links: the
    answer's own check decided what is a citation. Without it (an answer still streaming), every bracketed time
    inside the video does. Times past the end stay plain text: a link there would seek nowhere.
    """

    def clock_link(m: re.Match[str]) -> str:
        clock = m.group(0)
        try:
            t = parse_clock(clock)
        except ValueError:
            return clock
        if duration is not None and t > duration + 1.0:
            return clock
        if cited is not None and not any(abs(t - c) < 1.0 for c in cited):
            return clock
        return seek_link(t, clock)

    def group_link(m: re.Match[str]) -> str:
        inner = CLOCK_RE.sub(clock_link, m.group(1))  # digits, colons and joiners only
        return f"[{inner}]"

    escaped = html.escape(text, quote=False)
    return CITATION_GROUP_RE.sub(group_link, escaped)


def transcript_html(
    segments: Iterable[object], empty: str = "No speech was found in this video.", duration: float | None = None
) -> str:
    """The transcript as lines `[mm:ss] text`, each time a seek link (segments: model.speech.Segment)."""
    rows = []
    for seg in segments:
        start = float(seg.start)  # type: ignore[attr-defined]
        text = html.escape(str(seg.text).strip())  # type: ignore[attr-defined]
        rows.append(f'<div class="tline">{seek_link(start, duration=duration)} <span>{text}</span></div>')
    if not rows:
        return f'<div class="transcript empty">{html.escape(empty)}</div>'
    return '<div class="transcript">' + "\n".join(rows) + "</div>"


def moments_html(
    moments: Iterable[tuple[float, float, str]], title: str = "Found moments", duration: float | None = None
) -> str:
    """A list of (start, end, label) moments with seek links; empty string when there are none."""
    items = []
    for start, end, label in moments:
        span = seek_link(start, f"[{format_clock(start, duration)}–{format_clock(end, duration)}]", duration)
        items.append(f"<li>{span} {html.escape(label)}</li>")
    if not items:
        return ""
    return f'<div class="moments"><b>{html.escape(title)}</b><ul>' + "".join(items) + "</ul></div>"
