"""`launch.py serve`: load the profile's models once, then serve the page to every session."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from app.access import LoginLimiter
from app.config import AppSettings, auth_on_command_line, parse_auth, settings_from_args
from app.launcher import start
from app.ui import build_app, launch_options
from model.errors import ConfigError

__all__ = ["build_app", "launch_options", "serve"]

log = logging.getLogger(__name__)


def serve(args: argparse.Namespace) -> int:
    """Start the web app with `launch.py serve` flags; returns the exit code."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from model.cli import StageBar, check_cache_dir, close_runtime, load_runtime
    from model.llm.lifecycle import termination_signal

    settings: AppSettings = settings_from_args(args)
    pairs = parse_auth(getattr(args, "auth", None))
    # Wrong passwords lock a user out for a while (the right one included); still the list of pairs for MCP.
    auth = LoginLimiter(pairs) if pairs else None
    share = bool(getattr(args, "share", False))
    if share and auth is None:
        print(
            "WARNING: --share without --auth makes this app and its models public to anyone with the link. "
            "Pass --auth FILE (one user:password a line) or set VIDEOCHAT_AUTH.",
            file=sys.stderr,
        )
    if auth_on_command_line(getattr(args, "auth", None)):
        print(
            "WARNING: a password given as --auth user:password shows in `ps` to every user of this machine; "
            "prefer --auth FILE or the VIDEOCHAT_AUTH environment variable.",
            file=sys.stderr,
        )
    check_cache_dir(settings.cache_dir)  # an unusable --cache-dir stops here, before minutes of model loading
    runtime = load_runtime(args, StageBar())  # the profile's models, once, for every session
    print(f"loaded {runtime.describe()} in {sum(runtime.load_seconds.values()):.1f} s", file=sys.stderr)
    try:
        demo = build_app(runtime, settings)
        try:
            # Blocks until Ctrl-C or SIGTERM (both reach Gradio as KeyboardInterrupt: it closes its server).
            # --mcp adds the MCP tools on the same port; --open opens the page in the default browser once ready.
            start(
                demo,
                settings,
                host=args.host,
                port=args.port,
                share=share,
                auth=auth,
                mcp=bool(getattr(args, "mcp", False)),
                open_browser=bool(getattr(args, "open", False)),
            )
        except OSError as err:  # the port is taken, the host is not this machine's...
            raise ConfigError(f"Cannot serve on {args.host}:{args.port}: {err}") from err
    finally:
        log.info("stopping the LLM engine")
        close_runtime(runtime)
    sig = termination_signal()
    return 128 + sig if sig else 0
