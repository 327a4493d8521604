"""MCP tools over the same service as the HTTP API, served on the app's own port at `/gradio_api/mcp/`
(`launch.py --mcp`): `list_videos`, `ingest_video`, `ask_videos`, `find_moments`, `get_transcript`.

Why not Gradio's `mcp_server=True`: Gradio 6 builds its MCP server on the `mcp` 1.x SDK (`gradio[mcp]` pins
`mcp<2`), while vLLM 0.32, which serves the LLM, requires `mcp>=2`; one environment cannot hold both. So the
tools are defined here with the installed `mcp` 2.x SDK (`MCPServer`, streamable HTTP) and mounted where Gradio
would put its own, with the same names and docstrings as the API endpoints.

Auth applies: with `--auth`, every MCP request needs HTTP Basic credentials of one of the app's users
(`Authorization: Basic ...`), and each user sees only their own videos, as in the page and the API.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from app.service import Caller, VideoService
from model.errors import VideoChatError

log = logging.getLogger(__name__)

MCP_PATH = "/gradio_api/mcp"
USER_SCOPE_KEY = "videochat_user"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def basic_user(
    headers: Sequence[tuple[bytes, bytes]],
    users: dict[str, str],
    check: Callable[[str, str], bool] | None = None,
) -> str | None:
    """The user whose Basic credentials the request carries (None when missing or wrong). `check(user, password)`,
    when given, decides instead of `users` (the page's sign-in check, with its lockout after wrong passwords)."""
    raw = next((v for k, v in headers if k.lower() == b"authorization"), b"").decode("latin-1")
    if not raw.lower().startswith("basic "):
        return None
    try:
        user, sep, password = base64.b64decode(raw[6:].strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not sep:
        return None
    if check is not None:
        return user if check(user, password) else None
    want = users.get(user)
    if want is None or not hmac.compare_digest(want.encode(), password.encode()):
        return None
    return user


class McpApp:
    """The MCP server, its ASGI app with the auth gate, and the lifespan that runs its session manager."""

    def __init__(self, service: VideoService, auth: list[tuple[str, str]] | None = None, host: str = "127.0.0.1"):
        self.service = service
        self.users = dict(auth or [])
        check = getattr(auth, "check", None)  # the page's sign-in check (wrong passwords lock a user out a while)
        self.check: Callable[[str, str], bool] | None = check if callable(check) else None
        self.server = MCPServer(
            "videochat-studio",
            instructions=(
                "Tools over a library of videos: ingest a video, list the library, ask questions whose answers "
                "cite [video mm:ss] moments (returned as data), find which videos talk about something, and get "
                "a video's transcript and chapters."
            ),
            log_level="WARNING",
        )
        self._tools()
        self.inner = self.server.streamable_http_app(streamable_http_path="/", host=host)

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Any) -> AsyncIterator[None]:
        async with self.server.session_manager.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.users:
            user = basic_user(scope.get("headers") or [], self.users, self.check)
            if user is None:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [(b"www-authenticate", b'Basic realm="VideoChat Studio MCP"'),
                                    (b"content-type", b"text/plain; charset=utf-8")],
                    }
                )  # fmt: skip
                await send({"type": "http.response.body", "body": b"Sign in: this server needs --auth credentials."})
                return
            scope = {**scope, USER_SCOPE_KEY: user}
        await self.inner(scope, receive, send)

    def mount(self, fastapi_app: Any) -> None:
        """Put the MCP endpoint first in the running app's routes (before Gradio's catch-all routes)."""
        from starlette.routing import Mount

        fastapi_app.router.routes.insert(0, Mount(MCP_PATH, app=self))

    # ------------------------------------------------------------------------------------------ tools
    def _tools(self) -> None:
        service = self.service

        def who(ctx: Context) -> Caller:
            request = ctx.request_context.request
            scope = getattr(request, "scope", {}) or {}
            return service.caller(scope.get(USER_SCOPE_KEY))

        def clear(fn: Callable[[], Any]) -> Any:
            try:
                return fn()
            except VideoChatError as err:
                raise ToolError(str(err)) from err

        @self.server.tool(structured_output=True)
        def list_videos(ctx: Context) -> dict[str, Any]:
            """The videos in your library, newest first: key, name, duration (s), when added, models, owners."""
            return {"videos": clear(lambda: [e.to_dict() for e in service.entries(who(ctx))])}

        @self.server.tool(structured_output=True)
        def ingest_video(ctx: Context, path: str = "", data_base64: str = "", name: str = "") -> dict[str, Any]:
            """Add a video to your library: a path inside the server's media folders (--media-dir), or the file's
            bytes as base64 with its name. Processed once; the same bytes again reopen at once.

            Args:
                path: the video's path on the server (inside a --media-dir folder)
                data_base64: the video file's bytes, base64 (a data: URL works too)
                name: the name to show and cite it by (default: the file's name)
            """

            def run() -> dict[str, Any]:
                caller = who(ctx)
                if data_base64:
                    done = service.ingest_bytes(service.decode_base64(data_base64), name or "video.mp4", caller)
                elif path:
                    source = service.server_path(path)
                    done = service.ingest(source, name or source.name, caller)
                else:
                    raise VideoChatError("Give the video's path or its bytes (data_base64).")
                return done.to_dict()

            return clear(run)  # type: ignore[no-any-return]

        @self.server.tool(structured_output=True)
        async def ask_videos(
            ctx: Context, question: str, videos: list[str] | None = None, max_tokens: int = 0
        ) -> dict[str, Any]:
            """Ask about one, several or all of your videos. Citations come back as data: video, key, seconds,
            end, label ("lecture2.mp4 03:10") and a seek fragment ("#t=190").

            Args:
                question: the question
                videos: video names or keys; empty for every video in your library
                max_tokens: the answer's length limit in tokens (0: the profile's default)
            """
            try:
                return await service.ask(question, videos, who(ctx), max_tokens=max_tokens or None)
            except VideoChatError as err:
                raise ToolError(str(err)) from err

        @self.server.tool(structured_output=True)
        def find_moments(ctx: Context, query: str, videos: list[str] | None = None, limit: int = 3) -> dict[str, Any]:
            """Which of your videos talk about something: per matching video, its best moments (start, end, reason).

            Args:
                query: what to look for ("gravity", or "which of my videos talks about gravity?")
                videos: video names or keys; empty for every video in your library
                limit: moments per video
            """
            return {"videos": clear(lambda: service.find_moments(query, videos, who(ctx), limit=limit))}

        @self.server.tool(structured_output=True)
        def get_transcript(ctx: Context, video: str) -> dict[str, Any]:
            """A video's timed transcript (start, end, text) and its chapters.

            Args:
                video: the video's name or key
            """
            return clear(lambda: service.transcript(video, who(ctx)))  # type: ignore[no-any-return]
