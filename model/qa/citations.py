"""`[mm:ss]` / `[h:mm:ss]` / `[mm:ss-mm:ss]` citations in answers: find them, keep them inside the video."""

from __future__ import annotations

import re
from dataclasses import dataclass

from model.qa.timeparse import TOLERANCE
from model.timecode import CITATION_RE, format_time, parse_clock


@dataclass
class Citation:
    """A moment the answer points at; `source` is "model" (written by the LLM) or "search"/"evidence"."""

    seconds: float
    label: str  # as shown: "02:15" or "02:15-02:30"
    end: float | None = None  # for ranges
    source: str = "model"


def check_citations(text: str, duration: float) -> tuple[str, list[Citation], list[str]]:
    """Return (text with out-of-range citations removed or clamped, the citations kept, notes for the user).

    A citation that starts past the end is dropped from the text; a range that ends past it is clamped to the
    end. Either way a note says so, so the user is never misled silently.
    """
    citations: list[Citation] = []
    notes: list[str] = []
    limit = duration + TOLERANCE

    def fix(m: re.Match[str]) -> str:
        try:
            a = parse_clock(m.group("a"))
            b = parse_clock(m.group("b")) if m.group("b") else None
        except ValueError:  # "[1:75]" is no time: leave the text as the model wrote it
            return m.group(0)
        if a > limit:
            notes.append(
                f"The answer cited [{m.group('a')}], which is past the end of the video "
                f"({format_time(duration, duration)}); that citation was removed."
            )
            return ""
        a = min(a, duration)
        if b is not None and b > limit:
            notes.append(
                f"The answer cited a range ending at {m.group('b')}, past the end of the video; "
                f"it was shortened to end at {format_time(duration, duration)}."
            )
            b = duration
        if b is not None and b < a:
            a, b = b, a
        label = format_time(a, duration) if b is None else f"{format_time(a, duration)}-{format_time(b, duration)}"
        citations.append(Citation(seconds=float(a), label=label, end=None if b is None else float(b)))
        return f"[{label}]"

    cleaned = CITATION_RE.sub(fix, text)
    cleaned = re.sub(r"[ \t]+([.,;:!?])", r"\1", cleaned)  # no space left before punctuation by a removal
    cleaned = re.sub(r"[ \t]{2,}", " ", cleaned).strip()
    return cleaned, citations, notes
