"""Reading the memory's answer stream for the UI: deltas, the final Answer, evidence and moments."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


def make_settings(**values: Any) -> Any:
    """A `model.memory.ChatSettings` from the UI's values (fields it does not have are dropped)."""
    from model.memory import ChatSettings

    names = {f.name for f in dataclasses.fields(ChatSettings)}
    return ChatSettings(**{k: v for k, v in values.items() if k in names})


def delta_text(event: Any) -> str:
    from model.memory import AnswerDelta

    return event.text if isinstance(event, AnswerDelta) else ""


def done_answer(event: Any) -> Any | None:
    from model.memory import AnswerDone

    return event.answer if isinstance(event, AnswerDone) else None


def answer_text(answer: Any) -> str:
    return str(answer.text or "")


def evidence_items(answer: Any, memory: Any = None) -> list[tuple[np.ndarray, str]]:
    """Gallery items (thumbnail, "mm:ss–mm:ss") for the clips the answer was given (`ClipEvidence`)."""
    from app.links import format_clock

    items = []
    for ev in getattr(answer, "evidence", None) or []:
        thumb = ev.thumbnail
        if thumb is None and memory is not None and ev.index >= 0:
            thumb = memory.thumbnail(ev.index)  # the clip's cached JPEG, decoded
        if thumb is None:
            continue
        items.append((thumb, f"{format_clock(ev.start)}–{format_clock(ev.end)}"))
    return items


def answer_moments(answer: Any) -> list[tuple[float, float, str]]:
    """(start, end, label) for the moments a "when" question found."""
    out = []
    for m in getattr(answer, "moments", None) or []:
        out.append((float(m.start), float(m.end), str(m.text)))
    return out
