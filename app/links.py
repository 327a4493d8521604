"""Timestamps in answers and transcripts become links that seek the player.

The model cites moments as `[mm:ss]`, `[h:mm:ss]` or ranges like `[00:12-00:20]`. Each time inside a
bracket becomes `<a class="seek" data-seek="SECONDS" href="#t=SECONDS">`; a delegated click
listener (assets/seek.js) sets the player's `currentTime`. Model text is HTML-escaped first so
only the links we make are markup.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence

from model.timecode import CITATION_GROUP_RE, CITED_CLOCK_RE, CLOCK_RE, find_times, format_time, parse_clock

__all__ = [
    "find_times",
    "format_clock",
    "linkify_times",
    "linkify_video_times",
    "moments_html",
    "parse_clock",
    "seek_link",
    "transcript_html",
    "video_moments_html",
]
VideoMap = Mapping[str, tuple[str, float]]  # a cited video's name -> (its library key, its duration)


def format_clock(seconds: float, duration: float | None = None) -> str:
    """The project's one clock (`model.timecode.format_time`): `mm:ss`, `h:mm:ss` for an hour-long video."""
    return format_time(seconds, duration)


def seek_link(seconds: float, label: str | None = None, duration: float | None = None, video: str | None = None) -> str:
    """The anchor the click listener understands; `label` defaults to `[mm:ss]`. With `video` (a library key) the
    click first switches the player to that video (`href="#t=SECONDS&v=KEY"`)."""
    label = f"[{format_clock(seconds, duration)}]" if label is None else label
    t = f"{seconds:.2f}".rstrip("0").rstrip(".")
    # The chat keeps only class, href and title of a link (Gradio drops data-* there): the key rides in the href too.
    switch = f' data-video="{html.escape(video)}"' if video else ""
    href = f"#t={t}&amp;v={html.escape(video)}" if video else f"#t={t}"
    return (
        f'<a class="seek" data-seek="{t}"{switch} href="{href}" title="Play from {format_clock(seconds, duration)}">'
        f"{html.escape(label)}</a>"
    )


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
        if any(i.group("video") for i in CITED_CLOCK_RE.finditer(m.group(1))):
            return m.group(0)  # names a video: a citation of an answer about several videos
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


def linkify_video_times(
    text: str,
    videos: VideoMap,
    cited: Sequence[tuple[str | None, float]] | None = None,
    default: str | None = None,
) -> str:
    """`linkify_times` for an answer about several videos: `[lecture2.mp4 03:10]` links to 03:10 of lecture2.mp4
    (`data-video` = its key, so a click switches the player there). A clock without a name belongs to the video
    named before it in the bracket, else `default`. With `cited` (the checked citations' (video, time)), only those
    become links; times past their own video's end never do."""
    from model.qa.citations import resolve_video

    def group_link(m: re.Match[str]) -> str:
        inner = m.group(1)
        out: list[str] = []
        pos = 0
        video = default
        for item in CITED_CLOCK_RE.finditer(inner):
            raw = item.group("video")
            if raw:
                video = resolve_video(html.unescape(raw), list(videos)) or None
            clock = item.group("clock")
            out.append(inner[pos : item.start("clock")])
            pos = item.end("clock")
            target = videos.get(video) if video else None
            try:
                t = parse_clock(clock)
            except ValueError:
                target = None
                t = 0.0
            ok = target is not None and t <= target[1] + 1.0
            if ok and cited is not None:
                ok = any((v or default) == video and abs(t - c) < 1.0 for v, c in cited)
            out.append(seek_link(t, clock, target[1], target[0]) if ok and target is not None else clock)
        out.append(inner[pos:])
        return "[" + "".join(out) + "]"

    return CITATION_GROUP_RE.sub(group_link, html.escape(text, quote=False))


def video_moments_html(
    moments: Iterable[tuple[str | None, float, float, str]],
    videos: VideoMap,
    default: str | None = None,
    title: str = "Found moments",
) -> str:
    """(video name, start, end, label) moments of several videos, each link switching the player to its video."""
    items = []
    for name, start, end, label in moments:
        video = name or default
        key, duration = videos.get(video or "", ("", None))
        span = seek_link(
            start, f"[{video} {format_clock(start, duration)}–{format_clock(end, duration)}]", duration, key
        )
        items.append(f"<li>{span} {html.escape(label)}</li>")
    if not items:
        return ""
    return f'<div class="moments"><b>{html.escape(title)}</b><ul>' + "".join(items) + "</ul></div>"
