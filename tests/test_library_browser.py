"""The library panel in a real Chromium (Playwright), served in-process with lite's real models: reopen a video
without re-ingesting, ask across two videos and click a citation that switches the player's video and seeks,
delete a video with its files."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.media_fixtures import close_runtime

pytestmark = [pytest.mark.browser, pytest.mark.slow]

playwright_sync = pytest.importorskip("playwright.sync_api")

from tools.bench.app import CHROMIUM, CHROMIUM_FLAGS, ask, bot_texts, free_port, open_page, upload  # noqa: E402

READY_TIMEOUT_MS = 240_000
ANSWER_TIMEOUT_MS = 240_000
ARTIFACTS = Path(__file__).resolve().parents[1] / "tests" / "_artifacts"
GRAVITY = "Gravity pulls every falling apple down to the earth."
ONIONS = "We chop the onions and fry them slowly in the pan."


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory):
    from tools import synth

    d = tmp_path_factory.mktemp("library-media")
    lecture = synth.make_speech_video(
        d / "lecture1.mp4", [(1.0, "Welcome to physics."), (6.0, GRAVITY)], duration=12.0,
        label_scenes=[(0.0, 12.0, "PHYSICS")],
    )  # fmt: skip
    cooking = synth.make_speech_video(
        d / "cooking.mp4", [(1.0, "Welcome to the kitchen."), (5.0, ONIONS)], duration=10.0,
        label_scenes=[(0.0, 10.0, "KITCHEN")],
    )  # fmt: skip
    return lecture, cooking


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    from app.config import AppSettings
    from app.ui import build_app, launch_options
    from model.profiles import LITE
    from model.runtime import Runtime

    runtime = Runtime.load(LITE.replace(max_new_tokens=48))
    settings = AppSettings(cache_dir=str(tmp_path_factory.mktemp("library-cache")), concurrency=4)
    demo = build_app(runtime, settings)
    port = free_port()
    demo.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options(settings)
    )
    try:
        yield {"url": f"http://127.0.0.1:{port}/", "settings": settings, "service": demo.videochat_service}
    finally:
        demo.close()
        close_runtime(runtime)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed")
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield b
        b.close()


def _status_has(page, text: str, timeout_ms: float = READY_TIMEOUT_MS) -> None:
    page.wait_for_function(
        "t => document.querySelector('#status-line').innerText.includes(t) && "
        "document.querySelector('#status-line').innerText.includes('ready')",
        arg=text,
        timeout=timeout_ms,
    )


def _library_names(page) -> list[str]:
    return page.eval_on_selector_all("#library-list .lib-name", "e => e.map(x => x.innerText)")


def _key_of(page, name: str) -> str:
    return page.evaluate(
        "n => [...document.querySelectorAll('#library-list .lib-item')]"
        ".find(x => x.querySelector('.lib-name').innerText === n).dataset.key",
        name,
    )


def _player_state(page) -> dict:
    return page.evaluate(
        "(() => { const v = document.querySelector('#player video');"
        " const m = document.querySelector('#current-video [data-video]');"
        " return {src: v ? (v.currentSrc || v.src) : '', t: v ? v.currentTime : -1, key: m ? m.dataset.video : ''}; })()"
    )


def test_library_reopen_ask_across_two_videos_seek_and_delete(browser, served, videos) -> None:
    lecture, cooking = videos
    context, page = open_page(browser, served["url"])
    try:
        # two uploads join the library (thumbnail, name, length, when added, models)
        upload(page, lecture.path)
        _status_has(page, "lecture1.mp4")
        page.wait_for_function("document.querySelectorAll('#library-list .lib-item').length >= 1", timeout=60_000)
        page.get_by_role("button", name="New video").click()  # the player takes a new file once emptied
        page.wait_for_selector("#player input[type=file]", state="attached", timeout=30_000)
        upload(page, cooking.path)
        _status_has(page, "cooking.mp4")
        page.wait_for_function("document.querySelectorAll('#library-list .lib-item').length >= 2", timeout=60_000)
        assert sorted(_library_names(page)) == ["cooking.mp4", "lecture1.mp4"]
        card = page.locator("#library-list .lib-item", has_text="lecture1.mp4")
        assert card.locator("img").count() == 1 and "00:12" in card.inner_text() and "added" in card.inner_text()
        assert "minilm" in card.inner_text().lower()  # the models that made the memory
        lecture_key, cooking_key = _key_of(page, "lecture1.mp4"), _key_of(page, "cooking.mp4")

        # reopen the first video from the library: no ingest stage runs, the player and transcript show it
        encodes = served["service"].assistant.encoder_calls
        t0 = time.perf_counter()
        page.locator("#library-pick label", has_text="lecture1.mp4").click()
        page.locator("#library-open").click()
        _status_has(page, "lecture1.mp4", 60_000)
        reopen_s = time.perf_counter() - t0
        status = page.locator("#status-line").inner_text()
        assert "reopen" in status and "transcribing" not in status and "decoding" not in status, status
        assert served["service"].assistant.encoder_calls == encodes
        assert "gravity" in page.locator("#transcript").inner_text().lower()
        page.wait_for_function(
            f"document.querySelector('#current-video [data-video]').dataset.video === '{lecture_key}'"
        )
        page.wait_for_function(
            "(() => { const v = document.querySelector('#player video'); return v && (v.currentSrc || v.src); })()"
        )
        print(f"library reopen in the page: {reopen_s:.2f} s")

        # ask across both videos: the answer's links name their video; one to cooking.mp4 switches the player
        page.locator("#library-all").click()
        page.wait_for_function("document.querySelectorAll('#library-select input:checked').length == 2")
        ask(page, "Which of my videos talks about onions?")
        page.wait_for_function(
            "document.querySelectorAll('#chat [data-testid=bot]').length >= 1 && "
            "!document.querySelector('#send').disabled && document.querySelector('#stop').disabled",
            timeout=ANSWER_TIMEOUT_MS,
        )
        answer = bot_texts(page)[0]
        assert "cooking.mp4" in answer, answer
        links = page.eval_on_selector_all(  # the chat keeps only href/class/title: "#t=SECONDS&v=KEY"
            "#chat a.seek[href*='v=']",
            "e => e.map(a => { const h = a.getAttribute('href');"
            " return {key: h.match(/[#&]v=([^&]+)/)[1], t: parseFloat(h.slice(3))}; })",
        )
        to_cooking = [x for x in links if x["key"] == cooking_key]
        assert to_cooking, (links, answer)
        target = min(to_cooking, key=lambda x: abs(x["t"] - 5.0))
        assert abs(target["t"] - 5.0) < 1.5, to_cooking
        assert _player_state(page)["key"] == lecture_key
        page.locator(f"#chat a.seek[href$='v={cooking_key}']").first.click()
        page.wait_for_function(
            "([k, t]) => { const v = document.querySelector('#player video');"
            " const m = document.querySelector('#current-video [data-video]');"
            " return m && m.dataset.video === k && v && Math.abs(v.currentTime - t) < 0.6; }",
            arg=[cooking_key, to_cooking[0]["t"]],
            timeout=60_000,
        )
        assert "cooking.mp4" in page.locator("#status-line").inner_text()
        assert "onions" in page.locator("#transcript").inner_text().lower()
        assert len(bot_texts(page)) == 1  # the conversation stays
        # and a link back to the lecture (the found moments name their video too) switches again
        if page.locator(f"#moments a.seek[href$='v={lecture_key}']").count():
            page.locator(f"#moments a.seek[href$='v={lecture_key}']").first.click()
            page.wait_for_function(
                f"document.querySelector('#current-video [data-video]').dataset.video === '{lecture_key}'",
                timeout=60_000,
            )
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "library_cross_video.png"), full_page=True)

        # delete a video: gone from the list and from disk (its memory and the library's copy of the file)
        from model.memory.library import library_root

        root = library_root(served["settings"].cache_dir)
        assert list(root.glob(f"videos/{cooking_key}.*"))
        page.locator("#library-pick label", has_text="cooking.mp4").click()
        page.locator("#library-delete").click()
        page.wait_for_function(
            "![...document.querySelectorAll('#library-list .lib-name')].some(x => x.innerText === 'cooking.mp4')",
            timeout=60_000,
        )
        assert _library_names(page) == ["lecture1.mp4"]
        assert not list(root.glob(f"videos/{cooking_key}.*")) and not (root / f"{cooking_key}.json").exists()
        assert not (Path(served["settings"].cache_dir) / cooking_key).exists()
        # the other video still reopens at once
        page.locator("#library-pick label", has_text="lecture1.mp4").click()
        page.locator("#library-open").click()
        _status_has(page, "lecture1.mp4", 60_000)
    finally:
        context.close()
