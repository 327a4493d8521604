"""Streaming, resumable ingest: chunk layout and files (unit), a shared in-process job usable after its first chunk,
and a real `launch.py ingest --full` process killed with SIGKILL mid-way, then resumed.

Videos are generated slide talks (tools/synth_lecture.py): continuous espeak speech, a still slide per topic.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from model.media import ClipPlan
from model.memory import ClipRecord, MemoryCache
from model.memory.chunks import (
    PARTIAL,
    Chunk,
    ChunkSpan,
    ChunkStore,
    assemble,
    plan_chunks,
    quiet_point,
    sweep_partial,
)
from model.speech import Segment, Word

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- units
def _plans(n: int, clip_s: float = 4.0) -> list[ClipPlan]:
    return [
        ClipPlan(i, [i * 4 + j for j in range(4)], [i * clip_s + j for j in range(4)], i * clip_s, (i + 1) * clip_s)
        for i in range(n)
    ]


def test_quiet_point_finds_the_pause() -> None:
    sr = 16000
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(sr * 10) * 0.3).astype(np.float32)
    audio[int(6.2 * sr) : int(6.8 * sr)] = 0.0  # a pause at 6.2-6.8 s
    t = quiet_point(audio, sr, 5.0, 9.0)
    assert 6.2 <= t <= 6.8, t
    assert quiet_point(None, sr, 5.0, 9.0) == 5.0


def test_plan_chunks_groups_whole_clips_and_ends_audio_in_a_pause() -> None:
    sr = 16000
    plans = _plans(25)  # 100 s of 4-s clips
    audio = (np.random.default_rng(1).standard_normal(sr * 100) * 0.3).astype(np.float32)
    audio[int(21.0 * sr) : int(21.6 * sr)] = 0.0  # right after the first chunk's last clip (20 s)
    spans = plan_chunks(plans, audio, sr, chunk_s=40.0, first_chunk_s=20.0, search_s=6.0)
    assert [(s.clip_start, s.clip_end) for s in spans] == [(0, 5), (5, 15), (15, 25)]
    assert spans[0].end == 20.0 and 21.0 <= spans[0].audio_end <= 21.6
    assert spans[1].audio_start == spans[0].audio_end, "audio windows tile the track"
    assert all(s.audio_end >= s.end for s in spans), "a chunk's audio covers its clips"
    assert spans[-1].audio_end == pytest.approx(100.0)


def _chunk(span: ChunkSpan, hidden: int = 8) -> Chunk:
    clips = [
        ClipRecord(
            index=i,
            start=4.0 * i,
            end=4.0 * (i + 1),
            frame_times=[4.0 * i + j for j in range(4)],
            transcript=f"line {i}",
            ocr=[f"SLIDE {i}"],
            ocr_times=[4.0 * i],
            embeddings=torch.randn(96, hidden).half(),
        )
        for i in range(span.clip_start, span.clip_end)
    ]
    words = [Word(span.start + 1, span.start + 1.5, "line", 0.9)]
    rng = np.random.default_rng(span.index)
    n = len(clips)
    return Chunk(
        span=span,
        clips=clips,
        segments=[Segment(span.start + 1, span.start + 2, f"line {span.index}", words)],
        language="en",
        thumbnails=[bytes([i]) * 30 for i in range(n)],
        retrieval=rng.standard_normal((n, 512)).astype(np.float32),
        text_embeddings=rng.standard_normal((n, 384)).astype(np.float32),
        segment_embeddings=rng.standard_normal((1, 384)).astype(np.float32),
        timings={"ocr_s": 1.0},
    )


def test_chunk_files_round_trip_and_damage_is_found(tmp_path: Path) -> None:
    spans = [ChunkSpan(0, 0, 3, 0.0, 12.0, 0.0, 12.5), ChunkSpan(1, 3, 5, 12.0, 20.0, 12.5, 20.0)]
    store = ChunkStore(tmp_path, "key1")
    store.write_layout(spans)
    assert store.spans() == spans
    made = [_chunk(s) for s in spans]
    for ch in made:
        store.write(ch)
    assert not [p for p in store.dir.iterdir() if p.name.startswith(".tmp")], "no temporary files left"
    back = [store.load(s) for s in spans]
    assert all(b is not None for b in back)
    for a, b in zip(made, back, strict=True):
        assert b is not None
        assert [c.meta() for c in a.clips] == [c.meta() for c in b.clips]
        assert all(torch.equal(x.embeddings, y.embeddings) for x, y in zip(a.clips, b.clips, strict=True))  # type: ignore[arg-type]
        assert a.segments == b.segments and a.thumbnails == b.thumbnails
        np.testing.assert_array_equal(a.text_embeddings, b.text_embeddings)
    memory = assemble("key1", Path("/v.mp4"), "tiny", None, {}, back[:1], complete=False)  # type: ignore[arg-type]
    assert memory.ingested_until == 12.0 and len(memory.clips) == 3 and not memory.complete
    whole = assemble("key1", Path("/v.mp4"), "tiny", None, {}, back, complete=True)  # type: ignore[arg-type]
    assert whole.complete and whole.text_embeddings is not None and whole.text_embeddings.shape == (5, 384)

    (victim,) = store.files()[1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    victim.write_bytes(bytes(data))
    assert store.load(spans[1]) is None, "a damaged chunk is not used"
    assert not victim.exists(), "and it is removed, so it is rebuilt"
    assert store.load(spans[0]) is not None
    other = ChunkSpan(0, 0, 3, 0.0, 12.0, 0.0, 13.0)  # a chunk written for another layout is not this one
    assert store.load(other) is None
    assert ".partial" in str(store.dir) and MemoryCache(tmp_path).total_bytes() == 0, "not a cache entry"
    assert sweep_partial(tmp_path) == [], "a recent ingest is kept for resuming"
    old = time.time() - 8 * 86400
    for f in [store.dir, *store.dir.iterdir()]:
        os.utime(f, (old, old))
    assert sweep_partial(tmp_path) == ["key1"] and not store.dir.exists(), "an abandoned one goes after a week"


# ---------------------------------------------------------------------------------------------- in process
@pytest.fixture(scope="module")
def lecture(tmp_path_factory: pytest.TempPathFactory):
    from tools.synth_lecture import make_lecture_video

    return make_lecture_video(tmp_path_factory.mktemp("lecture") / "talk.mp4", duration=120.0, scene_s=40.0)


@pytest.fixture(scope="module")
def speech_models():
    from model.memory import IngestModels
    from model.profiles import SpeechSpec
    from model.speech import build_transcriber
    from model.text import TextEmbedder

    return IngestModels(
        transcriber=build_transcriber(SpeechSpec(model="packaged:tiny.en", compute_type="int8"), "cpu"),
        text_embedder=TextEmbedder.load(),
    )


def _streams(models, cache_dir: Path, chunk_s: float = 20.0):
    from model.memory import IngestConfig, Ingestor
    from model.memory.stream import StreamConfig, StreamIngestor
    from model.profiles import SamplingSpec

    ing = Ingestor(models, IngestConfig(sampling=SamplingSpec(fps=0.5, frames_per_clip=4)), MemoryCache(cache_dir))
    return StreamIngestor(ing, StreamConfig(chunk_s=chunk_s, first_chunk_s=chunk_s))


@pytest.mark.slow
def test_job_is_usable_after_its_first_chunk_and_shared(lecture, speech_models, tmp_path: Path) -> None:
    streams = _streams(speech_models, tmp_path / "cache")
    snapshots: list[float] = []
    job = streams.start(lecture.path, progress=lambda s, f: snapshots.append(f))
    again = streams.start(lecture.path)
    assert again is job, "a second user of the same video shares the running ingest"
    first = job.wait_first(timeout=300)
    assert first.ingested_until is not None and 0 < first.ingested_until < lecture.duration
    assert not first.complete and len(first.clips) < len(job.spans) * 10
    assert all(c.end <= first.ingested_until + 1e-6 for c in first.clips)
    said = " ".join(s.text.lower() for s in first.transcript.segments)
    assert "bread" in said or "loaf" in said or "dough" in said, said
    later = job.wait_for(60.0, timeout=300)
    assert later is not None and later.seen_until >= 60.0
    done = job.wait_done(timeout=600)
    assert done.complete and done.seen_until == done.duration
    assert job.built == list(range(len(job.spans))) and not job.reused
    assert snapshots and max(snapshots) <= 1.0 + 1e-9
    # every line is where it is said: per-chunk transcripts are shifted to video time
    truth = [s for s in lecture.sentences if "solar" in s.text.lower()]
    line = next(s for s in done.transcript.segments if "solar" in s.text.lower())
    assert min(abs(line.start - t.start) for t in truth) < 1.5, (line, truth)
    assert not (tmp_path / "cache" / PARTIAL / job.key).exists(), "the chunk folder goes once the memory is whole"
    reopened = _streams(speech_models, tmp_path / "cache").memory_for(lecture.path)
    assert reopened.from_cache and [c.meta() for c in reopened.clips] == [c.meta() for c in done.clips]


# ---------------------------------------------------------------------------------------------- SIGKILL
def _ingest_cmd(video: Path, cache: Path) -> list[str]:
    return [
        sys.executable,
        "launch.py",
        "ingest",
        str(video),
        "--full",
        "--json",
        "--profile",
        "tiny",
        "--cache-dir",
        str(cache),
        "--chunk-seconds",
        "20",
        "--no-chapters",
        "-v",
    ]


def _run_ingest(video: Path, cache: Path, timeout: float = 900) -> tuple[dict, str]:
    out = subprocess.run(_ingest_cmd(video, cache), cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout), out.stderr


def _same_memory(a: dict, b: dict) -> None:
    for part in ("key", "transcript", "clips", "language", "retrieval_index", "text_index", "ingested_until"):
        assert a["memory"][part] == b["memory"][part], part


@pytest.mark.slow
def test_sigkill_mid_ingest_then_resume_equals_fresh(lecture, tmp_path: Path) -> None:
    cache = tmp_path / "killed"
    log = open(tmp_path / "killed.log", "w")  # noqa: SIM115  (the child writes to it until it dies)
    proc = subprocess.Popen(_ingest_cmd(lecture.path, cache), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 900
    chunks: list[Path] = []
    try:
        while time.monotonic() < deadline:
            chunks = sorted((cache / PARTIAL).glob("*/chunk-*.safetensors"))
            if len(chunks) >= 3:
                break
            assert proc.poll() is None, (
                f"ingest ended before it was killed: {(tmp_path / 'killed.log').read_text()[-2000:]}"
            )
            time.sleep(0.2)
        else:
            pytest.fail("no chunks were written in time")
        proc.send_signal(signal.SIGKILL)  # kill -9: no handler, no cleanup
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert proc.returncode == -signal.SIGKILL
    folder = chunks[0].parent
    layout = json.loads((folder / "layout.json").read_text())
    total = len(layout["spans"])
    finished = sorted(int(p.name.split("-")[1]) for p in folder.glob("chunk-*.safetensors"))
    assert len(finished) < total, "killed mid-way"
    # damage one finished chunk as a bad disk would: it must be found and redone, the others kept
    damaged = finished[-1]
    victim = next(folder.glob(f"chunk-{damaged:04d}-*.safetensors"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 3] ^= 0x55
    victim.write_bytes(bytes(data))

    resumed, log_text = _run_ingest(lecture.path, cache)
    kept = [i for i in finished if i != damaged]
    assert resumed["chunks"]["reused"] == kept, resumed["chunks"]
    assert resumed["chunks"]["built"] == [i for i in range(total) if i not in kept], resumed["chunks"]
    assert resumed["memory"]["timings"]["chunks_reused"] == len(kept)
    assert not folder.exists(), "the finished memory replaced its chunks"
    for i in range(total):  # the process's own log says what it computed
        built = re.search(rf"chunk {i} of \w+ \[[^\]]*\] built", log_text) is not None
        read = re.search(rf"chunk {i} of \w+ \[[^\]]*\] read back", log_text) is not None
        assert (read, built) == ((True, False) if i in kept else (False, True)), (i, kept)

    fresh, _ = _run_ingest(lecture.path, tmp_path / "fresh")
    assert fresh["chunks"]["built"] == list(range(total)) and not fresh["chunks"]["reused"]
    _same_memory(resumed, fresh)
    key = resumed["memory"]["key"]
    a, b = MemoryCache(cache).get(key), MemoryCache(tmp_path / "fresh").get(key)
    assert a is not None and b is not None
    assert [c.meta() for c in a.clips] == [c.meta() for c in b.clips]
    assert all(torch.equal(x.embeddings, y.embeddings) for x, y in zip(a.clips, b.clips, strict=True))  # type: ignore[arg-type]
    for name in ("text_embeddings", "segment_embeddings", "retrieval_embeddings"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=1e-5, err_msg=name)
    assert a.thumbnails == b.thumbnails
    assert a.transcript.segments == b.transcript.segments


def test_questions_over_a_partial_memory_say_how_far_it_has_seen() -> None:
    from model.media import VideoInfo
    from model.memory import VideoMemory
    from model.qa.partial import needed_until, seen_note, split_unseen, unseen_note
    from model.qa.timeparse import parse_time_refs
    from model.speech import Transcript

    info = VideoInfo("/v.mp4", 3600.0, 10.0, 36000, 320, 240, 0, "h264", True)
    memory = VideoMemory("k", Path("/v.mp4"), "lite", info, Transcript(), [], {}, ingested_until=750.0)
    assert seen_note(memory).startswith("I have seen up to 0:12:30 of 1:00:00 so far")
    tq = parse_time_refs("What happens at 5:00 and at 40:00?", memory.duration)
    kept, unseen = split_unseen(tq, memory.seen_until)
    assert [w.start for w in kept.windows] == [300.0] and [w.start for w in unseen] == [2400.0]
    assert needed_until(unseen[0], memory.duration) == pytest.approx(2401.0)
    note = unseen_note(unseen, memory, eta_s=130)
    assert note.startswith("0:40:00 is not ingested yet (I have seen up to 0:12:30 so far)")
    assert "about 2 minutes" in note
    ranged, none = split_unseen(parse_time_refs("What is said between 10:00 and 20:00?", 3600.0), 750.0)
    assert not none and ranged.windows[0].end == 750.0, "a range is cut where the memory ends"
    whole = VideoMemory("k", Path("/v.mp4"), "lite", info, Transcript(), [], {})
    assert seen_note(whole) == "" and whole.complete


def test_frame_gate_reuses_reads_of_unchanged_frames_only() -> None:
    import cv2

    from model.memory.gate import FrameGate

    slide = np.full((240, 320, 3), (30, 60, 120), np.uint8)
    cv2.putText(slide, "Planets", (60, 130), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 3)
    noisy = np.clip(slide.astype(np.int16) + np.random.default_rng(0).integers(-3, 4, slide.shape), 0, 255)
    caption = slide.copy()
    cv2.putText(caption, "new line", (200, 225), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1)
    gate = FrameGate(0.03)
    assert gate.reuse(slide) is None, "nothing read yet"
    gate.remember(slide, ["Planets"])
    assert gate.reuse(noisy.astype(np.uint8)) == ["Planets"], "encoder noise is not a change"
    assert gate.reuse(caption) is None, "a small new caption in one corner is"
    assert (gate.reads, gate.reused) == (1, 1)
    gate.reset()
    assert gate.reuse(slide) is None, "each chunk starts afresh"
