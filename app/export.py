"""Exports: the conversation as Markdown, the transcript as SRT/VTT files."""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Sequence
from pathlib import Path

from app.links import format_clock
from app.state import SessionState, Turn

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_stem(name: str, default: str = "video") -> str:
    stem = _SAFE.sub("_", Path(name).stem).strip("._")
    return stem[:60] or default


def chat_markdown(turns: Sequence[Turn], video_name: str = "", duration: float | None = None, profile: str = "") -> str:
    """The conversation as Markdown; citations stay as the model wrote them (`[mm:ss]`)."""
    lines = [f"# Chat about {video_name or 'a video'}", ""]
    meta = []
    if duration is not None:
        meta.append(f"length {format_clock(duration)}")
    if profile:
        meta.append(f"profile {profile}")
    meta.append(f"exported {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}")
    lines += ["_" + " · ".join(meta) + "_", ""]
    for i, turn in enumerate(turns, start=1):
        lines += [f"## Q{i}: {turn.question.strip()}", ""]
        if turn.error:
            lines += [f"> Error: {turn.error}", ""]
        else:
            lines += [turn.answer.strip() or "_(no answer)_", ""]
            if turn.stopped:
                lines += ["_(stopped)_", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_chat_markdown(state: SessionState, profile: str = "") -> Path:
    """The conversation, then the video's chapters and summary when it has them."""
    path = state.dir() / f"chat-{safe_stem(state.video_name)}.md"
    text = chat_markdown(state.turns, state.video_name, state.duration, profile)
    chapters = getattr(state.memory, "chapters", None)
    if getattr(chapters, "chapters", None):
        from model.qa.chapters import to_markdown

        text += "\n" + to_markdown(chapters, float(state.duration or 0.0))
    path.write_text(text, encoding="utf-8")
    return path


def write_subtitles(state: SessionState, fmt: str) -> Path | None:
    """The transcript as `.srt` or `.vtt` in the session folder; None when there is no transcript."""
    from model.speech import to_srt, to_vtt

    transcript = getattr(state.memory, "transcript", None)
    if transcript is None:
        return None
    text = {"srt": to_srt, "vtt": to_vtt}[fmt](transcript)
    path = state.dir() / f"{safe_stem(state.video_name)}.{fmt}"
    path.write_text(text, encoding="utf-8")
    return path
