"""Disk errors reach users as words, not tracebacks: read-only and full cache folders, folders that cannot be made,
and temporary folders left by crashed writes.

Real faults: a small tmpfs is mounted for a full disk (`size=`) and remounted read-only (tests run as root, and
root ignores permission bits, so `chmod` would prove nothing); a path under a regular file cannot be created by
anyone. Without mount rights the tmpfs tests skip (an immutable folder, `chattr +i`, still gives read-only).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from model.memory import IngestModels, Ingestor, MemoryCache
from model.memory.cache import CacheError, os_reason
from model.memory.ingest import IngestConfig
from model.profiles import SamplingSpec
from tests.test_memory import _memory

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def tmpfs(where: Path, size: str = "1m") -> Iterator[Path]:
    """A fresh tmpfs of `size` mounted on `where` (skips the test where mounting is not allowed)."""
    where.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def remount_read_only(where: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True, capture_output=True)


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith((".tmp-", ".old-")))


# ---------------------------------------------------------------------------------------------- cache
def test_full_disk_is_a_clear_error_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", size="64k") as root:
        cache = MemoryCache(root)
        assert cache.writable() is None
        with pytest.raises(CacheError, match=r"could not be saved in the cache folder .* \(the disk is full\)") as err:
            cache.put(_memory(payload=20_000))  # ~800 kB of embeddings
        assert "Errno" not in str(err.value)
        assert leftovers(root) == [] and list(root.iterdir()) == [], "the failed write was cleaned up"
        cache.put(_memory("small", n=2, hidden=None))  # and the space is there again for what fits
        assert cache.get("small") is not None


def test_read_only_cache_still_serves_and_refuses_writes_in_words(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", size="4m") as root:
        MemoryCache(root).put(_memory("kept"))
        remount_read_only(root)
        cache = MemoryCache(root)
        assert "cannot be written (the file system is read-only)" in (cache.writable() or "")
        assert cache.get("kept") is not None, "what the cache holds is still read"
        with pytest.raises(CacheError, match=r"\(the file system is read-only\)"):
            cache.put(_memory("new"))
        note = cache.try_put(_memory("new"))
        assert note is not None and "read-only" in note and "Answers still work" in note


def test_immutable_folder_is_refused_in_words(tmp_path: Path) -> None:
    """Without mounts: an immutable folder (chattr +i) is read-only even for root."""
    root = tmp_path / "immutable"
    root.mkdir()
    if subprocess.run(["chattr", "+i", str(root)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        cache = MemoryCache(root)
        with pytest.raises(CacheError, match="could not be saved") as err:
            cache.put(_memory())
        assert "Errno" not in str(err.value)
    finally:
        subprocess.run(["chattr", "-i", str(root)], check=True)


def test_cache_folder_that_cannot_be_made(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(CacheError, match=r"cannot be created \(a part of the path is a file, not a folder\)"):
        MemoryCache(blocker / "cache")


def test_os_reason_words() -> None:
    import errno

    assert os_reason(OSError(errno.ENOSPC, "No space left on device")) == "the disk is full"
    assert os_reason(OSError(errno.EACCES, "Permission denied")) == "permission denied"
    assert os_reason(OSError(errno.EIO, "Input/output error")) == "input/output error"


def test_stale_temporary_folders_are_removed_and_counted(tmp_path: Path) -> None:
    from model.memory.cache import _HOST

    cache = MemoryCache(tmp_path)
    cache.put(_memory("entry"))
    entry_bytes = cache.total_bytes()

    def temp(name: str, size: int, age_s: float = 0.0) -> Path:
        d = tmp_path / name
        d.mkdir()
        (d / "tensors.safetensors").write_bytes(b"\0" * size)
        if age_s:
            os.utime(d, (time.time() - age_s, time.time() - age_s))
        return d

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    crashed = temp(f".tmp-k-{_HOST}.{dead.pid}-abc", 5000)  # its writer is gone
    old = temp(".tmp-k-legacy", 7000, age_s=2 * 3600)  # unknown writer, hours old
    live = temp(f".tmp-k-{_HOST}.{os.getpid()}-def", 3000)  # a write in progress
    young = temp(".tmp-k-unknown", 1000)  # unknown writer, just made
    assert cache.total_bytes() == entry_bytes + 16000, "temporary folders count toward the size cap"

    assert sorted(cache.remove_stale_temp()) == sorted([crashed.name, old.name])
    assert live.exists() and young.exists() and not crashed.exists() and not old.exists()
    again = temp(f".tmp-k-{_HOST}.{dead.pid}-ghi", 10)
    MemoryCache(tmp_path)  # a restart cleans up too
    assert not again.exists() and live.exists()

    tight = MemoryCache(tmp_path, max_bytes=entry_bytes + 1000)
    assert tight.evict() == ["entry"], "live temporary folders count against the cap: the LRU entry goes"


def test_ingest_serves_from_memory_when_the_cache_is_full(tmp_path: Path, speech_video) -> None:
    """A real ingest (real decoding, no models) into a full cache: the memory is returned with a note."""
    with tmpfs(tmp_path / "full", size="16k") as root:
        (root / "filler").write_bytes(b"\0" * 12_000)
        ingestor = Ingestor(
            IngestModels(), IngestConfig(sampling=SamplingSpec(fps=0.5, frames_per_clip=4)), MemoryCache(root)
        )
        memory = ingestor.memory_for(speech_video.path)
        assert memory.clips and not memory.from_cache
        assert "the disk is full" in memory.cache_note and "Answers still work" in memory.cache_note
        assert leftovers(root) == []


# ---------------------------------------------------------------------------------------------- CLI
def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    return subprocess.run(
        [sys.executable, "launch.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("command", ["ask", "serve", "ingest"])
def test_cli_refuses_a_cache_dir_it_cannot_make_before_loading_models(tmp_path: Path, speech_video, command) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    bad = str(blocker / "cache")
    args = {
        "ask": ["ask", str(speech_video.path), "What is said?", "--profile", "lite", "--cache-dir", bad],
        "serve": ["serve", "--profile", "lite", "--port", "1", "--cache-dir", bad],
        "ingest": ["ingest", str(speech_video.path), "--full", "--profile", "lite", "--cache-dir", bad],
    }[command]
    start = time.monotonic()
    out = run_cli(*args)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.startswith("error: The memory cache folder") and "cannot be created" in out.stderr
    assert "Traceback" not in out.stderr and "loading" not in out.stderr, "refused before any model loads"
    assert time.monotonic() - start < 60


@pytest.mark.slow
def test_cli_ask_with_a_read_only_cache_answers_and_warns(tmp_path: Path, speech_video) -> None:
    with tmpfs(tmp_path / "ro", size="1m") as root:
        remount_read_only(root)
        args = ["ask", str(speech_video.path), "What is said at 0:15?", "--json", "--profile", "tiny"]
        out = run_cli(*args, "--max-tokens", "8", "--cache-dir", str(root), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    assert "warning: The memory cache folder" in out.stderr and "read-only" in out.stderr
    data = json.loads(out.stdout)
    assert data["answer"] and "read-only" in data["video"]["cache_note"]


def test_no_leftover_mounts(tmp_path: Path) -> None:
    """The tmpfs helper unmounts what it mounted (a stuck mount would fill /proc/mounts across runs)."""
    with tmpfs(tmp_path / "m", size="16k") as root:
        (root / "x").write_text("x")
    assert str(tmp_path / "m") not in Path("/proc/mounts").read_text()
    shutil.rmtree(tmp_path / "m")
