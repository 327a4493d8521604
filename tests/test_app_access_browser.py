"""Uploads and files across sessions in a real Chromium (Playwright) against the real app on `lite`.

- Two signed-in users: one cannot fetch the other's upload or subtitles by URL; after the owner's tab closes the
  files are gone for everyone.
- Two sessions upload the same bytes (Gradio keeps one file); one closes its tab while the other's upload is still
  queued; the other's upload still becomes ready.
- Uploads run side by side: a short video uploaded after a long one is ready first.

The LLM runs on the transformers engine (as in tests/test_app_browser.py): these tests are about the page.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.media_fixtures import close_runtime

pytestmark = [pytest.mark.browser, pytest.mark.slow]

playwright_sync = pytest.importorskip("playwright.sync_api")

from tools.bench.app import CHROMIUM, CHROMIUM_FLAGS, free_port, upload  # noqa: E402

READY_MS = 300_000
USERS = [("ann", "pw-ann"), ("bob", "pw-bob")]


@pytest.fixture(scope="module")
def runtime():
    from model.profiles import LITE, LLMSpec
    from model.runtime import Runtime

    llm = LLMSpec(**{**LITE.llm.__dict__, "engine": "transformers"})
    rt = Runtime.load(LITE.replace(llm=llm, max_new_tokens=32))
    yield rt
    close_runtime(rt)


def _serve(runtime, settings, auth=None) -> tuple[str, object]:
    from app.main import build_app, launch_options

    demo = build_app(runtime, settings)
    port = free_port()
    demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        auth=auth,
        **launch_options(settings),
    )
    return f"http://127.0.0.1:{port}/", demo


@pytest.fixture(scope="module")
def signed_in_app(runtime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from app.config import AppSettings

    settings = AppSettings(cache_dir=str(tmp_path_factory.mktemp("cache-auth")))  # the default ingest concurrency
    url, demo = _serve(runtime, settings, auth=USERS)
    try:
        yield url
    finally:
        demo.close()


@pytest.fixture(scope="module")
def one_at_a_time_app(runtime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from app.config import AppSettings

    settings = AppSettings(cache_dir=str(tmp_path_factory.mktemp("cache-one")), ingest_concurrency=1)
    url, demo = _serve(runtime, settings)
    try:
        yield url
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
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tools import synth

    d = tmp_path_factory.mktemp("access-videos")
    say = [(1.0 + 12 * i, f"This is sentence number {i} of the long video.") for i in range(8)]
    return {
        "long": synth.make_speech_video(d / "long.mp4", say, duration=100.0).path,
        "long2": synth.make_speech_video(d / "long2.mp4", say[:6], duration=80.0, fps=12).path,
        "short": synth.make_speech_video(d / "short.mp4", [(1.0, "A short clip.")], duration=6.0).path,
        "shared": synth.make_speech_video(d / "shared.mp4", [(1.0, "Both of us upload this.")], duration=8.0).path,
    }


def page_for(browser, url: str, user: tuple[str, str] | None = None):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    if user is not None:
        r = context.request.post(url + "login", form={"username": user[0], "password": user[1]})
        assert r.status == 200, r.text()
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#player input[type=file]", state="attached", timeout=60_000)
    return context, page


def file_urls(page) -> list[str]:
    """The upload the player plays and the subtitles attached to it."""
    video = page.eval_on_selector("#player video", "v => v.currentSrc || v.src")
    tracks = page.eval_on_selector_all("#player track", "e => e.map(t => t.src)")
    return [video, *tracks]


def wait_ready(page, timeout_ms: float) -> None:
    """Until the status line says ready; an error shown instead fails at once, with its text."""
    page.wait_for_function(
        "document.querySelector('#status-line').innerText.includes('ready') || "
        "(document.querySelector('#error-box') && document.querySelector('#error-box').innerText.trim().length > 0)",
        timeout=timeout_ms,
    )
    error = page.locator("#error-box")
    assert not (error.is_visible() and error.inner_text().strip()), error.inner_text()


def status_of(context, url: str) -> int:
    return context.request.get(url).status


def test_a_users_files_are_theirs_alone_and_go_with_their_session(browser, signed_in_app, videos) -> None:
    ann, ann_page = page_for(browser, signed_in_app, USERS[0])
    bob, _ = page_for(browser, signed_in_app, USERS[1])
    try:
        upload(ann_page, videos["short"])
        wait_ready(ann_page, READY_MS)
        urls = file_urls(ann_page)
        assert len(urls) == 2 and urls[1].endswith(".vtt"), urls
        assert [status_of(ann, u) for u in urls] == [200, 200]
        assert [status_of(bob, u) for u in urls] == [404, 404], "bob fetched ann's files by URL"
        ann_page.close()  # ann's tab closes: her session's files go
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and status_of(ann, urls[1]) != 404:
            time.sleep(1)
        assert [status_of(ann, u) for u in urls] == [404, 404], "files outlived the session"
    finally:
        ann.close()
        bob.close()


def test_same_bytes_in_two_sessions_one_closes_while_the_other_is_queued(browser, one_at_a_time_app, videos) -> None:
    busy, busy_page = page_for(browser, one_at_a_time_app)
    a, a_page = page_for(browser, one_at_a_time_app)
    b, b_page = page_for(browser, one_at_a_time_app)
    try:
        upload(busy_page, videos["long2"])  # takes the only ingest slot
        busy_page.wait_for_timeout(1500)
        upload(a_page, videos["shared"])  # queued
        upload(b_page, videos["shared"])  # queued: the same bytes, so the same file in Gradio's cache
        b_page.wait_for_timeout(1500)
        a_page.close()  # A leaves while B waits
        wait_ready(b_page, READY_MS)
        assert "shared.mp4" in b_page.locator("#status-line").inner_text()
        assert not b_page.locator("#error-box").is_visible(), b_page.locator("#error-box").inner_text()
        assert b_page.locator("#send").is_enabled()
    finally:
        for c in (busy, a, b):
            c.close()


def test_uploads_run_side_by_side(browser, signed_in_app, videos) -> None:
    ann, ann_page = page_for(browser, signed_in_app, USERS[0])
    bob, bob_page = page_for(browser, signed_in_app, USERS[1])
    try:
        upload(ann_page, videos["long"])
        ann_page.wait_for_timeout(1000)
        upload(bob_page, _copy(videos["short"], "short-bob.mp4"))
        t0 = time.monotonic()
        wait_ready(bob_page, READY_MS)
        bob_ready = time.monotonic() - t0
        ann_ready_first = "ready" in ann_page.locator("#status-line").inner_text()
        wait_ready(ann_page, READY_MS)
        assert not ann_ready_first, f"bob's short upload waited for ann's long one ({bob_ready:.1f} s)"
    finally:
        ann.close()
        bob.close()


def _copy(src: Path, name: str) -> Path:
    """Other bytes than `src` (so nothing is reused from the cache): the same video with a different tail."""
    dst = src.with_name(name)
    data = src.read_bytes()
    dst.write_bytes(data + b"\0" * 16)  # mp4 readers ignore trailing bytes; the content hash differs
    return dst
