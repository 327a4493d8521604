"""The Gradio page: player + transcript on the left, streaming chat on the right.

`build_app(runtime, settings)` makes the Blocks; all sessions share `runtime` (models loaded once)
and one `Assistant`; everything about one user's video lives in that session's `gr.State`.
"""

from __future__ import annotations

import asyncio
import html
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import gradio as gr

from app.answers import (
    answer_text,
    cited_times,
    cited_video_times,
    delta_text,
    done_answer,
    evidence_items,
    make_settings,
)
from app.api import register_api
from app.chapters import ChapterPanel
from app.config import AppSettings
from app.export import write_chat_markdown, write_subtitles
from app.library import LibraryPanel, PageParts
from app.links import (
    transcript_html,
)
from app.state import SessionState, Turn, delete_session, uploads
from app.upload import StageTimer, check_limits, disk_message, display_name, own_upload, wire_session_files
from app.view import NO_VIDEO, answer_moments_html, chat_messages, md_text, status_line
from model.errors import VideoChatError

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
EXAMPLES = [
    "What is this video about?",
    "Summarize the video in three bullet points with times.",
    "When is something said about the weather?",
    "What happens at 0:30?",
]


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
            timer = StageTimer(progress)
            try:
                path = own_upload(st, path, request)  # this session's own link: no other session's end takes it
                check_limits(path, settings)
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
            st.video_name = display_name(path)
            st.stage_seconds = timer.finish()
            uploads.hold(st)
            vtt = write_subtitles(st, "vtt")
            srt = write_subtitles(st, "srt")
            segments = getattr(getattr(memory, "transcript", None), "segments", None) or []
            return {
                state: st,
                player: gr.Video(subtitles=str(vtt) if vtt and segments else None),
                status: status_line(st),
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
            state, player, status, error_box, chatbot, evidence, moments, transcript, textbox, send, dl_srt, dl_vtt, dl_md
        ]  # fmt: skip
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
                chatbot: chat_messages(st, pending=True),
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
                        yield {chatbot: chat_messages(st, pending=True)}
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
            gallery = evidence_items(done, st.memory) if (done is not None and show_ev) else []
            md = write_chat_markdown(st, profile.name)
            yield {
                chatbot: chat_messages(st),
                textbox: gr.Textbox(interactive=True),
                send: gr.Button(interactive=True),
                stop: gr.Button(interactive=False),
                evidence: gallery or None,
                moments: answer_moments_html(st, turn, done),
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
                chatbot: chat_messages(st) if isinstance(st, SessionState) else [],
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
        wire_session_files(demo, player)

        # ---- library and API --------------------------------------------------------------------
        page = PageParts(
            state, player, status, error_box, chatbot, evidence, moments, transcript, textbox, send,
            dl_srt, dl_vtt, dl_md, upload_event, unload, status_line,
        )  # fmt: skip
        library.wire(page, demo)
        chapter_panel.wire(page, demo)
        register_api(library.service)

    demo.videochat_service = library.service  # type: ignore[attr-defined]  # the MCP tools share it
    demo.queue(default_concurrency_limit=settings.concurrency)
    return demo
