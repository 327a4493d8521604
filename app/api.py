"""The HTTP API: Gradio endpoints with clear names, for `gradio_client` (and the MCP tools' twins in app/mcp_tools.py).

    /library        the videos in your library
    /ingest         add a video (an upload, or a path inside the server's --media-dir folders)
    /ask            ask about one, several or all of your videos; citations come back as data
    /find_moments   which of your videos talk about something, with the matching moments
    /transcript     a video's timed transcript and chapters
    /delete         take a video out of your library

With sign-in on (`--auth`), the API needs it too (`Client(url, auth=(user, password))`) and each user sees their
own videos. A refused request raises a Gradio error whose message says why (no tracebacks).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
from gradio import FileData

from app.service import ApiInputError, Caller, VideoService
from model.errors import VideoChatError

log = logging.getLogger(__name__)

ENDPOINTS = ("library", "ingest", "ask", "find_moments", "transcript", "delete")


def _user(request: gr.Request | None) -> str | None:
    return getattr(request, "username", None) or None


def _clear_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A VideoChatError becomes a gr.Error with its message (what API clients see); signature kept for the docs."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except VideoChatError as err:
                raise gr.Error(str(err)) from err

        return run_async

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VideoChatError as err:
            raise gr.Error(str(err)) from err

    return run


def upload_source(service: VideoService, video: Any) -> tuple[Path, str]:
    """(the file to ingest, its name) from an API upload (a FileData dict) or a server path (a string)."""
    from gradio.utils import get_upload_folder

    if isinstance(video, dict | FileData):
        data = video if isinstance(video, dict) else video.model_dump()
        path = Path(str(data.get("path") or ""))
        name = str(data.get("orig_name") or path.name)
        try:
            inside = path.resolve().is_relative_to(Path(get_upload_folder()).resolve())
        except OSError:
            inside = False
        if not inside:  # a "file" that was never uploaded: treat its path like any server path
            return service.server_path(str(path)), name
        if not path.is_file():
            raise ApiInputError("The uploaded file is gone from the server; upload it again.")
        return path, name
    if isinstance(video, str) and video.strip():
        path = service.server_path(video.strip())
        return path, path.name
    raise ApiInputError("Give a video: an upload (gradio_client.handle_file(path)) or a server path.")


def register_api(service: VideoService) -> None:
    """Add the named endpoints to the Blocks being built (call inside `with gr.Blocks():`)."""
    settings = service.settings

    def caller(request: gr.Request | None) -> Caller:
        return service.caller(_user(request))

    def library(request: gr.Request) -> list[dict[str, Any]]:
        """The videos in your library, newest first: key, name, duration (s), when added, models, owners."""
        return [e.to_dict() for e in service.entries(caller(request))]

    def ingest(video: FileData | str, name: str = "", request: gr.Request = None) -> dict[str, Any]:  # type: ignore[assignment]
        """Add a video to your library (processed once; the same bytes again reopen at once).

        Args:
            video: the video: an upload (gradio_client.handle_file(path)) or a path inside the server's media folders
            name: the name to show and cite it by (default: the file's name)
        """
        source, orig = upload_source(service, video)
        return service.ingest(source, name.strip() or orig, caller(request)).to_dict()

    async def ask(
        question: str,
        videos: list[str] | None = None,
        max_tokens: int = 0,
        request: gr.Request = None,  # type: ignore[assignment]
    ) -> dict[str, Any]:
        """Ask about one, several or all of your videos. The answer's citations come back as data: video, key,
        seconds, end, label ("lecture2.mp4 03:10") and a seek fragment ("#t=190").

        Args:
            question: the question
            videos: video names or keys; empty or ["all"] for every video in your library
            max_tokens: the answer's length limit in tokens (0: the profile's default)
        """
        return await service.ask(question, videos, caller(request), max_tokens=max_tokens or None)

    def find_moments(
        query: str,
        videos: list[str] | None = None,
        limit: int = 3,
        request: gr.Request = None,  # type: ignore[assignment]
    ) -> list[dict[str, Any]]:
        """Which of your videos talk about something: per matching video, its best moments (start, end, reason).

        Args:
            query: what to look for ("gravity", or "which of my videos talks about gravity?")
            videos: video names or keys; empty or ["all"] for every video in your library
            limit: moments per video
        """
        return service.find_moments(query, videos, caller(request), limit=limit)

    def transcript(video: str, request: gr.Request) -> dict[str, Any]:
        """A video's timed transcript (start, end, text) and its chapters.

        Args:
            video: the video's name or key
        """
        return service.transcript(video, caller(request))

    def delete(video: str, request: gr.Request) -> dict[str, Any]:
        """Take a video out of your library; its memory and files go when no one else has it.

        Args:
            video: the video's name or key
        """
        who = caller(request)
        [entry] = service.resolve([video], who)
        removed = service.delete(entry.key, who)
        return {"key": entry.key, "name": entry.name, "deleted": True, "files_removed": removed}

    gr.api(_clear_errors(library), api_name="library", concurrency_limit=None)
    gr.api(
        _clear_errors(ingest),
        api_name="ingest",
        concurrency_limit=settings.ingest_concurrency,
        concurrency_id="ingest",
    )
    gr.api(_clear_errors(ask), api_name="ask", concurrency_limit=settings.concurrency, concurrency_id="ask")
    gr.api(_clear_errors(find_moments), api_name="find_moments", concurrency_limit=None)
    gr.api(_clear_errors(transcript), api_name="transcript", concurrency_limit=None)
    gr.api(_clear_errors(delete), api_name="delete", concurrency_limit=None)
