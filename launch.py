"""VideoChat Studio: one entry point.

python launch.py [serve]                 start the web app (default)
python launch.py ask VIDEO "question"    answer one question about a video
python launch.py ingest VIDEO --json     probe + clip plan (+ transcript, memory)
python launch.py convert --from SRC --to DIR   convert InternVideo2-Chat-8B for vLLM
python launch.py bench NAME ...          benchmarks (sample | encoder | llm | asr | memory | eval | app | library)
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

BENCHES = {
    "sample": "tools.bench.sample",
    "encoder": "tools.bench.encoder",
    "llm": "tools.bench.llm",
    "asr": "tools.bench.asr",
    "memory": "tools.bench.memory",
    "eval": "tools.eval_memory",
    "app": "tools.bench.app",
    "library": "tools.bench.library",
    "gpu": "tools.gpu_check",  # the GPU profile end to end on random weights of the real shapes (scripts/gpu_check.sh)
    "tags": "tools.bench.tags",
    "ingest": "tools.bench.ingest",
    "visual": "tools.eval_visual",
}
COMMANDS = ("serve", "ask", "ingest", "convert", "bench")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="auto", help="auto | internvideo2-chat-8b | lite | tiny")
    p.add_argument(
        "--llm-url", default=None, help="OpenAI-compatible vLLM server (started with --enable-prompt-embeds)"
    )
    p.add_argument("--cache-dir", default=None, help="where video memories are cached")
    p.add_argument("-v", "--verbose", action="store_true")


def _add_limits(p: argparse.ArgumentParser) -> None:
    """The app's upload limits, for the CLI too (one rule for every entry point)."""
    p.add_argument("--max-upload-mb", type=float, default=None, help="refuse bigger files (default 2048, as serve)")
    p.add_argument("--max-duration-min", type=float, default=None, help="refuse longer videos (default 180)")
    p.add_argument("--no-limits", action="store_true", help="lift the size and length limits")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="launch.py", description="VideoChat Studio")
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="start the web app")
    _add_common(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=7860)
    serve.add_argument("--share", action="store_true", help="create a public share link (asks for --auth)")
    serve.add_argument(
        "--auth", default=None, help="a file with one user:password a line (or $VIDEOCHAT_AUTH; user:password works)"
    )
    serve.add_argument("--max-upload-mb", type=float, default=2048.0)
    serve.add_argument("--max-duration-min", type=float, default=180.0)
    serve.add_argument("--concurrency", type=int, default=8, help="concurrent answers (vLLM batches them)")
    serve.add_argument("--ingest-concurrency", type=int, default=None, help="uploads processed at once (default 2)")
    serve.add_argument("--open", action="store_true", help="open the app in the default browser once it is ready")
    serve.add_argument("--mcp", action="store_true", help="also serve MCP tools at /gradio_api/mcp/ (auth applies)")
    serve.add_argument("--admin", default=None, help="comma list of signed-in users who see every user's videos")
    serve.add_argument(
        "--media-dir", action="append", default=None, help="a server folder the API/MCP may ingest videos from by path"
    )

    ask = sub.add_parser("ask", help="answer one question about a video")
    _add_common(ask)
    ask.add_argument("video")
    ask.add_argument("question")
    ask.add_argument("--json", action="store_true")
    _add_limits(ask)
    ask.add_argument("--max-tokens", type=int, default=None)
    ask.add_argument("--temperature", type=float, default=None)

    ingest = sub.add_parser("ingest", help="probe a video and print its clip plan")
    _add_common(ingest)
    ingest.add_argument("video")
    ingest.add_argument("--json", action="store_true")
    _add_limits(ingest)
    ingest.add_argument("--full", action="store_true", help="also transcribe and build the memory")
    ingest.add_argument("--fps", type=float, default=None)
    ingest.add_argument("--frames-per-clip", type=int, default=None)
    ingest.add_argument("--chunk-seconds", type=float, default=None, help="video seconds per ingest chunk (120)")
    ingest.add_argument("--first-chunk-seconds", type=float, default=None, help="the first, short chunk (30)")
    ingest.add_argument("--no-chapters", action="store_true", help="do not write chapters and a summary")

    convert = sub.add_parser("convert", help="convert InternVideo2-Chat-8B into a vLLM folder + vision folder")
    convert.add_argument("--from", dest="source", required=True, help="hub id or local folder")
    convert.add_argument("--to", dest="out_dir", required=True)

    bench = sub.add_parser("bench", help="benchmarks; each prints JSON")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    for name, module in BENCHES.items():
        bp = bench_sub.add_parser(name)
        bp.add_argument("--json", action="store_true", help="print JSON (always on; kept for symmetry)")
        bp.add_argument("--out", default=None, help="also write the JSON here")
        bp.set_defaults(bench_module=module)
        try:
            importlib.import_module(module).add_arguments(bp)
        except ImportError as err:  # a bench whose module is missing still shows in --help
            bp.set_defaults(bench_import_error=str(err))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv = ["serve", *argv]
    args = build_parser().parse_args(argv)
    from model.offline import no_phoning_home

    no_phoning_home()  # before any library that would phone home is imported
    if getattr(args, "json", False) or args.command == "bench":
        from model.cli import reserve_stdout_for_json

        args.json_out = reserve_stdout_for_json()  # stdout carries the JSON alone; logs go to stderr
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    from model.errors import VideoChatError

    try:
        return COMMAND_FUNCS[args.command](args)
    except VideoChatError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM/SIGHUP once models load (model.llm.lifecycle)
        lifecycle = sys.modules.get("model.llm.lifecycle")
        code = lifecycle.exit_code(err) if lifecycle is not None else 130
        print(f"stopped by {signal.Signals(code - 128).name}", file=sys.stderr)
        return code


def cmd_serve(args: argparse.Namespace) -> int:
    from app.main import serve

    return serve(args)


def cmd_ask(args: argparse.Namespace) -> int:
    from model.cli import ask_command

    return ask_command(args)


def cmd_ingest(args: argparse.Namespace) -> int:
    from model.cli import ingest_command

    return ingest_command(args)


def cmd_convert(args: argparse.Namespace) -> int:
    from model.internvideo2 import convert_chat_checkpoint

    out = convert_chat_checkpoint(args.source, Path(args.out_dir), progress=True)
    print(f"converted into {out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if getattr(args, "bench_import_error", None):
        print(f"error: bench {args.bench} unavailable: {args.bench_import_error}", file=sys.stderr)
        return 2
    result = importlib.import_module(args.bench_module).run(args)
    text = json.dumps(result, indent=2, default=str)
    print(text, file=getattr(args, "json_out", None) or sys.stdout, flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


COMMAND_FUNCS = {"serve": cmd_serve, "ask": cmd_ask, "ingest": cmd_ingest, "convert": cmd_convert, "bench": cmd_bench}

if __name__ == "__main__":  # vLLM spawns processes: keep start-up behind this guard
    sys.exit(main())
