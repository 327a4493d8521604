"""A session as the page shows it: the chat as Gradio messages with seek links for the cited times, the status line
under the player, and text shown literally inside Markdown."""

from __future__ import annotations

import html
import re

from app.answers import answer_moments
from app.chapters import ingest_line
from app.links import format_clock, linkify_times, linkify_video_times, moments_html, video_moments_html
from app.state import SessionState, Turn
from model.qa import Answer

NO_VIDEO = "Upload a video (or drop one on the player) to start."


def chat_messages(state: SessionState, pending: bool = False) -> list[dict[str, str]]:
    """The chat as Gradio messages; answers carry seek links for their cited times."""
    duration = state.duration
    out: list[dict[str, str]] = []
    for i, turn in enumerate(state.turns):
        out.append({"role": "user", "content": html.escape(turn.question)})
        if turn.error:
            body = f"⚠️ {html.escape(turn.error)}"
        else:
            cited = None if turn.citations is None else turn.citations
            if turn.videos is not None:  # an answer from the library: each citation names (or defaults to) its video
                body = linkify_video_times(turn.answer, turn.videos, turn.video_citations, turn.default_video)
            else:
                body = linkify_times(turn.answer, duration, cited)
            if turn.stopped:
                body += " _(stopped)_"
            elif not turn.answer and pending and i == len(state.turns) - 1:
                body = "…"
        if body:
            out.append({"role": "assistant", "content": body})
    return out


def status_line(state: SessionState) -> str:
    """The line under the player: no video yet, ingest progress, or ready with stage times and warnings."""
    if not state.ready:
        return NO_VIDEO
    if not getattr(state.memory, "complete", True):  # still ingesting: never "ready" yet
        return ingest_line(state)
    parts = [f"**{md_text(state.video_name)}** · {format_clock(state.duration or 0)} · ready"]
    if state.stage_seconds:
        parts.append(" · ".join(f"{k} {v:.1f} s" for k, v in state.stage_seconds.items()))
    if getattr(state.memory, "cache_note", ""):
        parts.append("not saved to the cache")
    line = " — ".join(parts)
    note = getattr(state.memory, "damage_note", "")  # a damaged file: what was lost, where
    return f"{line}\n\n⚠️ {html.escape(note)}" if note else line


def answer_moments_html(state: SessionState, turn: Turn, done: Answer | None) -> str:
    """The moments the last answer found, as seek links (each naming its video for a library answer)."""
    if done is not None and turn.videos is not None:
        found = [(m.video, m.start, m.end, m.text) for m in done.moments]
        return video_moments_html(found, turn.videos, turn.default_video)
    return moments_html(answer_moments(done) if done is not None else [], duration=state.duration)


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")


def md_text(text: str) -> str:
    """`text` shown literally inside Markdown (file names, messages): its HTML and Markdown syntax escaped."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))
