"""`launch.py bench library --json`: the video library, cross-video questions and the API, as users meet them.

- Library: N generated speech videos (distinct topics) ingested into an empty cache with the profile (`lite` by
  default) and added to the library; then a fresh `Library` on the same folder (as after a restart) lists them
  and reopens each (cold: read back from disk and checksummed; warm: the second open in the process).
- Server: the real server on 127.0.0.1 (the page, the API and the MCP tools, sign-in on) driven by `gradio_client`:
  `/library`, `/find_moments`, `/transcript` round trips, and `/ask` across 2 videos and across all N (median of
  `--runs`): the client's round trip, and the time to first token inside the server (question in -> first answer
  token: ranking across the videos, prompt building, prefill). The LLM runs in the server because vLLM's engine
  serves the event loop it first ran in (Gradio's). Then the MCP tools `list_videos` / `find_moments` through the
  `mcp` client library.
- Page: the same library in Chromium (Playwright): click an entry and Open, until the status line says it is ready
  and the player has the video (the memory read back, the transcript and subtitles written, the video handed to
  the player); each video twice (the second open is warm).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

TOPICS = [
    ("lecture_gravity.mp4", ["Welcome to physics.", "Gravity pulls every falling apple down to the earth."]),
    ("cooking_onions.mp4", ["Welcome to the kitchen.", "We chop the onions and fry them slowly in the pan."]),
    ("garden_roses.mp4", ["Welcome to the garden.", "The gardener waters the red roses every morning."]),
    ("harbor_boats.mp4", ["Welcome to the harbor.", "Small fishing boats come back with the evening tide."]),
    ("music_violin.mp4", ["Welcome to the music room.", "She tunes the violin before the concert begins."]),
]
QUESTIONS = ["What pulls the apple down?", "Which of my videos talks about onions?", "What is watered every morning?"]
USER = ("bench", "bench-pw")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="lite")
    parser.add_argument("--videos", type=int, default=3, help=f"generated videos in the library (up to {len(TOPICS)})")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per generated video")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-page", action="store_true", help="skip the reopen timed in Chromium")


def _med(xs: list[float]) -> float:
    return round(statistics.median(xs), 4) if xs else 0.0


def _make_videos(work: Path, n: int, duration: float) -> list[Path]:
    from tools import synth

    out = []
    for name, lines in TOPICS[:n]:
        sentences = [(1.0, lines[0]), (duration / 2, lines[1])]
        out.append(synth.make_speech_video(work / "media" / name, sentences, duration=duration).path)
    return out


def _server(demo: Any, settings: Any, runs: int, max_tokens: int, names: list[str]) -> dict[str, Any]:
    from gradio_client import Client

    from app.launcher import start
    from tools.bench.app import free_port

    launched = start(demo, settings, port=free_port(), auth=[USER], mcp=True, quiet=True, block=False)
    out: dict[str, Any] = {}
    try:
        t = time.perf_counter()
        client = Client(launched.local_url, auth=USER, verbose=False)
        out["client_connect_s"] = round(time.perf_counter() - t, 4)

        def timed(*args: Any, api_name: str) -> tuple[list[float], list[Any]]:
            xs, results = [], []
            for i in range(runs):
                call = args if api_name != "/ask" else (QUESTIONS[i % len(QUESTIONS)], *args)
                t = time.perf_counter()
                results.append(client.predict(*call, api_name=api_name))
                xs.append(time.perf_counter() - t)
            return xs, results

        out["library_s"] = _med(timed(api_name="/library")[0])
        out["find_moments_s"] = _med(timed("gravity", [], 3, api_name="/find_moments")[0])
        out["transcript_s"] = _med(timed(names[0], api_name="/transcript")[0])
        client.predict(QUESTIONS[0], names[:2], max_tokens, api_name="/ask")  # warm-up: first-call overheads out
        for label, videos in (("two_videos", names[:2]), (f"all_{len(names)}_videos", ["all"])):
            xs, results = timed(videos, max_tokens, api_name="/ask")
            tim = [r["timings"] for r in results]
            out[f"ask_{label}"] = {
                "round_trip_s": _med(xs),
                "ttft_s": _med([x.get("prepare_s", 0) + x.get("prompt_s", 0) + x.get("first_token_s", 0) for x in tim]),
                "prepare_s": _med([x.get("prepare_s", 0) for x in tim]),
                "prompt_tokens": _med([x.get("prompt_tokens", 0) for x in tim]),
                "citations_per_answer": _med([float(len(r["citations"])) for r in results]),
            }
        out["mcp"] = asyncio.run(_mcp(launched.mcp_url or "", runs))
    finally:
        demo.close()
    return out


def _page_reopen(demo: Any, settings: Any, names: list[str]) -> dict[str, float]:
    """In Chromium: click a library entry and Open; until the status line says it is ready and the player has it."""
    from playwright.sync_api import sync_playwright

    from app.ui import launch_options
    from tools.bench.app import CHROMIUM, CHROMIUM_FLAGS, free_port, open_page

    port = free_port()
    demo.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options(settings)
    )
    times = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
            context, page = open_page(browser, f"http://127.0.0.1:{port}/")
            page.wait_for_function(f"document.querySelectorAll('#library-list .lib-item').length >= {len(names)}")
            for name in names + names:  # each twice: the second open of a video in this process is warm
                t = time.perf_counter()
                page.locator("#library-pick label", has_text=name).click()
                page.locator("#library-open").click()
                page.wait_for_function(
                    "n => { const s = document.querySelector('#status-line').innerText;"
                    " const v = document.querySelector('#player video');"
                    " return s.includes(n) && s.includes('ready') && v && (v.currentSrc || v.src); }",
                    arg=name,
                    timeout=120_000,
                )
                times.append(time.perf_counter() - t)
            context.close()
            browser.close()
    finally:
        demo.close()
    return {
        "first_open_s": _med(times[: len(names)]),
        "again_s": _med(times[len(names) :]),
        "max_s": round(max(times), 4),
    }


async def _mcp(url: str, runs: int) -> dict[str, float]:
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    out: dict[str, float] = {}
    t = time.perf_counter()
    async with (
        httpx2.AsyncClient(auth=USER, timeout=600) as http,
        streamable_http_client(url, http_client=http) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        out["connect_s"] = round(time.perf_counter() - t, 4)
        for name, args in (("list_videos", {}), ("find_moments", {"query": "gravity"})):
            xs = []
            for _ in range(runs):
                t = time.perf_counter()
                result = await session.call_tool(name, args)
                xs.append(time.perf_counter() - t)
                if result.is_error:
                    raise RuntimeError(f"MCP {name} failed: {result.content}")
            out[f"{name}_s"] = _med(xs)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from app.config import AppSettings
    from app.ui import build_app
    from model.memory import MemoryCache
    from model.memory.keys import _hash_memo
    from model.memory.library import Library
    from model.profiles import get_profile
    from model.runtime import Runtime

    n = max(2, min(args.videos, len(TOPICS)))
    work = Path(tempfile.mkdtemp(prefix="bench-library-"))
    report: dict[str, Any] = {"profile": args.profile, "videos": n, "video_s": args.duration, "runs": args.runs}
    try:
        paths = _make_videos(work, n, args.duration)
        profile = get_profile(args.profile).replace(max_new_tokens=args.max_tokens)
        t = time.perf_counter()
        runtime = Runtime.load(profile)
        report["load_s"] = round(time.perf_counter() - t, 2)
        report["engine"] = runtime.engine_name
        report["max_tokens"] = args.max_tokens
        cache_dir = work / "cache"
        assistant = runtime.assistant(cache_dir=cache_dir)
        library = Library(assistant.cache)
        ingest = []
        for p in paths:
            t = time.perf_counter()
            memory = assistant.ingest(p)
            library.record(memory, p, p.name, USER[0], runtime.model_ids())  # the API user below owns them
            ingest.append(time.perf_counter() - t)
        report["ingest_s_per_video"] = _med(ingest)

        # a restart: a fresh cache object and library on the same folder, no hash memo
        _hash_memo.clear()
        fresh = Library(MemoryCache(cache_dir))
        t = time.perf_counter()
        entries = fresh.entries()
        report["list_s"] = round(time.perf_counter() - t, 4)
        cold, warm = [], []
        for e in entries:
            t = time.perf_counter()
            fresh.open(e.key)
            cold.append(time.perf_counter() - t)
            t = time.perf_counter()
            fresh.open(e.key)
            warm.append(time.perf_counter() - t)
        report["reopen_cold_s"] = _med(cold)
        report["reopen_cold_s_max"] = round(max(cold), 4)
        report["reopen_warm_s"] = _med(warm)

        settings = AppSettings(cache_dir=str(cache_dir), concurrency=4)
        demo = build_app(runtime, settings)
        names = sorted(e.name for e in entries)
        report["server"] = _server(demo, settings, args.runs, args.max_tokens, names)
        if not args.no_page:
            report["page_reopen"] = _page_reopen(build_app(runtime, settings), settings, names)
        asyncio.run(runtime.close())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report
