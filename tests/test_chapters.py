"""Chapters and a summary: change points on a generated slide talk with known topic changes, titles by a real LLM
(tiny profile: SmolLM2 on transformers), cached beside the memory, used by whole-video questions, exported; and
the Assistant over a memory still being ingested (answers say how far they have seen, later times wait or are
told they are not ingested yet)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import numpy as np
import pytest

from model.qa.chapters import Chapter, Chapters, clean_title, pick_peaks, to_markdown, to_webvtt, to_youtube


# ---------------------------------------------------------------------------------------------- units
def test_exports_webvtt_youtube_markdown() -> None:
    ch = Chapters([Chapter(0.0, 65.5, "Baking bread"), Chapter(65.5, 3700.0, "The planets")], "Bread, then space.")
    vtt = to_webvtt(ch)
    assert vtt.startswith("WEBVTT\n\n")
    cues = re.findall(r"(\d\d:\d\d:\d\d\.\d{3}) --> (\d\d:\d\d:\d\d\.\d{3})\n(.+)", vtt)
    assert cues == [("00:00:00.000", "00:01:05.500", "Baking bread"), ("00:01:05.500", "01:01:40.000", "The planets")]
    assert to_youtube(ch, 3700.0) == "0:00:00 Baking bread\n0:01:05 The planets\n"
    assert to_youtube(Chapters([Chapter(0, 30, "A"), Chapter(30, 90, "B")]), 90.0) == "00:00 A\n00:30 B\n"
    md = to_markdown(ch, 3700.0)
    assert "- [0:01:05] The planets" in md and "## Summary" in md and "Bread, then space." in md


def test_titles_are_cleaned_and_peaks_kept_apart() -> None:
    assert clean_title('Title: "Baking Fresh Bread."\nmore text') == "Baking Fresh Bread"
    assert clean_title("[00:12] Chapter 2 - The solar system") == "The solar system"
    assert len(clean_title("one two three four five six seven eight nine ten").split()) == 8
    scores = np.array([0, 0.1, 0.9, 0.8, 0.1, 0.12, 0.1, 0.7, 0.1, 0.1])
    times = [10.0 * i for i in range(10)]
    assert pick_peaks(scores, times, min_gap=15.0, limit=5, floor=0.15) == [2, 7], "0.8 is too near 0.9"
    assert pick_peaks(scores, times, min_gap=25.0, limit=5, floor=0.15) == [3, 7], "none nearer the start than the gap"
    assert pick_peaks(scores, times, min_gap=15.0, limit=1, floor=0.15) == [2]


# ---------------------------------------------------------------------------------------------- real models
@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory):
    from tools.synth_lecture import make_lecture_video

    return make_lecture_video(tmp_path_factory.mktemp("talk") / "talk.mp4", duration=300.0, scene_s=60.0)


@pytest.fixture(scope="module")
def tiny_rt():
    from model.profiles import TINY
    from model.runtime import Runtime

    rt = Runtime.load(TINY.replace(ocr=False, max_new_tokens=16))
    yield rt
    asyncio.run(rt.close())


def _assistant(rt, cache_dir: Path, chunk_s: float = 30.0):
    from model.memory.stream import StreamConfig

    return rt.assistant(cache_dir=cache_dir, stream=StreamConfig(chunk_s=chunk_s, first_chunk_s=chunk_s))


@pytest.mark.slow
def test_partial_answers_wait_or_say_not_ingested_then_chapters(tiny_rt, talk, tmp_path: Path) -> None:
    from dataclasses import replace

    from model.qa import AnswerDone

    assistant = _assistant(tiny_rt, tmp_path / "cache")
    job = assistant.start_ingest(talk.path)
    first = job.wait_first(timeout=600)
    assert not first.complete

    async def ask(memory, question: str):
        events = [e async for e in assistant.ask(memory, question)]
        done = events[-1]
        assert isinstance(done, AnswerDone)
        return done.answer

    early = asyncio.run(ask(first, "What is said in the video?"))
    assert early.text.startswith("Note: I have seen up to 00:"), early.text
    assert any("so far" in n for n in early.notes) and all(c.seconds <= first.seen_until + 1 for c in early.citations)

    assistant.config = replace(assistant.config, wait_for_ingest_s=0.0)  # no waiting: told it is not there yet
    told = asyncio.run(ask(first, "What is said at 4:30?"))
    assert told.text.startswith("04:30 is not ingested yet (I have seen up to"), told.text
    assert not told.citations and told.timings == {}, "no LLM call for a stretch that is not there"

    assistant.config = replace(assistant.config, wait_for_ingest_s=600.0)
    later = asyncio.run(ask(job.memory, "What is said at 2:10?"))
    assert any(n.startswith("Waited") and "02:10" in n for n in later.notes) or job.seen_until >= 131, later.notes
    assert any(120 <= e.start <= 140 or e.start <= 130 <= e.end for e in later.evidence), later.evidence

    memory = job.wait_done(timeout=900)
    assert memory.complete and memory.chapters is None
    chapters = asyncio.run(assistant.chapters(memory))
    assert chapters is not None and memory.chapters is chapters
    truth = talk.extra["boundaries"]  # 60, 120, 180, 240
    starts = chapters.starts
    assert starts[0] == 0.0
    hits = [min(abs(s - t) for s in starts) <= 10.0 for t in truth]
    assert sum(hits) / len(truth) >= 0.75, (starts, truth)
    assert len(starts) <= len(truth) + 2, starts
    assert all(c.title and len(c.title.split()) <= 8 for c in chapters.chapters), chapters.chapters

    # cached beside the memory: another process (a new Assistant on the same cache) reads them, no LLM call
    other = _assistant(tiny_rt, tmp_path / "cache")
    calls = {"n": 0}
    real_stream = other.engine.stream

    def counting(*a, **k):  # a spy: counts, then calls the real engine
        calls["n"] += 1
        return real_stream(*a, **k)

    other.engine.stream = counting  # type: ignore[method-assign]
    try:
        again = other.ingest(talk.path)
        got = asyncio.run(other.chapters(again))
    finally:
        other.engine.stream = real_stream  # type: ignore[method-assign]
    assert got is not None and got.to_dict()["chapters"] == chapters.to_dict()["chapters"] and calls["n"] == 0
    prepared = other.prepare(again, "What is this video about?")
    assert "Chapters of the whole video:" in prepared.inputs.subtitles
    assert chapters.chapters[1].title in prepared.inputs.subtitles
