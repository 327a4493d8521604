"""Sign-in limits, escaped names, the CLI's limits and concurrent ingests (issue 14.7; no LLM).

A real Gradio server for sign-in, real subprocesses for the CLI, the real tagger on real photos. The browser-level
checks (two signed-in users, a closed tab, concurrent uploads) are in tests/test_app_access_browser.py.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.access import LoginLimiter
from app.state import SessionState

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- sign-in
def test_login_limiter_locks_out_after_wrong_passwords() -> None:
    lim = LoginLimiter([("ann", "right"), ("bob", "pw")], max_failures=5, lockout_s=60)
    t = 1000.0
    for i in range(15):
        assert lim.check("ann", f"wrong{i}", now=t + i) is False
    assert lim.check("ann", "right", now=t + 15) is False, "15 wrong then the right one: still refused"
    assert lim.locked("ann", now=t + 15) > 0
    assert lim.check("bob", "pw", now=t + 15) is True, "other users are not locked out"
    assert lim.check("ann", "right", now=t + 15 + 3600) is True, "after the lockout the right password works"
    assert list(lim) == [("ann", "right"), ("bob", "pw")] and dict(lim)["bob"] == "pw", "still the pairs"


def test_gradio_login_is_rate_limited(tmp_path: Path) -> None:
    """A real Gradio server with the limiter as its auth: 15 wrong passwords, then the right one is refused."""
    import gradio as gr
    import httpx

    from tests.test_lifecycle import free_port

    with gr.Blocks() as demo:
        gr.Markdown("hi")
    port = free_port()
    auth = LoginLimiter([("ann", "right")])
    demo.launch(server_name="127.0.0.1", server_port=port, auth=auth, prevent_thread_lock=True, quiet=True)
    try:
        url = f"http://127.0.0.1:{port}/login"
        codes = [httpx.post(url, data={"username": "ann", "password": f"x{i}"}).status_code for i in range(15)]
        assert set(codes) == {400}
        assert httpx.post(url, data={"username": "ann", "password": "right"}).status_code == 400
        auth._locked_until.clear()  # the lockout ends
        assert httpx.post(url, data={"username": "ann", "password": "right"}).status_code == 200
    finally:
        demo.close()


def test_auth_on_the_command_line_is_flagged(tmp_path: Path) -> None:
    from app.config import auth_on_command_line

    f = tmp_path / "users.txt"
    f.write_text("ann:pw\n")
    assert auth_on_command_line("ann:pw") and not auth_on_command_line(str(f)) and not auth_on_command_line(None)


# ---------------------------------------------------------------------------------------------- names
def test_file_names_do_not_render_markdown() -> None:
    from markdown_it import MarkdownIt

    from app.view import md_text, status_line

    class _Info:
        duration = 12.0

    class _Memory:
        info = _Info()
        cache_note = ""
        damage_note = ""

    name = "**bold** _it_ [link](javascript:alert(1)) `code` <b>x</b> # h.mp4"
    st = SessionState(memory=_Memory(), video_name=name)
    html_out = MarkdownIt().render(status_line(st))
    assert "<em>" not in html_out and "<a " not in html_out and "<code>" not in html_out and "<b>" not in html_out
    assert html_out.count("<strong>") == 1, "only the app's own bold around the name"
    assert "**bold** _it_ [link](javascript:alert(1))" in MarkdownIt().render(md_text(name)).replace("&amp;", "&")


# ---------------------------------------------------------------------------------------------- CLI limits
def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "launch.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_cli_refuses_an_empty_question_before_loading_models(speech_video) -> None:
    start = time.monotonic()
    out = cli("ask", str(speech_video.path), "   ", "--profile", "lite")
    assert out.returncode == 2 and out.stderr.startswith("error: Please type a question")
    assert "loading" not in out.stderr and time.monotonic() - start < 30
    long = cli("ask", str(speech_video.path), "why?" * 5000, "--profile", "lite")
    assert long.returncode == 2 and "20,000 characters" in long.stderr and "loading" not in long.stderr


def test_cli_applies_the_apps_limits_unless_lifted(speech_video) -> None:
    out = cli("ingest", str(speech_video.path), "--max-duration-min", "0.5")
    assert out.returncode == 2 and "this server accepts up to 0.5 minutes" in out.stderr
    ok = cli("ingest", str(speech_video.path), "--max-duration-min", "0.5", "--no-limits", "--json", timeout=600)
    assert ok.returncode == 0, ok.stderr
    small = cli("ingest", str(speech_video.path), "--max-upload-mb", "0.01")
    assert small.returncode == 2 and "this server accepts up to 0.01 MB" in small.stderr


def test_gif_rule_is_the_same_for_cli_and_app(tmp_path: Path) -> None:
    from app.config import AppSettings
    from app.upload import check_limits
    from model.media import MediaError

    gif = tmp_path / "anim.gif"
    subprocess.run(
        [
            "ffmpeg",
            "-y",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=160x120:rate=10:duration=2",
            str(gif),
        ],
        check=True,
    )
    out = cli("ask", str(gif), "What is shown?", "--profile", "lite")
    assert out.returncode == 2 and "GIF animations are not supported" in out.stderr and "loading" not in out.stderr
    with pytest.raises(MediaError, match="GIF animations are not supported"):
        check_limits(gif, AppSettings())


def test_app_and_cli_limits_are_one_rule() -> None:
    from app.config import AppSettings
    from model.cli import MAX_DURATION_MIN, MAX_UPLOAD_MB

    assert (AppSettings().max_upload_mb, AppSettings().max_duration_min) == (MAX_UPLOAD_MB, MAX_DURATION_MIN)
    assert AppSettings().ingest_concurrency >= 2, "one long upload does not hold up everyone's"


# ---------------------------------------------------------------------------------------------- concurrent ingests
def test_the_visual_tagger_can_be_shared_by_concurrent_ingests() -> None:
    """Two uploads are ingested at once now, through one shared tagger (cv2.dnn + TFLite hold their input)."""
    import threading

    import numpy as np

    skimage_data = pytest.importorskip("skimage.data")
    from model.vision.tags import VisualTagger

    tagger = VisualTagger.load()
    images = [skimage_data.astronaut(), skimage_data.coffee(), skimage_data.chelsea()]
    alone = [tagger.tag(img) for img in images]
    errors: list[str] = []
    results: dict[int, list] = {}

    def work(k: int) -> None:
        try:
            results[k] = [tagger.tag(np.ascontiguousarray(images[(i + k) % 3])) for i in range(30)]
        except Exception as err:  # the failure this test is about
            errors.append(repr(err))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(results[k][i] == alone[(i + k) % 3] for k in results for i in range(30)), "same tags as alone"
