"""`launch.py bench app`: the app as users feel it, in a real Chromium (Playwright).

Serves the page in-process with the chosen profile, uploads a video into a cold cache and times upload -> ready,
then has 1 and N browser sessions ask at the same moment and times click -> first answer text (TTFT as seen in
the page, queueing and prompt building included) and click -> answer done.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
# Headless, and nothing that reaches outside this machine (see OFFLINE.md).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
QUESTIONS = [
    "What color is the ball?",
    "When is the blue car mentioned?",
    "What is said at the start?",
    "Where do we walk after the kitchen?",
    "What is this video about?",
    "What is on screen at 0:45?",
    "Who is thanked at the end?",
    "What happens at 0:30?",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", nargs="?", default=None, help="default: a generated 1-minute speech video")
    parser.add_argument("--profile", default="lite")
    parser.add_argument("--engine", default=None, help="override the profile's LLM engine (vllm | transformers)")
    parser.add_argument("--users", default="1,4", help="comma list of concurrent browser sessions")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--timeout-s", type=float, default=600.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_page(browser: Any, url: str) -> tuple[Any, Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#player input[type=file]", state="attached")
    return context, page


def upload(page: Any, path: Path) -> None:
    page.locator("#player input[type=file]").set_input_files(str(path))


def wait_ready(page: Any, timeout_ms: float) -> None:
    page.wait_for_function("document.querySelector('#status-line').innerText.includes('ready')", timeout=timeout_ms)


def bot_texts(page: Any) -> list[str]:
    return page.eval_on_selector_all("#chat [data-testid=bot]", "els => els.map(e => e.innerText)")


def ask(page: Any, question: str) -> None:
    page.locator("#question textarea").fill(question)
    page.locator("#send").click()


def answer_finished(page: Any) -> bool:
    return page.evaluate("!document.querySelector('#send').disabled && document.querySelector('#stop').disabled")


def _has_text(page: Any, n: int) -> bool:
    texts = bot_texts(page)
    return len(texts) >= n and bool(texts[n - 1].replace("…", "").strip())


def _measure_round(pages: list[Any], timeout_s: float) -> list[dict[str, float]]:
    """All pages ask at once; poll them (Playwright's sync API is single-threaded) for first text and end."""
    n_before = [len(bot_texts(p)) for p in pages]
    t0 = time.perf_counter()
    for i, page in enumerate(pages):
        ask(page, QUESTIONS[i % len(QUESTIONS)])
    first: list[float | None] = [None] * len(pages)
    done: list[float | None] = [None] * len(pages)
    while any(d is None for d in done):
        if time.perf_counter() - t0 > timeout_s:
            raise TimeoutError("answers did not finish in time")
        for i, page in enumerate(pages):
            if first[i] is None and _has_text(page, n_before[i] + 1):
                first[i] = time.perf_counter() - t0
            if first[i] is not None and done[i] is None and answer_finished(page):
                done[i] = time.perf_counter() - t0
        time.sleep(0.02)
    return [{"ttft_s": f or 0.0, "answer_s": d or 0.0} for f, d in zip(first, done, strict=True)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from app.config import AppSettings
    from app.ui import build_app, launch_options
    from model.profiles import get_profile
    from model.runtime import Runtime
    from tools import synth

    work = Path(tempfile.mkdtemp(prefix="bench-app-"))
    video = Path(args.video) if args.video else None
    if video is None:
        from tests.media_fixtures import SPEECH_SCENES, SPEECH_SENTENCES

        video = synth.make_speech_video(
            work / "speech.mp4", SPEECH_SENTENCES, duration=60.0, size=(320, 240), fps=10, label_scenes=SPEECH_SCENES
        ).path
    profile = get_profile(args.profile)
    if args.engine:
        profile = profile.replace(llm=replace(profile.llm, engine=args.engine))
    profile = profile.replace(max_new_tokens=args.max_tokens)
    t = time.perf_counter()
    runtime = Runtime.load(profile)
    load_s = time.perf_counter() - t
    users = [int(u) for u in args.users.split(",")]
    settings = AppSettings(cache_dir=str(work / "memcache"), concurrency=max(users))
    demo = build_app(runtime, settings)
    port = free_port()
    demo.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options(settings)
    )
    url = f"http://127.0.0.1:{port}/"
    timeout_ms = args.timeout_s * 1000
    report: dict[str, Any] = {
        "profile": profile.name,
        "engine": runtime.engine_name,
        "video": str(video),
        "load_s": load_s,
        "max_tokens": args.max_tokens,
    }
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
            sessions = [open_page(browser, url) for _ in range(max(users))]
            pages = [page for _, page in sessions]
            t = time.perf_counter()
            upload(pages[0], video)
            wait_ready(pages[0], timeout_ms)
            report["upload_to_ready_s"] = time.perf_counter() - t
            t = time.perf_counter()
            for page in pages[1:]:  # the others open the same file: the memory comes from the cache
                upload(page, video)
                wait_ready(page, timeout_ms)
            report["cached_upload_to_ready_s"] = (time.perf_counter() - t) / max(1, len(pages) - 1)
            _measure_round(pages[:1], args.timeout_s)  # warm-up: first-call overheads out of the numbers
            rounds: dict[str, Any] = {}
            for n in users:
                res = _measure_round(pages[:n], args.timeout_s)
                rounds[str(n)] = {
                    "users": n,
                    "ttft_s_mean": statistics.fmean(r["ttft_s"] for r in res),
                    "ttft_s_max": max(r["ttft_s"] for r in res),
                    "answer_s_mean": statistics.fmean(r["answer_s"] for r in res),
                }
            report["concurrent"] = rounds
            for context, _ in sessions:
                context.close()
            browser.close()
    finally:
        demo.close()
        shutil.rmtree(work, ignore_errors=True)  # the generated video and the memory cache of this run
    return report
