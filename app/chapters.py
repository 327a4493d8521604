"""Long videos in the page: the chat opens after the first chunk is ingested, the page shows how far the video is
ready while the rest is ingested, and when it is done a clickable chapters list (seek links) appears beside the
transcript with WebVTT and YouTube-style chapter downloads.

`ChapterPanel.render()` lays out the panel (inside the page's left column); `first_memory()` is what the upload
handler waits for (the first chunk, not the whole video); `wire(parts, demo)` ticks a timer after an upload that
refreshes the status line, the transcript and the progress bar from the shared ingest job, and once the job is done
writes the chapters (the Assistant caches them beside the memory) and stops.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from app.export import safe_stem, write_subtitles
from app.links import format_clock, seek_link, transcript_html
from app.state import SessionState
from model.errors import VideoChatError
from model.qa.chapters import Chapters, to_webvtt, to_youtube

log = logging.getLogger(__name__)

EMPTY = '<div class="chapters empty">Chapters appear here once the whole video is ingested.</div>'
SHORT = '<div class="chapters empty">No chapters for a video this short.</div>'
CHAPTERS_MIN_S = 120.0  # shorter videos get no chapters in the page (one chapter says nothing)
TRANSCRIPT_EVERY_S = 5.0  # while ingesting, the transcript is redrawn at most this often


def chapters_html(chapters: Chapters | None, duration: float | None) -> str:
    """The chapters as a list of seek links `[mm:ss] Title`, and the summary under it."""
    if chapters is None or not chapters.chapters:
        return EMPTY
    rows = [
        f'<li>{seek_link(c.start, duration=duration)} <span class="chapter-title">{html.escape(c.title)}</span></li>'
        for c in chapters.chapters
    ]
    summary = f'<p class="chapter-summary">{html.escape(chapters.summary)}</p>' if chapters.summary else ""
    return f'<div class="chapters"><ol>{"".join(rows)}</ol>{summary}</div>'


def progress_html(fraction: float, seen: float, duration: float) -> str:
    """A bar of how much of the video is ready, with the time it reaches ('' when all of it is)."""
    if fraction >= 1.0:
        return ""
    pct = max(0.0, min(1.0, fraction)) * 100
    return (
        f'<div class="ingest-progress" data-fraction="{fraction:.4f}">'
        '<div style="background:#e5e7eb;border-radius:4px;height:8px;overflow:hidden">'
        f'<div style="background:#6366f1;height:8px;width:{pct:.1f}%"></div></div>'
        f"<small>Ready up to {format_clock(seen, duration)} of {format_clock(duration, duration)} "
        f"({pct:.0f}%): ask about that part now.</small></div>"
    )


def ingest_line(state: SessionState) -> str:
    """The status line while the video is still being ingested (never says "ready": the page is not yet)."""
    memory = state.memory
    d = float(memory.duration)
    seen = float(memory.seen_until)
    return (
        f"**{html.escape(state.video_name)}** · {format_clock(d)} · ingesting: seen up to "
        f"{format_clock(seen, d)} ({100 * seen / max(d, 1e-9):.0f}%) — ask about what is seen so far"
    )


def write_chapter_files(state: SessionState, chapters: Chapters) -> tuple[Path, Path]:
    """`<video>.chapters.vtt` and `<video>.chapters.txt` (YouTube description list) in the session folder."""
    stem = safe_stem(state.video_name)
    vtt = state.dir() / f"{stem}.chapters.vtt"
    txt = state.dir() / f"{stem}.chapters.txt"
    vtt.write_text(to_webvtt(chapters), encoding="utf-8")
    txt.write_text(to_youtube(chapters, float(state.memory.duration)), encoding="utf-8")
    return vtt, txt


class ChapterPanel:
    """Streaming ingest and chapters for the page; one per app, sessions tell theirs apart by session id."""

    def __init__(self, assistant: Any, on_complete: Callable[[SessionState, Any], None] | None = None) -> None:
        self.assistant = assistant
        self.on_complete = on_complete  # (state, request) when a video the page showed in part is all in
        self._jobs: dict[str, str] = {}  # session id -> the memory key of its ingest job
        self._drawn: dict[str, tuple[int, float]] = {}  # session id -> (transcript lines drawn, when)
        self._started: dict[str, float] = {}
        self._partial: set[str] = set()  # sessions whose page shows a memory still being ingested

    # -- layout ------------------------------------------------------------------------------------------
    def render(self) -> None:
        with gr.Accordion("Chapters", open=True, elem_id="chapters-box"):
            self.progress = gr.HTML("", elem_id="ingest-progress")
            self.html = gr.HTML(EMPTY, elem_id="chapters")
            with gr.Row():
                self.dl_vtt = gr.DownloadButton(
                    "Chapters .vtt", size="sm", interactive=False, elem_id="dl-chapters-vtt"
                )
                self.dl_txt = gr.DownloadButton(
                    "Chapters (YouTube list)", size="sm", interactive=False, elem_id="dl-chapters-txt"
                )
        self.ticker = gr.Timer(1.0, active=False)

    # -- upload ------------------------------------------------------------------------------------------
    def first_memory(self, st: SessionState, path: Path, progress: Any, fps: float, frames_per_clip: int) -> Any:
        """Start (or join) the video's ingest and wait for its first chunk: the memory the chat can use now."""
        self._started[st.session_id] = time.perf_counter()
        job = self.assistant.start_ingest(path, progress=progress, fps=fps, frames_per_clip=frames_per_clip)
        try:
            memory = job.wait_first()
        finally:
            job.remove_listener(progress)  # the upload's progress bar is gone once the handler returns
        self._jobs[st.session_id] = job.key
        self._drawn[st.session_id] = (len(memory.transcript.segments), time.perf_counter())
        if memory.complete:
            self._partial.discard(st.session_id)
        else:
            self._partial.add(st.session_id)
        return memory

    def forget(self, st: SessionState | None) -> None:
        if isinstance(st, SessionState):
            for d in (self._jobs, self._drawn, self._started):
                d.pop(st.session_id, None)
            self._partial.discard(st.session_id)

    def _job(self, st: SessionState | None) -> Any:
        if not isinstance(st, SessionState) or st.memory is None:
            return None
        key = self._jobs.get(st.session_id)
        if key is None or key != getattr(st.memory, "key", None):
            return None  # another video is open now (the library, a new upload)
        return self.assistant.streams.job(key)

    # -- events ------------------------------------------------------------------------------------------
    def wire(self, parts: Any, demo: Any) -> None:
        p = parts
        outputs = [p.status, p.transcript, p.player, p.dl_srt, p.dl_vtt, self.progress, self.html]
        outputs += [self.dl_vtt, self.dl_txt, self.ticker]

        def idle() -> dict[Any, Any]:
            return {
                self.progress: "",
                self.html: EMPTY,
                self.dl_vtt: gr.DownloadButton(value=None, interactive=False),
                self.dl_txt: gr.DownloadButton(value=None, interactive=False),
                self.ticker: gr.Timer(active=False),
            }

        async def on_started(st: SessionState | None, request: gr.Request) -> dict[Any, Any]:
            """After the upload handler: tick while the ingest runs; chapters at once when it is already done."""
            job = self._job(st)
            log.info(
                "after upload: job %s, done %s", None if job is None else job.key[:8], job is not None and job.done
            )
            if job is None:
                return idle()
            if not job.done:
                out = idle()
                out[self.progress] = progress_html(job.fraction, job.seen_until, job.duration)
                out[self.ticker] = gr.Timer(active=True)
                return out
            return await self._finished(st, job, p, request)

        p.upload_event.then(
            on_started, [p.state], outputs, concurrency_limit=None, show_progress="hidden", api_visibility="private"
        )

        async def on_tick(st: SessionState | None, request: gr.Request) -> dict[Any, Any]:
            job = self._job(st)
            if job is None:
                return {self.ticker: gr.Timer(active=False)}
            assert isinstance(st, SessionState)
            if job.error is not None and job.done:
                log.info("ingest of %s failed: %s", st.video_name, job.error)
                if isinstance(job.error, VideoChatError):
                    gr.Warning(f"Ingest stopped: {job.error} Answers use what was ingested before.")
                return {self.ticker: gr.Timer(active=False), self.progress: ""}
            if job.memory is not None:
                st.memory = job.memory  # the newest snapshot: questions see everything ingested so far
            if not job.done:
                out: dict[Any, Any] = {
                    p.status: p.status_line(st),
                    self.progress: progress_html(job.fraction, job.seen_until, job.duration),
                }
                lines, when = self._drawn.get(st.session_id, (0, 0.0))
                segments = st.memory.transcript.segments
                if len(segments) != lines and time.perf_counter() - when >= TRANSCRIPT_EVERY_S:
                    out[p.transcript] = transcript_html(segments, duration=st.duration)
                    self._drawn[st.session_id] = (len(segments), time.perf_counter())
                return out
            return await self._finished(st, job, p, request)

        self.ticker.tick(
            on_tick, [p.state], outputs, concurrency_limit=None, show_progress="hidden", api_visibility="private"
        )

    async def _finished(self, st: SessionState | None, job: Any, p: Any, request: Any = None) -> dict[Any, Any]:
        """The whole video is in: final status, transcript and subtitles (when the page showed part of it), then
        the chapters."""
        assert isinstance(st, SessionState)
        memory = job.memory
        st.memory = memory
        log.info("%s is ingested (page showed part of it: %s)", st.video_name, st.session_id in self._partial)
        out: dict[Any, Any] = {self.progress: "", self.ticker: gr.Timer(active=False)}
        if st.session_id in self._partial:  # the upload showed a partial memory: the page catches up
            self._partial.discard(st.session_id)
            if self.on_complete is not None:  # e.g. the library, which keeps only complete memories
                self.on_complete(st, request)
            started = self._started.get(st.session_id)
            st.stage_seconds = {
                "first chunk": float(job.first_chunk_s or 0.0),
                "total": time.perf_counter() - started if started else float(memory.timings.get("ingest_wall_s", 0)),
            }
            vtt = write_subtitles(st, "vtt")
            srt = write_subtitles(st, "srt")
            segments = memory.transcript.segments
            out[p.status] = p.status_line(st)
            out[p.transcript] = transcript_html(segments, duration=st.duration)
            out[p.player] = gr.Video(subtitles=str(vtt) if vtt and segments else None)
            out[p.dl_srt] = gr.DownloadButton(value=str(srt) if srt else None, interactive=srt is not None)
            out[p.dl_vtt] = gr.DownloadButton(value=str(vtt) if vtt else None, interactive=vtt is not None)
        if memory.duration < CHAPTERS_MIN_S:
            out[self.html] = SHORT
            return out
        try:
            chapters = await self.assistant.chapters(memory)
        except VideoChatError as err:
            log.warning("no chapters for %s: %s", st.video_name, err)
            chapters = None
        out[self.html] = chapters_html(chapters, st.duration)
        if chapters is not None and chapters.chapters:
            vtt_path, txt_path = write_chapter_files(st, chapters)
            out[self.dl_vtt] = gr.DownloadButton(value=str(vtt_path), interactive=True)
            out[self.dl_txt] = gr.DownloadButton(value=str(txt_path), interactive=True)
        return out
