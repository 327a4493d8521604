"""`launch.py bench library --json`: the video library, cross-video questions and the API, as users meet them.

- Library: N generated speech videos (distinct topics) ingested into an empty cache with the profile (`lite` by
  default) and added to the library; then a fresh `Library` on the same folder (as after a restart) lists them
  and reopens each (cold: read back from disk and checksummed; warm: the second open in the process).
- Cross-video question: `MultiVideoQA.ask` over 2 videos and over all N; time to first token as the caller
  sees it (question in -> first answer text: ranking across the videos, prompt building, prefill) and the whole
  answer, `--runs` times each (median).
- API: the real server on 127.0.0.1 (the page, the API and the MCP tools, sign-in on) driven by
  `gradio_client`: `/library`, `/find_moments`, `/transcript` and `/ask` round trips (median of `--runs`), and
  the MCP tools `list_videos` / `find_moments` through the `mcp` client library.
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
    parser.add_argument("--no-api", action="store_true", help="skip the server round trips")


def _med(xs: list[float]) -> float:
    return round(statistics.median(xs), 4) if xs else 0.0


def _make_videos(work: Path, n: int, duration: float) -> list[Path]:
    from tools import synth

    out = []
    for name, lines in TOPICS[:n]:
        sentences = [(1.0, lines[0]), (duration / 2, lines[1])]
        out.append(synth.make_speech_video(work / "media" / name, sentences, duration=duration).path)
    return out


async def _ttft(multi: Any, videos: list[tuple[str, Any]], question: str, max_tokens: int) -> dict[str, float]:
    from model.qa import AnswerDelta, AnswerDone, ChatSettings

    settings = ChatSettings.from_values(max_tokens=max_tokens)
    t0 = time.perf_counter()
    first = None
    timings: dict[str, float] = {}
    async for event in multi.ask(videos, question, None, settings):
        if first is None and isinstance(event, AnswerDelta) and event.text.strip():
            first = time.perf_counter() - t0
        if isinstance(event, AnswerDone):
            timings = event.answer.timings
    total = time.perf_counter() - t0
    return {
        "ttft_s": first if first is not None else total,
        "answer_s": total,
        "prepare_s": timings.get("prepare_s", 0.0),
        "prompt_tokens": timings.get("prompt_tokens", 0.0),
    }


def _api(service_demo: Any, settings: Any, runs: int, max_tokens: int, names: list[str]) -> dict[str, Any]:
    from gradio_client import Client

    from app.launcher import start
    from tools.bench.app import free_port

    launched = start(service_demo, settings, port=free_port(), auth=[USER], mcp=True, quiet=True, block=False)
    out: dict[str, Any] = {}
    try:
        t = time.perf_counter()
        client = Client(launched.local_url, auth=USER, verbose=False)
        out["client_connect_s"] = round(time.perf_counter() - t, 4)

        def timed(*args: Any, api_name: str) -> list[float]:
            xs = []
            for _ in range(runs):
                t = time.perf_counter()
                client.predict(*args, api_name=api_name)
                xs.append(time.perf_counter() - t)
            return xs

        out["library_s"] = _med(timed(api_name="/library"))
        out["find_moments_s"] = _med(timed("gravity", [], 3, api_name="/find_moments"))
        out["transcript_s"] = _med(timed(names[0], api_name="/transcript"))
        out["ask_two_videos_s"] = _med(timed(QUESTIONS[0], names[:2], max_tokens, api_name="/ask"))
        out["mcp"] = asyncio.run(_mcp(launched.mcp_url or "", runs))
    finally:
        service_demo.close()
    return out


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
    from model.qa.multi import MultiVideoQA
    from model.runtime import Runtime

    n = max(2, min(args.videos, len(TOPICS)))
    work = Path(tempfile.mkdtemp(prefix="bench-library-"))
    report: dict[str, Any] = {"profile": args.profile, "videos": n, "video_s": args.duration}
    try:
        paths = _make_videos(work, n, args.duration)
        profile = get_profile(args.profile).replace(max_new_tokens=args.max_tokens)
        t = time.perf_counter()
        runtime = Runtime.load(profile)
        report["load_s"] = round(time.perf_counter() - t, 2)
        report["engine"] = runtime.engine_name
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
        report["reopen_warm_s"] = _med(warm)
        report["reopen_cold_s_max"] = round(max(cold), 4)

        multi = MultiVideoQA(assistant)
        opened = [(e.name, fresh.open(e.key)[1]) for e in sorted(entries, key=lambda e: e.name)]
        asyncio.run(_ttft(multi, opened[:2], QUESTIONS[0], args.max_tokens))  # warm-up: first-call overheads
        rounds: dict[str, Any] = {}
        for label, vids in (("two_videos", opened[:2]), (f"all_{n}_videos", opened)):
            res = [
                asyncio.run(_ttft(multi, vids, QUESTIONS[i % len(QUESTIONS)], args.max_tokens))
                for i in range(args.runs)
            ]
            rounds[label] = {k: _med([r[k] for r in res]) for k in res[0]}
        report["cross_video"] = rounds

        if not args.no_api:
            settings = AppSettings(cache_dir=str(cache_dir), concurrency=4)
            demo = build_app(runtime, settings)
            report["api"] = _api(demo, settings, args.runs, args.max_tokens, [e.name for e in entries])
        asyncio.run(runtime.close())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report
