"""The library panel: every video this server has ingested for you (thumbnail, name, length, when added, the
models that made it), reopened instantly, deleted with its files, and picked for questions across videos.

`LibraryPanel.render()` lays out the panel inside the page; `wire(parts)` connects it to the page's player, chat
and state (`PageParts`, from app/ui.py). A citation of a cross-video answer (`[lecture2.mp4 03:10]`) links with
`data-video=KEY`: assets/seek.js asks the hidden switch (`#video-switch` + `#video-switch-go`) to load that video
into the player, waits for `#current-video` to name it, then seeks.
"""

from __future__ import annotations

import base64
import html
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from app.config import AppSettings
from app.export import write_subtitles
from app.links import format_clock, transcript_html
from app.service import VideoService
from app.state import SessionState, uploads
from model.errors import VideoChatError
from model.memory.library import LibraryEntry
from model.qa import AnswerDelta, AnswerDone, ChatSettings

log = logging.getLogger(__name__)

EMPTY = '<div class="library empty">Videos you upload are kept here: open one again, or ask across several.</div>'


@dataclass
class PageParts:
    """What the panel needs of the page (built in app/ui.py)."""

    state: Any
    player: Any
    status: Any
    error_box: Any
    chatbot: Any
    evidence: Any
    moments: Any
    transcript: Any
    textbox: Any
    send: Any
    dl_srt: Any
    dl_vtt: Any
    dl_md: Any
    upload_event: Any  # the player's upload event (the panel records the new video after it)
    unload: Callable[[SessionState | None], tuple[SessionState, dict[Any, Any]]]  # drop the session's video
    status_line: Callable[[SessionState], str]


def models_summary(models: dict[str, Any]) -> str:
    """The models that made a memory, in a few words ("faster-whisper packaged:base · all-minilm-l6-v2")."""
    out = []
    for name, spec in models.items():
        if not spec:
            continue
        if spec is True:  # a model that is on or off ("ocr")
            out.append(name)
            continue
        if isinstance(spec, dict):
            label = " ".join(str(spec[k]) for k in ("backend", "model") if spec.get(k)) or str(spec.get("source", ""))
        else:
            label = str(spec)
        if label:
            out.append(label.replace("packaged:", ""))
    return " · ".join(out)


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def entry_card(e: LibraryEntry, current: bool, show_owner: bool) -> str:
    thumb = (
        f'<img alt="" src="data:image/jpeg;base64,{base64.b64encode(e.thumb).decode()}">'
        if e.thumb
        else '<div class="lib-nothumb"></div>'
    )
    facts = [format_clock(e.duration), f"added {_when(e.added)}"]
    if not e.complete:
        facts.append("partly ingested")
    if e.video_file is None:
        facts.append("video file gone")
    owner = f'<div class="lib-meta">owner: {html.escape(", ".join(e.owners) or "—")}</div>' if show_owner else ""
    models = models_summary(e.models) or e.profile
    return (
        f'<div class="lib-item{" current" if current else ""}" data-key="{html.escape(e.key)}">{thumb}'
        f'<div class="lib-text"><div class="lib-name">{html.escape(e.name)}</div>'
        f'<div class="lib-meta">{" · ".join(html.escape(f) for f in facts)}</div>'
        f'<div class="lib-meta">profile {html.escape(e.profile)} · {html.escape(models)}</div>{owner}</div></div>'
    )


def _choice(e: LibraryEntry) -> tuple[str, str]:
    return (f"{e.name} ({format_clock(e.duration)})", e.key)


class LibraryPanel:
    """The panel's components and handlers; one per page build, sharing the process's `VideoService`."""

    def __init__(self, assistant: Any, settings: AppSettings, models: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.service = VideoService(assistant, settings, models)

    # ------------------------------------------------------------------------------------------ layout
    def render(self) -> None:
        with gr.Accordion("Library", open=True, elem_id="library"):
            self.listing = gr.HTML(EMPTY, elem_id="library-list")
            self.pick = gr.Radio(choices=[], label="Video", elem_id="library-pick", interactive=True)
            with gr.Row():
                self.open_btn = gr.Button("Open", size="sm", elem_id="library-open")
                self.delete_btn = gr.Button("Delete", size="sm", variant="stop", elem_id="library-delete")
                self.refresh_btn = gr.Button("Refresh", size="sm", elem_id="library-refresh")
            self.select = gr.CheckboxGroup(
                choices=[], label="Ask across these videos", elem_id="library-select", interactive=True
            )
            with gr.Row():
                self.all_btn = gr.Button("All videos", size="sm", elem_id="library-all")
                self.none_btn = gr.Button("Only the player's video", size="sm", elem_id="library-none")
            self.info = gr.Markdown("", elem_id="library-info")
        # the bridge seek.js uses to switch the player to another video of a cross-video answer
        self.switch = gr.Textbox(visible="hidden", elem_id="video-switch")
        self.switch_go = gr.Button("switch", visible="hidden", elem_id="video-switch-go")
        self.marker = gr.HTML('<span data-video=""></span>', visible="hidden", elem_id="current-video")

    # ------------------------------------------------------------------------------------------ helpers
    def record_session(self, st: SessionState, request: gr.Request | None) -> None:
        """Add the session's video (its memory complete, in the cache) to the caller's library."""
        if not (st.ready and st.video_path is not None and Path(st.video_path).is_file()):
            return
        try:
            entry = self.service.record(st.memory, Path(st.video_path), st.video_name, self._caller(st, request))
            st.video_key = entry.key
        except (VideoChatError, OSError) as err:
            log.warning("could not add %s to the library: %s", st.video_name, err)
            gr.Warning(f"{st.video_name} could not be added to the library; questions still work.")

    def _caller(self, st: SessionState | None, request: gr.Request | None) -> Any:
        user = getattr(request, "username", None) or (st.user if isinstance(st, SessionState) else None)
        return self.service.caller(user)

    def _listing(self, st: SessionState, request: gr.Request | None) -> dict[Any, Any]:
        caller = self._caller(st, request)
        entries = self.service.entries(caller)
        keys = {e.key for e in entries}
        st.selection = [k for k in st.selection if k in keys]
        show_owner = caller.admin
        cards = "".join(entry_card(e, e.key == st.video_key, show_owner) for e in entries)
        choices = [_choice(e) for e in entries]
        return {
            self.listing: f'<div class="library">{cards}</div>' if cards else EMPTY,
            self.pick: gr.Radio(choices=choices, value=st.video_key if st.video_key in keys else None),
            self.select: gr.CheckboxGroup(choices=choices, value=list(st.selection)),
            self.info: self._info(st, entries),
        }

    def _info(self, st: SessionState, entries: list[LibraryEntry]) -> str:
        if not st.selection:
            return ""
        names = [e.name for e in entries if e.key in st.selection]
        return "Questions go to: " + ", ".join(f"**{html.escape(n)}**" for n in names)

    def _marker(self, st: SessionState) -> str:
        return f'<span data-video="{html.escape(st.video_key or "")}"></span>'

    def _chat_open(self, st: SessionState) -> dict[Any, Any]:
        p = self.parts
        if st.selection:
            n = len(st.selection)
            hint = f"Ask across {n} videos…" if n > 1 else "Ask about the picked video…"
            return {p.textbox: gr.Textbox(interactive=True, placeholder=hint), p.send: gr.Button(interactive=True)}
        if st.ready:
            return {
                p.textbox: gr.Textbox(interactive=True, placeholder="Ask about the video…"),
                p.send: gr.Button(interactive=True),
            }
        return {
            p.textbox: gr.Textbox(interactive=False, placeholder="Upload a video first"),
            p.send: gr.Button(interactive=False),
        }

    def _show(
        self, st: SessionState, entry: LibraryEntry, memory: Any, seconds: dict[str, float], keep_chat: bool
    ) -> dict[Any, Any]:
        """The page's outputs with `entry`'s video in the player (its transcript and subtitles beside it)."""
        p = self.parts
        out: dict[Any, Any] = {}
        if not keep_chat:
            st, out = p.unload(st)
        else:
            uploads.release(st)  # the session no longer shows its upload (Gradio's cache cleans it up)
        st.memory = memory
        st.video_path = None  # the library's copy: never the session's to delete
        st.video_name = entry.name
        st.video_key = entry.key
        st.stage_seconds = seconds
        vtt = write_subtitles(st, "vtt")
        srt = write_subtitles(st, "srt")
        segments = list(getattr(memory.transcript, "segments", None) or [])
        video = str(entry.video_file) if entry.video_file is not None else None
        if video is None:
            gr.Warning(f"The video file of {entry.name} is gone: questions still work, the player cannot show it.")
        out.update(
            {
                p.state: st,
                p.player: gr.Video(value=video, subtitles=str(vtt) if vtt and segments else None),
                p.status: p.status_line(st),
                p.error_box: gr.Markdown("", visible=False),
                p.transcript: transcript_html(segments, duration=st.duration),
                p.dl_srt: gr.DownloadButton(value=str(srt) if srt else None, interactive=srt is not None),
                p.dl_vtt: gr.DownloadButton(value=str(vtt) if vtt else None, interactive=vtt is not None),
                self.marker: self._marker(st),
            }
        )
        out.update(self._chat_open(st))
        return out

    # ------------------------------------------------------------------------------------------ wiring
    def wire(self, parts: PageParts, demo: Any) -> None:
        self.parts = p = parts
        listing = [self.listing, self.pick, self.select, self.info]
        page = [
            p.state, p.player, p.status, p.error_box, p.chatbot, p.evidence, p.moments, p.transcript,
            p.textbox, p.send, p.dl_srt, p.dl_vtt, p.dl_md, self.marker,
        ]  # fmt: skip

        def state_of(st: SessionState | None, request: gr.Request | None) -> SessionState:
            st = st if isinstance(st, SessionState) else SessionState()
            st.user = getattr(request, "username", None) or st.user
            return st

        def on_load(st: SessionState | None, request: gr.Request) -> dict[Any, Any]:
            st = state_of(st, request)
            return {p.state: st, **self._listing(st, request)}

        demo.load(
            on_load,
            [p.state],
            [p.state, *listing],
            concurrency_limit=None,
            api_visibility="private",
            show_progress="hidden",
        )
        self.refresh_btn.click(
            on_load, [p.state], [p.state, *listing], concurrency_limit=None, api_visibility="private"
        )

        def on_uploaded(st: SessionState | None, request: gr.Request) -> dict[Any, Any]:
            """After an upload: the new video joins the library (a copy of its file is kept); a long video still
            being ingested joins when its ingest ends (app/chapters.py calls `record_session` then)."""
            st = state_of(st, request)
            if getattr(st.memory, "complete", True):
                self.record_session(st, request)
            return {p.state: st, self.marker: self._marker(st), **self._listing(st, request), **self._chat_open(st)}

        p.upload_event.then(
            on_uploaded,
            [p.state],
            [p.state, self.marker, *listing, p.textbox, p.send],
            concurrency_limit=None,
            api_visibility="private",
        )

        def on_open(key: str | None, st: SessionState | None, request: gr.Request) -> dict[Any, Any]:
            st = state_of(st, request)
            if not key:
                gr.Warning("Pick a video in the library first.")
                return {p.state: st}
            t = time.perf_counter()
            try:
                entry, memory = self.service.open(key, self._caller(st, request))
            except VideoChatError as err:
                gr.Warning(str(err))
                return {p.state: st, **self._listing(st, request)}
            out = self._show(st, entry, memory, {"reopen": time.perf_counter() - t}, keep_chat=False)
            st = out[p.state]
            out.update(self._listing(st, request))
            return out

        self.open_btn.click(
            on_open, [self.pick, p.state], page + listing, concurrency_limit=None, api_visibility="private"
        )

        def on_delete(key: str | None, st: SessionState | None, request: gr.Request) -> dict[Any, Any]:
            st = state_of(st, request)
            if not key:
                gr.Warning("Pick a video in the library first.")
                return {p.state: st}
            out: dict[Any, Any] = {}
            try:
                entry = self.service.library.entry(key, *self._scope(st, request))
                self.service.delete(key, self._caller(st, request))
            except VideoChatError as err:
                gr.Warning(str(err))
                return {p.state: st, **self._listing(st, request)}
            gr.Info(f"Deleted {entry.name} from your library.")
            st.selection = [k for k in st.selection if k != key]
            if st.video_key == key:  # the player's video: the page goes back to "upload a video"
                st, out = p.unload(st)
                out.update(
                    {
                        p.player: gr.Video(value=None, subtitles=None),
                        p.status: "Upload a video (or drop one on the player) to start.",
                        p.error_box: gr.Markdown("", visible=False),
                        self.marker: self._marker(st),
                    }
                )
            out.update({p.state: st, **self._listing(st, request), **self._chat_open(st)})
            return out

        self.delete_btn.click(
            on_delete, [self.pick, p.state], page + listing, concurrency_limit=None, api_visibility="private"
        )

        def on_select(keys: list[str] | None, st: SessionState | None, request: gr.Request) -> dict[Any, Any]:
            st = state_of(st, request)
            st.selection = list(keys or [])
            entries = self.service.entries(self._caller(st, request))
            return {p.state: st, self.info: self._info(st, entries), **self._chat_open(st)}

        self.select.input(
            on_select,
            [self.select, p.state],
            [p.state, self.info, p.textbox, p.send],
            concurrency_limit=None,
            api_visibility="private",
        )

        def on_all(st: SessionState | None, request: gr.Request) -> dict[Any, Any]:
            st = state_of(st, request)
            st.selection = [e.key for e in self.service.entries(self._caller(st, request))]
            return {p.state: st, **self._listing(st, request), **self._chat_open(st)}

        self.all_btn.click(
            on_all, [p.state], [p.state, *listing, p.textbox, p.send], concurrency_limit=None, api_visibility="private"
        )

        def on_none(st: SessionState | None, request: gr.Request) -> dict[Any, Any]:
            st = state_of(st, request)
            st.selection = []
            return {p.state: st, **self._listing(st, request), **self._chat_open(st)}

        self.none_btn.click(
            on_none, [p.state], [p.state, *listing, p.textbox, p.send], concurrency_limit=None, api_visibility="private"
        )

        def on_switch(value: str, st: SessionState | None, request: gr.Request) -> dict[Any, Any]:
            """A cited video's link was clicked: show that video (the conversation stays)."""
            st = state_of(st, request)
            key = (value or "").split("|", 1)[0].strip()
            try:
                entry, memory = self.service.open(key, self._caller(st, request))
            except VideoChatError as err:
                gr.Warning(str(err))
                return {p.state: st}
            out = self._show(st, entry, memory, {}, keep_chat=True)
            out.update(self._listing(out[p.state], request))
            return out

        switch_out = [
            p.state, p.player, p.status, p.error_box, p.transcript, p.dl_srt, p.dl_vtt, self.marker,
            p.textbox, p.send, *listing,
        ]  # fmt: skip
        self.switch_go.click(
            on_switch, [self.switch, p.state], switch_out, concurrency_limit=None, api_visibility="private"
        )

    def _scope(self, st: SessionState, request: gr.Request | None) -> tuple[str | None, bool]:
        c = self._caller(st, request)
        return c.user, c.admin

    # ------------------------------------------------------------------------------------------ asking
    def ask_stream(
        self,
        st: SessionState,
        question: str,
        settings: ChatSettings,
        request_id: str,
    ) -> tuple[AsyncIterator[AnswerDelta | AnswerDone], dict[str, tuple[str, float]], str | None]:
        """The answer over the session's picked videos: (events, cited name -> (key, duration), default name)."""
        caller = self.service.caller(st.user)
        entries = [self.service.library.entry(k, caller.user, caller.admin) for k in st.selection]
        opened = self.service.videos(entries, caller)
        if len(opened) == 1:
            e, m = opened[0]
            videos = {e.name: (e.key, m.duration)}
            default: str | None = e.name
        else:
            videos = self.service.labels(opened)
            default = None
        stream = self.service.stream(opened, question, st.history(), settings, request_id)
        return stream, videos, default
