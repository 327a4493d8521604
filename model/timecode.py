"""The one clock of the project: how times are written (prompt, subtitles, citations, notes, UI) and read back.

Every time a user or the model sees is floored to the second, and written `mm:ss` for videos under an hour and
`h:mm:ss` for videos of an hour or more (so a 2-hour video never mixes `30:00` and `0:30:00`). Citations in
answers use the same grammar: `[mm:ss]`, `[h:mm:ss]`, ranges `[a-b]` / `[a to b]`, and groups `[a, b and c]`.
Answers about several videos name the video before the time: `[lecture2.mp4 03:10]`, `[a.mp4 00:05-00:09]`,
`[a.mp4 00:05, b.mp4 01:10]` (a file name with its extension, no brackets).
"""

from __future__ import annotations

import math
import re

HOUR = 3600.0

# One clock: h:mm:ss, mm:ss or m:ss, with an optional fraction (".5").
CLOCK = r"\d{1,2}(?::\d{2}){1,2}(?:\.\d+)?"
CLOCK_RE = re.compile(CLOCK)
# A video's name inside a citation: a file name with its extension ("lecture 2.mp4"); no brackets, line breaks, commas,
# semicolons or colons (so a name never spans a clock and the grammar stays linear).
VIDEO_NAME = r"[^\[\]\n\s,;:][^\[\]\n,;:]{0,200}?\.[A-Za-z0-9]{1,5}"
_ITEM = rf"(?:{VIDEO_NAME}\s+)?{CLOCK}"
# A bracketed group of one or more clocks joined by -, –, —, "to", "," or "and": what answers cite. Group 1 is
# the inside; each clock in it may follow a video's name (`CITED_CLOCK_RE` reads them one by one).
CITATION_GROUP_RE = re.compile(rf"\[\s*({_ITEM}(?:\s*(?:-|–|—|to|,|and)\s*{_ITEM})*)\s*\]", flags=re.IGNORECASE)
_JOINER = re.compile(r"^(?:(?:and|to)\s+)+", flags=re.IGNORECASE)  # "00:05 and b.mp4 00:10": the name is b.mp4
CITED_CLOCK_RE = re.compile(rf"(?:(?P<video>{VIDEO_NAME})\s+)?(?P<clock>{CLOCK})", flags=re.IGNORECASE)
# A single citation or range, optionally naming its video: the form the model is asked to write, checked against
# the (named) video's length.
CITATION_RE = re.compile(
    rf"\[\s*(?:(?P<video>{VIDEO_NAME})\s+)?(?P<a>{CLOCK})\s*(?:(?:-|–|—|to)\s*(?P<b>{CLOCK})\s*)?\]",
    flags=re.IGNORECASE,
)


def uses_hours(duration: float | None) -> bool:
    return duration is not None and duration >= HOUR


def format_time(seconds: float, duration: float | None = None) -> str:
    """`mm:ss`, or `h:mm:ss` for a video of an hour or more (and for any time past an hour). Floors to the second."""
    total = max(0, math.floor(seconds + 1e-6))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    if h or uses_hours(duration):
        return f"{h}:{m:02d}:{s:02d}"
    return f"{m:02d}:{s:02d}"


def format_range(start: float, end: float, duration: float | None = None) -> str:
    """`a-b`, with the start floored and the end rounded up so the range always covers what it labels."""
    return f"{format_time(start, duration)}-{format_time(math.ceil(end - 1e-6), duration)}"


def example_time(duration: float | None) -> str:
    """A sample citation in the form this video's answers should use."""
    return "1:02:03" if uses_hours(duration) else "02:15"


def parse_clock(text: str) -> float:
    """`"1:02:03"` -> 3723.0, `"02:03.5"` -> 123.5. Raises ValueError for malformed clocks."""
    text = text.strip()
    if not re.fullmatch(CLOCK, text):
        raise ValueError(f"not a clock: {text!r}")
    parts = text.split(":")
    *whole, last = parts
    seconds = float(last)
    if seconds >= 60 or (len(parts) == 3 and int(parts[1]) >= 60):
        raise ValueError(f"not a clock: {text!r}")
    value = 0.0
    for p in whole:
        value = value * 60 + int(p)
    return value * 60 + seconds


def find_times(text: str) -> list[float]:
    """Every cited time in `text`, in order (ranges and groups give each clock)."""
    out: list[float] = []
    for group in CITATION_GROUP_RE.finditer(text):
        for item in CITED_CLOCK_RE.finditer(group.group(1)):
            try:
                out.append(parse_clock(item.group("clock")))
            except ValueError:
                continue
    return out


def find_video_times(text: str) -> list[tuple[str | None, float]]:
    """Every cited (video name or None, time) in `text`, in order; a clock without a name takes the name before it
    in the same bracket (`[a.mp4 00:05-00:09]` gives a.mp4 twice)."""
    out: list[tuple[str | None, float]] = []
    for group in CITATION_GROUP_RE.finditer(text):
        video: str | None = None
        for item in CITED_CLOCK_RE.finditer(group.group(1)):
            video = _JOINER.sub("", item.group("video") or "") or video
            try:
                out.append((video, parse_clock(item.group("clock"))))
            except ValueError:
                continue
    return out


def citation_name(name: str, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """`name` as the citation grammar reads it (a file name with an extension, none of `[]\\n,;:`), and unlike
    every name in `taken` ("talk.mp4" -> "talk (2).mp4")."""
    clean = re.sub(r"[\[\]\n,;:]+", " ", name).strip() or "video"
    clean = re.sub(r"\s+", " ", clean)
    if not re.search(r"\.[A-Za-z0-9]{1,5}$", clean):
        clean += ".video"
    stem, dot, ext = clean.rpartition(".")
    out, n = clean, 2
    while out.lower() in {t.lower() for t in taken}:
        out, n = f"{stem} ({n}){dot}{ext}", n + 1
    return out


def format_citation(seconds: float, duration: float | None = None, video: str | None = None) -> str:
    """The inside of a citation: `02:15`, or `lecture2.mp4 02:15` for an answer about several videos."""
    clock = format_time(seconds, duration)
    return f"{video} {clock}" if video else clock
