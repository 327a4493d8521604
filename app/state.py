"""Per-browser-session state: one user's video, memory and conversation (held in `gr.State`).

Nothing here is global: each session gets its own `SessionState` and its own temporary folder
(subtitles, exports), removed when the session ends (`gr.State(delete_callback=...)`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
        """This session's own temporary folder, made on first use."""
        if self.workdir is None or not self.workdir.exists():
            self.workdir = Path(tempfile.mkdtemp(prefix=f"videochat-{self.session_id}-"))
        return self.workdir

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
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


def delete_session(state: SessionState | None) -> None:
    """`gr.State` delete callback: the session ended (tab closed or expired)."""
    if isinstance(state, SessionState):
        log.info("session %s ended; removing %s", state.session_id, state.workdir)
        uploads.release(state, delete=True)
        state.cleanup()


class UploadRegistry:
    """Which live sessions use which uploaded file, so a session's end removes files only it used.

    Gradio stores an upload by content hash, so two sessions uploading the same video share one
    file; it may be deleted only when the last of them lets go. (A count, not anyone's video.)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[Path, set[str]] = {}

    def hold(self, state: SessionState) -> None:
        if state.video_path is None:
            return
        with self._lock:
            self._users.setdefault(Path(state.video_path), set()).add(state.session_id)

    def release(self, state: SessionState, delete: bool = False) -> None:
        """Stop counting `state`'s video; with `delete`, remove the file when no session holds it."""
        if state.video_path is None:
            return
        path = Path(state.video_path)
        with self._lock:
            users = self._users.get(path, set())
            users.discard(state.session_id)
            if users:
                return
            self._users.pop(path, None)
        if delete:
            path.unlink(missing_ok=True)

    def users(self, path: Path) -> set[str]:
        with self._lock:
            return set(self._users.get(Path(path), set()))


uploads = UploadRegistry()
