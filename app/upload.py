"""One upload, before the page uses it: the session's own link to the file, the size and length limits, the
per-stage timer behind the progress bar, and file-system errors in words."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import gradio as gr

from app.access import install_file_guard
from app.config import AppSettings
from app.state import SessionState, uploads
from model.errors import VideoChatError

log = logging.getLogger(__name__)


def disk_message(err: OSError) -> str:
    """A file-system error during an upload, in words (no errno, no server paths)."""
    from model.memory.cache import os_reason

    return f"The server could not read or write a file for this upload ({os_reason(err)}). Try again later."


class StageTimer:
    """Turns `progress(stage, fraction)` calls into per-stage durations and a gr.Progress bar."""

    def __init__(self, bar: gr.Progress | None) -> None:
        self.bar = bar
        self.seconds: dict[str, float] = {}
        self.stage: str | None = None
        self.t0 = time.perf_counter()
        self.start = self.t0

    def __call__(self, stage: str, fraction: float) -> None:
        now = time.perf_counter()
        if stage != self.stage:
            if self.stage is not None:
                self.seconds[self.stage] = self.seconds.get(self.stage, 0.0) + now - self.t0
            self.stage, self.t0 = stage, now
        if self.bar is not None:
            elapsed = now - self.start
            self.bar(min(max(float(fraction), 0.0), 1.0), desc=f"{stage} ({elapsed:.0f} s)")

    def finish(self) -> dict[str, float]:
        self("done", 1.0)
        self.seconds.pop("done", None)
        self.seconds["total"] = time.perf_counter() - self.start
        return self.seconds


def display_name(path: Path) -> str:
    """The name the page shows for an uploaded file."""
    return path.name


def own_upload(st: SessionState, path: Path, request: gr.Request | None) -> Path:
    """This session's own link to its upload (made on arrival, or now); a typed error when the file is gone."""
    if request is not None:
        st.session_hash = request.session_hash  # type: ignore[attr-defined]
        st.user = getattr(request, "username", None) or getattr(st, "user", None)  # type: ignore[attr-defined]
    try:
        return uploads.adopt(st.upload_key, path, getattr(st, "user", None))
    except FileNotFoundError as err:
        raise VideoChatError("The uploaded file is no longer on the server; please upload it again.") from err


def check_limits(path: Path, settings: AppSettings) -> None:
    """Refuse files over the upload size or duration limits, and GIF animations, before any decoding work: the
    same rule as `launch.py ask`/`ingest` (model.cli.check_video)."""
    from model.cli import check_video

    check_video(path, settings.max_upload_mb, settings.max_duration_min)


def wire_session_files(demo: gr.Blocks, player: gr.Video) -> None:
    """Each session's files are its own, for its user only, gone when the session ends."""

    def on_upload_arrived(video: str | None, request: gr.Request) -> None:
        """Not queued: the session links the upload the moment it arrives, so a queued upload's file survives
        the end of another session that uploaded the same bytes (Gradio stores them once)."""
        if video and request is not None and request.session_hash:
            try:
                uploads.adopt(request.session_hash, video, request.username)
            except OSError as err:  # gone already: on_upload says so
                log.info("could not link upload %s: %s", video, err)

    def on_page_load() -> None:
        install_file_guard(getattr(demo, "server_app", None), uploads)  # once, before any file is asked for

    def on_page_closed(request: gr.Request) -> None:
        if request is not None and request.session_hash:
            uploads.end_session(request.session_hash)

    player.upload(on_upload_arrived, [player], None, concurrency_limit=None, show_progress="hidden")
    demo.load(on_page_load, None, None)
    demo.unload(on_page_closed)
