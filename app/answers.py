"""Reading the memory's answer stream for the UI: deltas, the final Answer, evidence and moments."""

from __future__ import annotations

from typing import Any

import numpy as np

from model.qa import Answer, AnswerDelta, AnswerDone, ChatSettings


def make_settings(**values: Any) -> ChatSettings:
    """`ChatSettings` from the UI's values: each goes to the generation or retrieval part that has it."""
    return ChatSettings.from_values(**values)


def delta_text(event: Any) -> str:
    return event.text if isinstance(event, AnswerDelta) else ""


def done_answer(event: Any) -> Answer | None:
    return event.answer if isinstance(event, AnswerDone) else None


def answer_text(answer: Answer) -> str:
    return str(answer.text or "")


def cited_times(answer: Answer) -> list[float]:
    """Every time the checked answer cites (range ends too): the only times its text links to."""
    out: list[float] = []
    for c in answer.citations:
        out.append(float(c.seconds))
        if c.end is not None:
            out.append(float(c.end))
    return out


def cited_video_times(answer: Answer) -> list[tuple[str | None, float]]:
    """(video name or None, time) of every cited time (range ends too): what an answer from the library links."""
    out: list[tuple[str | None, float]] = []
    for c in answer.citations:
        out.append((c.video, float(c.seconds)))
        if c.end is not None:
            out.append((c.video, float(c.end)))
    return out


def evidence_items(answer: Any, memory: Any = None) -> list[tuple[np.ndarray, str]]:
    """Gallery items (thumbnail, "mm:ss–mm:ss") for the clips the answer was given (`ClipEvidence`)."""
    from app.links import format_clock

    duration = None if memory is None else memory.duration
    items = []
    for ev in getattr(answer, "evidence", None) or []:
        thumb = ev.thumbnail
        if thumb is None and memory is not None and ev.index >= 0:
            thumb = memory.thumbnail(ev.index)  # the clip's cached JPEG, decoded
        if thumb is None:
            continue
        label = f"{format_clock(ev.start, duration)}–{format_clock(ev.end, duration)}"
        video = getattr(ev, "video", None)
        items.append((thumb, f"{video} {label}" if video else label))
    return items


def answer_moments(answer: Any) -> list[tuple[float, float, str]]:
    """(start, end, label) for the moments a "when" question found."""
    out = []
    for m in getattr(answer, "moments", None) or []:
        out.append((float(m.start), float(m.end), str(m.text)))
    return out
