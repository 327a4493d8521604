"""Engine processes die with the process that started them, and SIGTERM stops the app like Ctrl-C.

vLLM runs its engine core (and, on CPU, a worker it spawns) in child processes. When the app or the CLI ended
without an orderly `close()` (SIGTERM, `kill -9`, a start-up error), those children stayed behind under PID 1
holding gigabytes each. Three guards, installed by `guard_children()` before an engine starts:

- children forked from the main thread get a parent-death signal (`prctl(PR_SET_PDEATHSIG, SIGTERM)`): the
  kernel stops them the moment their parent dies, however it died;
- a small watchdog process waits on the parent's pid and, once it is gone, stops whatever the parent left
  behind: its descendants (recorded while it lived) and any process carrying this parent's token in its
  environment (spawned children, which `PR_SET_PDEATHSIG` does not follow across a fork+exec);
- `interrupt_on_termination()` turns SIGTERM (and SIGHUP) into `Terminated`, a KeyboardInterrupt, so the
  `finally` blocks that close the engine run as they do for Ctrl-C.

This file is also the watchdog's program: `python -I lifecycle.py watch PID TOKEN` (stdlib only, so the
watchdog starts in milliseconds and imports nothing of the app).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType

PR_SET_PDEATHSIG = 1
TOKEN_ENV = "VIDEOCHAT_PROCESS_GUARD"  # "<parent pid>-<random>": marks every process the parent started
POLL_S = 0.25  # how often the watchdog looks at its parent
SCAN_EVERY = 4  # ...and records the parent's descendants every this many polls
SETTLE_S = 3.0  # what a dead parent left gets this long to end by itself
GRACE_S = 10.0  # SIGTERM first (vLLM shuts its engine down on it), SIGKILL what is left after this

_lock = threading.Lock()
_guarded_pid: int | None = None  # the pid guard_children() ran in (a forked child must guard again)
_watchdog: subprocess.Popen[bytes] | None = None
_prctl: Callable[..., int] | None = None
_fork_in_main = threading.local()
_received: list[int] = []
_hooked = False  # the fork hooks are registered (a forked child inherits them, and this flag)


class Terminated(KeyboardInterrupt):
    """SIGTERM/SIGHUP arrived: unwinds like Ctrl-C so engines are closed; `signum` gives the exit code."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# ---------------------------------------------------------------------------------------------- signals
def _on_termination(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    on_sigint = signal.getsignal(signal.SIGINT)
    if callable(on_sigint) and on_sigint not in (signal.default_int_handler, _on_termination):
        # Someone handles Ctrl-C their own way (asyncio.run cancels its main task): do what Ctrl-C does.
        on_sigint(signal.SIGINT, frame)
        return
    raise Terminated(signum)


def interrupt_on_termination(signals: Iterable[int] = (signal.SIGTERM, signal.SIGHUP)) -> None:
    """Raise `Terminated` in the main thread on these signals (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in signals:
        if signal.getsignal(sig) is not signal.SIG_IGN:  # nohup'd: keep ignoring SIGHUP
            signal.signal(sig, _on_termination)


def termination_signal() -> int | None:
    """The first SIGTERM/SIGHUP this process received (even one a library swallowed), or None."""
    return _received[0] if _received else None


def exit_code(err: BaseException) -> int:
    """128 + the signal number for an interrupt (130 for Ctrl-C, 143 for SIGTERM)."""
    if isinstance(err, Terminated):
        return 128 + err.signum
    return 128 + (termination_signal() or signal.SIGINT)


# ---------------------------------------------------------------------------------------------- parent death
def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return fn


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send `sig` to this process when its parent dies (Linux); True when set."""
    global _prctl
    if _prctl is None:
        _prctl = _load_prctl()
    if _prctl is None:
        return False
    return int(_prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0


def _before_fork() -> None:
    _fork_in_main.value = (threading.current_thread() is threading.main_thread(), os.getpid())


def _after_fork_in_child() -> None:
    # PR_SET_PDEATHSIG fires when the *thread* that forked ends: only a fork from the parent's main thread
    # (which lives as long as the process) may use it. Other forks rely on the watchdog.
    in_main, parent = getattr(_fork_in_main, "value", (False, 0))
    if in_main and die_with_parent(signal.SIGTERM) and os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)  # the parent died between fork() and prctl()


def guard_children() -> None:
    """Make every process started from now on die with this one (idempotent; call before starting an engine)."""
    global _guarded_pid, _watchdog, _prctl, _hooked
    with _lock:
        if _guarded_pid == os.getpid():
            return
        _guarded_pid = os.getpid()
        if _prctl is None:
            _prctl = _load_prctl()  # loaded here, not in a freshly forked child
        if _prctl is not None and not _hooked:
            os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
            _hooked = True
        token = f"{os.getpid()}-{secrets.token_hex(8)}"
        os.environ[TOKEN_ENV] = token
        _watchdog = start_watchdog(os.getpid(), token)


def start_watchdog(pid: int, token: str) -> subprocess.Popen[bytes] | None:
    """The watchdog process for `pid` (None where /proc is missing: not Linux)."""
    if not Path(f"/proc/{pid}/stat").exists():
        return None
    cmd = [sys.executable, "-I", "-S", str(Path(__file__).resolve()), "watch", str(pid), token]
    # Not its own session: `kill -9 -PGID` of the app takes the watchdog along with everything else.
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, close_fds=True)


# ---------------------------------------------------------------------------------------------- watchdog
def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of a live process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
    return fields[0], int(fields[1]), int(fields[19])


def _alive(pid: int, start: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X") and st[2] == start


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def descendants(root: int) -> dict[int, int]:
    """Live descendants of `root` as {pid: start time}."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for pid in _all_pids():
        st = _stat(pid)
        if st is not None and st[0] not in ("Z", "X"):
            children.setdefault(st[1], []).append(pid)
            starts[pid] = st[2]
    out: dict[int, int] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid not in out and pid in starts:
            out[pid] = starts[pid]
            todo += children.get(pid, [])
    return out


def _carrying(token: str) -> dict[int, int]:
    """Processes whose environment (as they were exec'd with it) holds the parent's token."""
    needle = f"{TOKEN_ENV}={token}".encode()
    found: dict[int, int] = {}
    for pid in _all_pids():
        with contextlib.suppress(OSError):
            if needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                st = _stat(pid)
                if st is not None and st[0] not in ("Z", "X"):
                    found[pid] = st[2]
    return found


def _signal_all(procs: dict[int, int], sig: int) -> None:
    for pid, start in procs.items():
        if _alive(pid, start):
            with contextlib.suppress(OSError):
                os.kill(pid, sig)


def _wait_exit(procs: dict[int, int], seconds: float) -> dict[int, int]:
    """Wait up to `seconds` for `procs` to end; the ones still running."""
    deadline = time.monotonic() + seconds
    while True:
        procs = {p: s for p, s in procs.items() if _alive(p, s)}
        if not procs or time.monotonic() >= deadline:
            return procs
        time.sleep(0.1)


def reap_leftovers(known: dict[int, int], token: str, settle_s: float = SETTLE_S, grace_s: float = GRACE_S) -> int:
    """Stop what a dead parent left: what has not ended on its own within `settle_s` (after an orderly exit
    multiprocessing's resource tracker takes a moment) gets SIGTERM, then SIGKILL after `grace_s`.
    Returns how many processes had to be signalled."""
    me = os.getpid()
    procs = {**known, **_carrying(token)}
    for pid, start in list(procs.items()):
        if _alive(pid, start):
            procs.update(descendants(pid))
    procs = _wait_exit({p: s for p, s in procs.items() if p != me}, settle_s)
    if not procs:
        return 0
    _signal_all(procs, signal.SIGTERM)
    _signal_all(_wait_exit(procs, grace_s), signal.SIGKILL)
    return len(procs)


def watch(parent: int, token: str, poll_s: float = POLL_S) -> int:
    """Wait for `parent` to end, then stop what it left running."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # Ctrl-C / a closed terminal: still clean up
        signal.signal(sig, signal.SIG_IGN)
    st = _stat(parent)
    if st is None:
        return 0
    parent_start = st[2]
    known: dict[int, int] = {}
    n = 0
    while _alive(parent, parent_start):
        if n % SCAN_EVERY == 0:
            known.update(descendants(parent))
            known = {p: s for p, s in known.items() if _alive(p, s)}
        n += 1
        time.sleep(poll_s)
    count = reap_leftovers(known, token)
    if count:
        print(f"videochat: process {parent} ended; stopped {count} leftover process(es)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "watch":
        sys.exit(watch(int(sys.argv[2]), sys.argv[3]))
    print(f"usage: {sys.argv[0]} watch PID TOKEN", file=sys.stderr)
    sys.exit(2)
