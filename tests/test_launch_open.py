"""`launch.py --open`: the real server starts, prints its URL, and the default browser is opened on it once the page
answers. The "browser" is the one `$BROWSER` names (Python's webbrowser honours it): a small script that records
the URL it was given and fetches the page, proving the server was ready when it was called."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools.bench.app import free_port

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
RECORDER = """#!{python}
import sys, urllib.request
url = sys.argv[1]
with urllib.request.urlopen(url, timeout=30) as r:
    page = r.read().decode("utf-8", "replace")
open({out!r}, "w").write(url + "\\n" + str(r.status) + "\\n" + page[:20000])
"""


def test_open_starts_the_browser_on_the_ready_page(tmp_path: Path) -> None:
    out = tmp_path / "opened.txt"
    browser = tmp_path / "fake-browser"
    browser.write_text(RECORDER.format(python=sys.executable, out=str(out)))
    browser.chmod(0o755)
    port = free_port()
    env = {**os.environ, "BROWSER": str(browser), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, str(ROOT / "launch.py"), "serve", "--profile", "tiny", "--port", str(port), "--open"]
    cmd += ["--cache-dir", str(tmp_path / "cache")]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 600
        assert proc.stdout is not None
        while time.monotonic() < deadline and not out.exists():
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            lines.append(line)
            if "VideoChat Studio is ready:" in line:
                break
        for _ in range(300):  # the browser is started just after the URL is printed
            if out.exists() and out.read_text().count("\n") >= 2:
                break
            time.sleep(0.2)
        log = "".join(lines)
        assert f"VideoChat Studio is ready: http://127.0.0.1:{port}/" in log, log[-3000:]
        url, status, page = out.read_text().split("\n", 2)
        assert url == f"http://127.0.0.1:{port}/" and status == "200"
        assert "VideoChat Studio" in page  # the page was there when the browser came
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
