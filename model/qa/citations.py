"""`[mm:ss]` / `[h:mm:ss]` / `[mm:ss-mm:ss]` citations in answers: find them, keep them inside the video.

Answers about several videos cite `[lecture2.mp4 03:10]`: `check_video_citations` checks each against its own
video's length.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath

from model.qa.timeparse import TOLERANCE
from model.timecode import CITATION_RE, format_time, parse_clock


@dataclass
class Citation:
    """A moment the answer points at; `source` is "model" (written by the LLM) or "search"/"evidence"."""

    seconds: float
    label: str  # as shown: "02:15" or "02:15-02:30" ("a.mp4 02:15" in an answer about several videos)
    end: float | None = None  # for ranges
    source: str = "model"
    video: str | None = None  # the cited video's name, in answers about several videos


def _check_one(
    m: re.Match[str], duration: float, video: str | None, citations: list[Citation], notes: list[str]
) -> str:
    """One citation checked against `duration`: the text to put back ("" when it is past the end)."""
    try:
        a = parse_clock(m.group("a"))
        b = parse_clock(m.group("b")) if m.group("b") else None
    except ValueError:  # "[1:75]" is no time: leave the text as the model wrote it
        return m.group(0)
    where = f" of {video}" if video else " of the video"
    limit = duration + TOLERANCE
    if a > limit:
        notes.append(
            f"The answer cited [{m.group('a')}], which is past the end{where} "
            f"({format_time(duration, duration)}); that citation was removed."
        )
        return ""
    a = min(a, duration)
    if b is not None and b > limit:
        notes.append(
            f"The answer cited a range ending at {m.group('b')}, past the end{where}; "
            f"it was shortened to end at {format_time(duration, duration)}."
        )
        b = duration
    if b is not None and b < a:
        a, b = b, a
    label = format_time(a, duration) if b is None else f"{format_time(a, duration)}-{format_time(b, duration)}"
    if video:
        label = f"{video} {label}"
    citations.append(Citation(seconds=float(a), label=label, end=None if b is None else float(b), video=video))
    return f"[{label}]"


def _tidy(text: str) -> str:
    text = re.sub(r"[ \t]+([.,;:!?])", r"\1", text)  # no space left before punctuation by a removal
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def check_citations(text: str, duration: float) -> tuple[str, list[Citation], list[str]]:
    """Return (text with out-of-range citations removed or clamped, the citations kept, notes for the user).

    A citation that starts past the end is dropped from the text; a range that ends past it is clamped to the
    end. Either way a note says so, so the user is never misled silently. (A citation naming a video belongs to
    answers about several videos and is left as written.)
    """
    citations: list[Citation] = []
    notes: list[str] = []

    def fix(m: re.Match[str]) -> str:
        if m.group("video"):
            return m.group(0)
        return _check_one(m, duration, None, citations, notes)

    return _tidy(CITATION_RE.sub(fix, text)), citations, notes


def resolve_video(name: str, names: Mapping[str, float] | list[str]) -> str | None:
    """The known video a cited name means: the same name (any case), the same name without its extension, or
    the one known name that starts with it; None when there is none or several."""
    known = list(names)
    want = name.strip().lower()
    for n in known:
        if n.lower() == want:
            return n
    stem = PurePath(want).stem if "." in want else want
    hits = [n for n in known if PurePath(n.lower()).stem == stem]
    if len(hits) == 1:
        return hits[0]
    hits = [n for n in known if n.lower().startswith(stem)]
    return hits[0] if len(hits) == 1 else None


def check_video_citations(
    text: str, durations: Mapping[str, float], default: str | None = None
) -> tuple[str, list[Citation], list[str]]:
    """`check_citations` for an answer about several videos (`durations`: video name -> length).

    Each citation is checked against its own video. A citation without a name belongs to the video cited last
    before it (else `default`) and is rewritten with that name, so every kept citation names its video. A name
    that is none of the videos is left as written, with a note, and is no citation.
    """
    citations: list[Citation] = []
    notes: list[str] = []
    last: list[str | None] = [default]

    def fix(m: re.Match[str]) -> str:
        raw = m.group("video")
        if raw:
            video = resolve_video(raw, durations)
            if video is None:
                notes.append(f"The answer cited {raw!r}, which is none of the videos asked about.")
                return m.group(0)
            last[0] = video
        else:
            video = last[0]
        if video is None or video not in durations:
            return m.group(0)
        return _check_one(m, float(durations[video]), video, citations, notes)

    return _tidy(CITATION_RE.sub(fix, text)), citations, notes
