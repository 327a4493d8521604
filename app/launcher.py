"""Starting the built page: Gradio's server, the MCP endpoint on the same port (`--mcp`), the URL printed, and the
default browser opened once the server answers (`--open`: the app as a desktop app)."""

from __future__ import annotations

import logging
import sys
import webbrowser
from dataclasses import dataclass
from typing import Any

from app.config import AppSettings
from app.ui import launch_options

log = logging.getLogger(__name__)


@dataclass
class Launched:
    url: str  # the page (the share link when sharing)
    local_url: str
    mcp_url: str | None = None


def start(
    demo: Any,
    settings: AppSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    auth: list[tuple[str, str]] | None = None,
    mcp: bool = False,
    open_browser: bool = False,
    quiet: bool = False,
    block: bool = True,
) -> Launched:
    """Serve `demo` (from `build_app`); with `block`, until Ctrl-C/SIGTERM (Gradio then closes its server)."""
    mcp_app = None
    app_kwargs: dict[str, Any] = {}
    if mcp:
        from app.mcp_tools import McpApp

        mcp_app = McpApp(demo.videochat_service, auth=auth, host=host)
        app_kwargs["lifespan"] = mcp_app.lifespan  # runs the MCP session manager with the server
    demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        auth=auth,
        auth_message="VideoChat Studio: sign in" if auth else None,
        prevent_thread_lock=True,
        quiet=quiet,
        app_kwargs=app_kwargs,
        **launch_options(settings),
    )
    local = str(demo.local_url or f"http://{host}:{port}/")
    url = str(getattr(demo, "share_url", None) or local)
    mcp_url = None
    if mcp_app is not None:
        mcp_app.mount(demo.app)
        mcp_url = local.rstrip("/") + "/gradio_api/mcp/"
    print(f"VideoChat Studio is ready: {url}", flush=True)
    if mcp_url:
        print(f"MCP tools (streamable HTTP): {mcp_url}", flush=True)
    if open_browser:
        try:
            opened = webbrowser.open(url, new=2)
        except webbrowser.Error as err:  # no browser on this machine: the printed URL is the way in
            opened = False
            log.info("could not open a browser: %s", err)
        if not opened:
            print(f"Could not open a browser here; open {url} yourself.", file=sys.stderr, flush=True)
    launched = Launched(url=url, local_url=local, mcp_url=mcp_url)
    if block:
        demo.block_thread()
    return launched
