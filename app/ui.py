"""The Gradio page: player + transcript on the left, streaming chat on the right.

`build_app(runtime, settings)` makes the Blocks; all sessions share `runtime` (models loaded once)
and one `Assistant`; everything about one user's video lives in that session's `gr.State`.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import gradio as gr

from app.access import install_file_guard
from app.answers import (
    answer_moments,
    answer_text,
    cited_times,
    cited_video_times,
    delta_text,
    done_answer,
    evidence_items,
    make_settings,
)
from app.api import register_api
from app.chapters import ChapterPanel, ingest_line
from app.config import AppSettings
from app.export import write_chat_markdown, write_subtitles
from app.library import LibraryPanel, PageParts
from app.links import (
    format_clock,
    linkify_times,
    linkify_video_times,
    moments_html,
    transcript_html,
    video_moments_html,
)
from app.state import SessionState, Turn, delete_session, uploads
from model.errors import VideoChatError

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
EXAMPLES = [
    "What is this video about?",
    "Summarize the video in three bullet points with times.",
    "When is something said about the weather?",
    "What happens at 0:30?",
]
NO_VIDEO = "Upload a video (or drop one on the player) to start."


def launch_options(settings: AppSettings) -> dict[str, Any]:
    """Keyword arguments for `Blocks.launch` that the page needs (Gradio 6 takes css/js there)."""
    return {
        "css_paths": [ASSETS / "app.css"],
        "js": (ASSETS / "seek.js").read_text(),
        "max_file_size": settings.max_file_size,
        "theme": gr.themes.Soft(),
        "show_error": True,
        "allowed_paths": [str(library_root(settings))],  # the library's copies of the videos, for the player
    }


def library_root(settings: AppSettings) -> Path:
    """Where the library keeps its video copies (inside the memory cache folder)."""
    from model.memory.library import library_root as root

    if settings.cache_dir is not None:
        return root(settings.cache_dir)
    from model.assets import data_dir

    return root(data_dir() / "memory")


def _messages(state: SessionState, pending: bool = False) -> list[dict[str, str]]:
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


def _status_line(state: SessionState) -> str:
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


def disk_message(err: OSError) -> str:
    """A file-system error during an upload, in words (no errno, no server paths)."""
    from model.memory.cache import os_reason

    return f"The server could not read or write a file for this upload ({os_reason(err)}). Try again later."


class _StageTimer:
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


def build_app(runtime: Any, settings: AppSettings | None = None) -> gr.Blocks:
    """The whole page. `runtime`: a loaded `model.runtime.Runtime` shared by every session."""
    settings = settings or AppSettings()
    assistant = runtime.assistant(cache_dir=settings.cache_dir)
    library = LibraryPanel(assistant, settings, {**runtime.model_ids(), "ocr": bool(runtime.profile.ocr)})
    chapter_panel = ChapterPanel(assistant, on_complete=library.record_session)  # long videos: chat at once
    profile = runtime.profile
    sampling = profile.sampling

    with gr.Blocks(title=settings.title, delete_cache=(1800, settings.session_ttl_s)) as demo:
        state = gr.State(None, time_to_live=settings.session_ttl_s, delete_callback=delete_session)

        with gr.Row(equal_height=False):
            gr.Markdown(f"## {settings.title}")
            gr.Markdown(f"`{html.escape(runtime.describe())}`", elem_id="runtime-line")
        gr.Markdown(profile.notice, elem_id="notice", visible=bool(profile.notice))

        with gr.Row(equal_height=False):
            with gr.Column(scale=5):
                player = gr.Video(
                    label="Video",
                    sources=["upload"],
                    elem_id="player",
                    height=360,
                    interactive=True,
                )
                status = gr.Markdown(NO_VIDEO, elem_id="status-line")
                error_box = gr.Markdown("", elem_id="error-box", visible=False)
                moments = gr.HTML("", elem_id="moments")
                chapter_panel.render()
                with gr.Accordion("Transcript", open=True):
                    transcript = gr.HTML(
                        '<div class="transcript empty">The transcript appears here.</div>', elem_id="transcript"
                    )
                with gr.Row():
                    new_video = gr.Button("New video", size="sm")
                    dl_srt = gr.DownloadButton("Transcript .srt", size="sm", interactive=False, elem_id="dl-srt")
                    dl_vtt = gr.DownloadButton("Transcript .vtt", size="sm", interactive=False, elem_id="dl-vtt")
                library.render()

            with gr.Column(scale=6):
                chatbot = gr.Chatbot(
                    label="Chat",
                    elem_id="chat",
                    height=460,
                    buttons=["copy"],
                    placeholder="Answers cite times like [01:23]: click one to jump there.",
                )
                with gr.Row(equal_height=True):
                    textbox = gr.Textbox(
                        placeholder="Upload a video first",
                        show_label=False,
                        scale=8,
                        interactive=False,
                        elem_id="question",
                        max_lines=4,
                    )
                    send = gr.Button("Send", variant="primary", scale=1, interactive=False, elem_id="send")
                    stop = gr.Button("Stop", variant="stop", scale=1, interactive=False, elem_id="stop")
                gr.Examples(EXAMPLES, inputs=[textbox], label="Try")
                with gr.Row():
                    clear = gr.Button("Clear chat", size="sm", elem_id="clear")
                    dl_md = gr.DownloadButton("Export chat .md", size="sm", interactive=False, elem_id="dl-md")
                evidence = gr.Gallery(
                    label="Evidence: clips the last answer was given",
                    columns=4,
                    height=200,
                    elem_id="evidence",
                    allow_preview=True,
                    interactive=False,
                )
                with gr.Accordion("Settings", open=False, elem_id="settings"):
                    fps = gr.Slider(0.1, 4.0, value=sampling.fps, step=0.1, label="Sampling fps (next upload)")
                    frames_per_clip = gr.Slider(
                        1, 32, value=sampling.frames_per_clip, step=1, label="Frames per clip (next upload)"
                    )
                    temperature = gr.Slider(
                        0.0, 1.5, value=profile.temperature, step=0.05, label="Temperature", elem_id="temperature"
                    )
                    max_tokens = gr.Slider(
                        16, 2048, value=profile.max_new_tokens, step=16, label="Max new tokens", elem_id="max-tokens"
                    )
                    use_speech = gr.Checkbox(True, label="Use speech (transcript) in answers")
                    show_evidence = gr.Checkbox(True, label="Show evidence")

        # ---- upload -------------------------------------------------------------------------
        def unload(st: SessionState | None) -> tuple[SessionState, dict]:
            """Drop the session's video (not other sessions'); the outputs of a page with the chat locked."""
            st = st if isinstance(st, SessionState) else SessionState()
            uploads.release(st)
            st.reset_video()
            return st, {
                state: st,
                chatbot: [],
                evidence: None,
                moments: "",
                transcript: '<div class="transcript empty">The transcript appears here.</div>',
                textbox: gr.Textbox(interactive=False, placeholder="Upload a video first", value=""),
                send: gr.Button(interactive=False),
                dl_srt: gr.DownloadButton(value=None, interactive=False),
                dl_vtt: gr.DownloadButton(value=None, interactive=False),
                dl_md: gr.DownloadButton(value=None, interactive=False),
            }

        def on_upload(
            video: str | None,
            st: SessionState | None,
            fps_v: float,
            fpc_v: float,
            request: gr.Request = None,  # type: ignore[assignment]  # Gradio fills it in
            progress=gr.Progress(),
        ):
            st, locked = unload(st)
            if not video:
                return {**locked, status: NO_VIDEO, error_box: gr.Markdown(visible=False)}
            path = Path(video)
            timer = _StageTimer(progress)
            try:
                path = own_upload(st, path, request)  # this session's own link: no other session's end takes it
                _check_limits(path, settings)
                memory = chapter_panel.first_memory(st, path, timer, float(fps_v), int(fpc_v))  # first chunk
            except (VideoChatError, OSError) as err:
                message = str(err) if isinstance(err, VideoChatError) else disk_message(err)
                log.info("upload refused: %s", err)
                gr.Warning(message)
                return {
                    **locked,
                    player: gr.Video(value=None),
                    status: NO_VIDEO,
                    error_box: gr.Markdown(f"**Could not use this file:** {md_text(message)}", visible=True),
                }
            if memory.cache_note:  # full or read-only cache folder: this session still gets its answers
                gr.Warning(memory.cache_note)
            st.memory = memory
            st.video_path = path
            st.video_name = _display_name(path)
            st.stage_seconds = timer.finish()
            uploads.hold(st)
            vtt = write_subtitles(st, "vtt")
            srt = write_subtitles(st, "srt")
            segments = getattr(getattr(memory, "transcript", None), "segments", None) or []
            return {
                state: st,
                player: gr.Video(subtitles=str(vtt) if vtt and segments else None),
                status: _status_line(st),
                error_box: gr.Markdown("", visible=False),
                chatbot: [],
                evidence: None,
                moments: "",
                transcript: transcript_html(segments, duration=st.duration),
                textbox: gr.Textbox(interactive=True, placeholder="Ask about the video…", value=""),
                send: gr.Button(interactive=True),
                dl_srt: gr.DownloadButton(value=str(srt) if srt else None, interactive=srt is not None),
                dl_vtt: gr.DownloadButton(value=str(vtt) if vtt else None, interactive=vtt is not None),
                dl_md: gr.DownloadButton(value=None, interactive=False),
            }

        upload_outputs = [
            state,
            player,
            status,
            error_box,
            chatbot,
            evidence,
            moments,
            transcript,
            textbox,
            send,
            dl_srt,
            dl_vtt,
            dl_md,
        ]
        upload_event = player.upload(
            on_upload,
            [player, state, fps, frames_per_clip],
            upload_outputs,
            concurrency_limit=settings.ingest_concurrency,
            concurrency_id="ingest",
            show_progress="full",
        )

        def on_new_video(st: SessionState | None):
            st, locked = unload(st)
            return {
                **locked,
                player: gr.Video(value=None, subtitles=None),
                status: NO_VIDEO,
                error_box: gr.Markdown("", visible=False),
            }

        new_video.click(on_new_video, [state], upload_outputs, concurrency_limit=None)
        player.clear(on_new_video, [state], upload_outputs, concurrency_limit=None)

        # ---- ask ------------------------------------------------------------------------------
        async def on_ask(
            question: str,
            st: SessionState | None,
            temp: float,
            max_new: float,
            speech: bool,
            show_ev: bool,
        ) -> AsyncIterator[dict]:
            question = (question or "").strip()
            if not isinstance(st, SessionState) or not (st.ready or st.selection):
                gr.Warning("Upload a video first.")
                return
            if not question:
                return
            turn = Turn(question=question)
            st.turns.append(turn)
            request_id = st.new_request_id()
            yield {
                chatbot: _messages(st, pending=True),
                textbox: gr.Textbox(value="", interactive=False),
                send: gr.Button(interactive=False),
                stop: gr.Button(interactive=True),
            }
            chat_settings = make_settings(
                temperature=float(temp),
                max_tokens=int(max_new),
                use_speech=bool(speech),
            )
            done = None
            last_yield = 0.0
            try:
                if st.selection:  # the videos picked in the library (one, several or all)
                    stream, turn.videos, turn.default_video = library.ask_stream(
                        st, question, chat_settings, request_id
                    )
                else:
                    stream = assistant.ask(st.memory, question, st.history(), chat_settings, request_id)
                async for event in stream:
                    answer = done_answer(event)
                    if answer is not None:
                        done = answer
                        turn.answer = answer_text(answer) or turn.answer
                        turn.citations = cited_times(answer)
                        turn.video_citations = cited_video_times(answer)
                        break
                    turn.answer += delta_text(event)
                    now = time.perf_counter()
                    if now - last_yield > 0.05:  # don't re-send the chat for every token
                        last_yield = now
                        yield {chatbot: _messages(st, pending=True)}
            except VideoChatError as err:
                turn.error = str(err)
                gr.Warning(str(err))
            except asyncio.CancelledError:
                turn.stopped = True
                raise
            finally:
                if st.request_id == request_id:
                    st.request_id = None
                if done is None and not turn.error:
                    turn.stopped = True
            found = answer_moments(done) if done is not None else []
            gallery = evidence_items(done, st.memory) if (done is not None and show_ev) else []
            md = write_chat_markdown(st, profile.name)
            yield {
                chatbot: _messages(st),
                textbox: gr.Textbox(interactive=True),
                send: gr.Button(interactive=True),
                stop: gr.Button(interactive=False),
                evidence: gallery or None,
                moments: (
                    video_moments_html(
                        [(m.video, m.start, m.end, m.text) for m in done.moments], turn.videos, turn.default_video
                    )
                    if done is not None and turn.videos is not None
                    else moments_html(found, duration=st.duration)
                ),
                dl_md: gr.DownloadButton(value=str(md), interactive=True),
            }

        ask_event = gr.on(
            triggers=[textbox.submit, send.click],
            fn=on_ask,
            inputs=[textbox, state, temperature, max_tokens, use_speech, show_evidence],
            outputs=[chatbot, textbox, send, stop, evidence, moments, dl_md],
            concurrency_limit=settings.concurrency,
            concurrency_id="ask",
            show_progress="hidden",
        )

        async def on_stop(st: SessionState | None):
            if isinstance(st, SessionState) and st.request_id:
                request_id, st.request_id = st.request_id, None
                if st.turns:
                    st.turns[-1].stopped = True
                try:
                    await assistant.abort(request_id)
                except Exception:  # the answer may already be finished; nothing to abort then
                    log.debug("abort(%s) failed", request_id, exc_info=True)
            md = write_chat_markdown(st, profile.name) if isinstance(st, SessionState) and st.turns else None
            return {
                chatbot: _messages(st) if isinstance(st, SessionState) else [],
                textbox: gr.Textbox(interactive=bool(isinstance(st, SessionState) and st.ready)),
                send: gr.Button(interactive=bool(isinstance(st, SessionState) and st.ready)),
                stop: gr.Button(interactive=False),
                dl_md: gr.DownloadButton(value=str(md) if md else None, interactive=md is not None),
            }

        stop.click(
            on_stop,
            [state],
            [chatbot, textbox, send, stop, dl_md],
            cancels=[ask_event],
            concurrency_limit=None,
        )

        def on_clear(st: SessionState | None):
            if isinstance(st, SessionState):
                st.reset_conversation()
            return {
                chatbot: [],
                evidence: None,
                moments: "",
                dl_md: gr.DownloadButton(value=None, interactive=False),
            }

        clear.click(on_clear, [state], [chatbot, evidence, moments, dl_md], concurrency_limit=None)
        chatbot.clear(on_clear, [state], [chatbot, evidence, moments, dl_md], concurrency_limit=None)

        # ---- files: each session's own, for its user only, gone when it ends -------------------------
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

        # ---- library and API --------------------------------------------------------------------
        page = PageParts(
            state, player, status, error_box, chatbot, evidence, moments, transcript, textbox, send,
            dl_srt, dl_vtt, dl_md, upload_event, unload, _status_line,
        )  # fmt: skip
        library.wire(page, demo)
        chapter_panel.wire(page, demo)
        register_api(library.service)

    demo.videochat_service = library.service  # type: ignore[attr-defined]  # the MCP tools share it
    demo.queue(default_concurrency_limit=settings.concurrency)
    return demo


def _display_name(path: Path) -> str:
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


def _check_limits(path: Path, settings: AppSettings) -> None:
    """Refuse files over the upload size or duration limits, and GIF animations, before any decoding work: the
    same rule as `launch.py ask`/`ingest` (model.cli.check_video)."""
    from model.cli import check_video

    check_video(path, settings.max_upload_mb, settings.max_duration_min)


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")


def md_text(text: str) -> str:
    """`text` shown literally inside Markdown (file names, messages): its HTML and Markdown syntax escaped."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))
