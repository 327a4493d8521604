"""`launch.py serve`: load the profile's models once, then serve the page to every session."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from app.config import AppSettings, parse_auth, settings_from_args
from app.ui import build_app, launch_options

__all__ = ["build_app", "launch_options", "serve"]

log = logging.getLogger(__name__)


def serve(args: argparse.Namespace) -> int:
    """Start the web app with `launch.py serve` flags; returns the exit code."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from model.memory.cli import StageBar, load_runtime

    settings: AppSettings = settings_from_args(args)
    auth = parse_auth(getattr(args, "auth", None))
    share = bool(getattr(args, "share", False))
    if share and auth is None:
        print(
            "WARNING: --share without --auth makes this app and its models public to anyone with the link. "
            "Pass --auth user:password (or a file, or set VIDEOCHAT_AUTH).",
            file=sys.stderr,
        )
    runtime = load_runtime(args, StageBar())  # the profile's models, once, for every session
    print(f"loaded {runtime.describe()} in {sum(runtime.load_seconds.values()):.1f} s", file=sys.stderr)

    demo = build_app(runtime, settings)
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        share=share,
        auth=auth,
        auth_message="VideoChat Studio: sign in" if auth else None,
        **launch_options(settings),
    )
    return 0
