"""The one clock of the project: how times are written (prompt, subtitles, citations, notes, UI) and read back.

Every time a user or the model sees is floored to the second, and written `mm:ss` for videos under an hour and
`h:mm:ss` for videos of an hour or more (so a 2-hour video never mixes `30:00` and `0:30:00`). Citations in
answers use the same grammar: `[mm:ss]`, `[h:mm:ss]`, ranges `[a-b]` / `[a to b]`, and groups `[a, b and c]`.
"""

from __future__ import annotations

import math
import re

HOUR = 3600.0

# One clock: h:mm:ss, mm:ss or m:ss, with an optional fraction (".5").
CLOCK = r"\d{1,2}(?::\d{2}){1,2}(?:\.\d+)?"
CLOCK_RE = re.compile(CLOCK)
# A bracketed group of one or more clocks joined by -, –, —, "to", "," or "and": what answers cite.
CITATION_GROUP_RE = re.compile(rf"\[\s*({CLOCK}(?:\s*(?:-|–|—|to|,|and)\s*{CLOCK})*)\s*\]", flags=re.IGNORECASE)
# A single citation or range: the form the model is asked to write, checked against the video's length.
CITATION_RE = re.compile(rf"\[\s*(?P<a>{CLOCK})\s*(?:(?:-|–|—|to)\s*(?P<b>{CLOCK})\s*)?\]", flags=re.IGNORECASE)


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
        for clock in CLOCK_RE.findall(group.group(1)):
            try:
                out.append(parse_clock(clock))
            except ValueError:
                continue
    return out
