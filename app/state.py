"""Per-browser-session state: one user's video, memory and conversation (held in `gr.State`).

Nothing here is global: each session gets its own `SessionState` and its own folder (subtitles, exports, its link
to the upload) inside Gradio's upload folder, removed when the session ends (`gr.State(delete_callback=...)`,
`demo.unload`); `app.access` serves those files to their owner only.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.access import UploadRegistry as BaseUploadRegistry
from app.access import session_folder

log = logging.getLogger(__name__)


@dataclass
class Turn:
    """One question and its checked answer; `citations`: the times it cites (None while it streams)."""

    question: str
    answer: str = ""
    stopped: bool = False
    error: str | None = None
    citations: list[float] | None = None
    # An answer from the library (one or several videos): cited name -> (key, duration), the name unnamed
    # citations belong to, and the checked (video, time) citations; None for a question about the player's video.
    videos: dict[str, tuple[str, float]] | None = None
    default_video: str | None = None
    video_citations: list[tuple[str | None, float]] | None = None


@dataclass
class SessionState:
    session_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    workdir: Path | None = None
    video_path: Path | None = None  # the uploaded file (Gradio's upload cache)
    video_name: str = ""
    memory: Any = None  # model.memory.VideoMemory
    turns: list[Turn] = field(default_factory=list)
    request_id: str | None = None  # the answer streaming now, for Stop
    stage_seconds: dict[str, float] = field(default_factory=dict)
    user: str | None = None  # the signed-in user (None without sign-in)
    video_key: str | None = None  # the library key of the video in the player
    selection: list[str] = field(default_factory=list)  # library keys questions go to (empty: the player's video)

    @property
    def ready(self) -> bool:
        return self.memory is not None

    @property
    def duration(self) -> float | None:
        info = getattr(self.memory, "info", None)
        return float(info.duration) if info is not None else None

    def dir(self) -> Path:
        """This session's own folder, made on first use: inside Gradio's upload folder, so Gradio serves its files
        in place (no copy in a shared cache that would outlive the session), to this session's user only."""
        if self.workdir is None or not self.workdir.exists():
            self.workdir = session_folder(self.session_id)
            uploads.attach(self.upload_key, self.workdir, getattr(self, "user", None))
        return self.workdir

    @property
    def upload_key(self) -> str:
        """The key of this browser session's uploads (Gradio's session hash once known)."""
        return getattr(self, "session_hash", None) or self.session_id

    def new_request_id(self) -> str:
        self.request_id = f"{self.session_id}-{uuid.uuid4().hex[:8]}"
        return self.request_id

    def history(self) -> list[tuple[str, str]]:
        """Finished turns as (question, answer) pairs for the prompt."""
        return [(t.question, t.answer) for t in self.turns if t.answer and not t.error]

    def reset_conversation(self) -> None:
        self.turns.clear()
        self.request_id = None

    def reset_video(self) -> None:
        """Forget the video and conversation; drop this session's files (not the shared memory cache)."""
        self.reset_conversation()
        self.memory = None
        self.video_path = None
        self.video_name = ""
        self.video_key = None
        self.stage_seconds = {}
        self.cleanup()

    def cleanup(self) -> None:
        if self.workdir is not None:
            uploads.detach(self.upload_key, self.workdir)
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


def delete_session(state: SessionState | None) -> None:
    """`gr.State` delete callback: the session ended (tab closed or expired)."""
    if isinstance(state, SessionState):
        log.info("session %s ended; removing %s", state.session_id, state.workdir)
        uploads.release(state, delete=True)
        state.cleanup()


class UploadRegistry(BaseUploadRegistry):
    """`app.access.UploadRegistry` with the calls the page makes with a SessionState."""

    def hold(self, state: SessionState) -> None:
        """The session now uses `state.video_path` (its own link, taken when the upload arrived)."""

    def release(self, state: SessionState, delete: bool = False) -> None:  # type: ignore[override]
        """The session stops using its video (its link goes); with `delete` the session ended: all of it goes."""
        if delete:
            self.end_session(state.upload_key)
        else:
            self.drop(state.upload_key, state.video_path)


uploads = UploadRegistry()
