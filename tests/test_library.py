"""The video library over a real MemoryCache on disk: listing, reopening without ingest, per-user isolation,
deleting with its files, and entries from before the library existed."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from model.media import probe
from model.memory import ClipRecord, MemoryCache, VideoMemory
from model.memory.library import ORPHAN_GRACE_S, Library, LibraryError
from model.speech import Segment, Transcript

MODELS = {"speech": {"model": "base"}, "text_embedder": "all-minilm-l6-v2"}


def _jpeg(value: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((90, 160, 3), value, np.uint8))
    assert ok
    return buf.tobytes()


def make_memory(key: str, video: Path, n: int = 3) -> VideoMemory:
    info = probe(video)
    clips = [ClipRecord(i, 2.0 * i, 2.0 * (i + 1), [2.0 * i + 1], transcript=f"line {i}") for i in range(n)]
    return VideoMemory(
        key=key,
        path=video,
        profile="lite",
        info=info,
        transcript=Transcript([Segment(2.0 * i, 2.0 * i + 1, f"line {i}") for i in range(n)], "en", info.duration),
        clips=clips,
        sampling={"fps": 1.0},
        thumbnails=[_jpeg(40 * (i + 1)) for i in range(n)],
    )


@pytest.fixture()
def upload(tmp_path: Path, silent_video) -> Path:
    """A fresh copy of a real video, as Gradio's upload folder would hold it."""
    path = tmp_path / "uploads" / "clip.mp4"
    path.parent.mkdir()
    shutil.copyfile(silent_video.path, path)
    return path


def test_record_list_and_reopen_without_ingest(tmp_path: Path, upload: Path) -> None:
    cache = MemoryCache(tmp_path / "cache")
    memory = make_memory("k" * 32, upload)
    cache.put(memory)
    lib = Library(cache)
    before = time.time()
    entry = lib.record(memory, upload, "lecture1.mp4", owner=None, models=MODELS)
    assert entry.name == "lecture1.mp4" and entry.models == MODELS and entry.profile == "lite"
    assert entry.duration == pytest.approx(memory.duration) and before - 1 <= entry.added <= time.time()
    img = cv2.imdecode(np.frombuffer(entry.thumb, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape == (90, 160, 3) and abs(int(img.mean()) - 80) < 5  # the middle clip's
    d = entry.to_dict()
    assert json.loads(json.dumps(d)) == d and d["has_video"] and "thumb" not in d and str(tmp_path) not in str(d)

    # the upload goes away (session ended): the library keeps its own copy of the bytes
    data = upload.read_bytes()
    upload.unlink()
    fresh = Library(cache)  # a new process: nothing remembered in memory
    [listed] = fresh.entries()
    assert listed.key == memory.key and listed.video_file is not None and listed.video_file.read_bytes() == data
    t = time.perf_counter()
    _entry, reopened = fresh.open(memory.key)
    reopen_s = time.perf_counter() - t
    assert reopened.from_cache and reopened.path == listed.video_file
    assert [c.transcript for c in reopened.clips] == [c.transcript for c in memory.clips]
    assert reopen_s < 2.0, reopen_s


def test_users_see_and_delete_only_their_own(tmp_path: Path, upload: Path, speech_video) -> None:
    cache = MemoryCache(tmp_path / "cache")
    lib = Library(cache)
    shared = make_memory("a" * 32, upload)
    only_bob = make_memory("b" * 32, speech_video.path)
    for m in (shared, only_bob):
        cache.put(m)
    lib.record(shared, upload, "alice-name.mp4", owner="alice")
    lib.record(shared, upload, "bob-name.mp4", owner="bob")  # the same bytes, uploaded by both
    lib.record(only_bob, speech_video.path, "speech.mp4", owner="bob")

    assert [e.name for e in lib.entries("alice")] == ["alice-name.mp4"]
    assert lib.entries("alice")[0].owners == ["alice"]  # not told that bob has it too
    assert sorted(lib.entry(shared.key, "root", admin=True).owners) == ["alice", "bob"]
    assert sorted(e.name for e in lib.entries("bob")) == ["bob-name.mp4", "speech.mp4"]
    assert len(lib.entries("carol")) == 0
    assert {e.key for e in lib.entries("carol", admin=True)} == {shared.key, only_bob.key}
    with pytest.raises(LibraryError):
        lib.open(only_bob.key, "alice")
    with pytest.raises(LibraryError):
        lib.delete(only_bob.key, "alice")

    # alice deletes the shared video: gone for her, still there for bob (memory and file kept)
    assert lib.delete(shared.key, "alice") is False
    assert lib.entries("alice") == [] and cache.entry_dir(shared.key).is_dir()
    video = lib.entry(shared.key, "bob").video_file
    assert video is not None and video.is_file()
    # bob, the last owner, deletes it: the cache entry, the sidecar and the video copy go
    assert lib.delete(shared.key, "bob") is True
    assert not cache.entry_dir(shared.key).exists() and not video.exists()
    assert not (lib.root / f"{shared.key}.json").exists()
    assert [e.name for e in lib.entries("bob")] == ["speech.mp4"]


def test_entries_from_before_the_library_are_listed_and_readable(tmp_path: Path, upload: Path) -> None:
    cache = MemoryCache(tmp_path / "cache")
    old = make_memory("c" * 32, upload)
    cache.put(old)  # no sidecar: written before the library existed (or by `launch.py ingest --full`)
    lib = Library(cache)
    [entry] = lib.entries()
    assert entry.name == "clip.mp4" and entry.owners == [] and entry.video_file == upload
    assert lib.open(entry.key)[1].clips[0].transcript == "line 0"
    assert lib.entries("alice") == []  # with sign-in on, an ownerless video is the admins' only
    assert [e.key for e in lib.entries("root", admin=True)] == [old.key]
    assert lib.delete(old.key) is True and cache.get(old.key) is None


def test_evicted_memories_leave_no_files_behind(tmp_path: Path, upload: Path) -> None:
    cache = MemoryCache(tmp_path / "cache")
    lib = Library(cache)
    m = make_memory("d" * 32, upload)
    cache.put(m)
    entry = lib.record(m, upload, "x.mp4")
    shutil.rmtree(cache.entry_dir(m.key))  # evicted by the size cap
    assert lib.entries() == []  # not listed at once, and kept for the grace time (an ingest may be running)
    side = lib.root / f"{m.key}.json"
    assert side.exists()
    past = time.time() - ORPHAN_GRACE_S - 10
    os.utime(side, (past, past))
    lib.entries()
    assert not side.exists() and entry.video_file is not None and not entry.video_file.exists()
