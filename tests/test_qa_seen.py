"""Visual tags on hand-built memories: their text forms, the synonym table, search, moments and the prompt plan
(pure: no models, no video; the real tagger and an assembled video are in tests/test_vision_tags.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model.llm import VideoSegment
from model.media import VideoInfo
from model.memory import ClipRecord, MemoryCache, VideoMemory
from model.memory.cache import MANIFEST, META
from model.memory.clip_reading import SeenTags, tag_frames
from model.memory.keys import file_checksum
from model.memory.records import format_tags
from model.qa import RetrievalSettings, parse_time_refs
from model.qa.plan import clip_segment, plan_prompt, seen_line
from model.qa.search import QuestionVectors, find_moments, said_windows, score_clips, seen_scores
from model.speech import Transcript
from model.vision import Tag
from model.vision.labels import coco_labels, imagenet_names, labels_named

# Seven 16 s clips (lite's clip plan) of a video made of photos and footage: (tags as (label, first seen, count, source)).
OBJ, SCN = "object", "scene"
CLIPS: list[list[tuple[str, float, int, str]]] = [
    [("person", 0.0, 1, OBJ), ("football helmet", 2.0, 1, SCN)],
    [("car", 16.0, 2, OBJ), ("person", 20.0, 1, OBJ), ("bicycle", 22.0, 1, OBJ), ("jinrikisha", 24.0, 1, SCN)],
    [("cup", 32.0, 1, OBJ), ("bowl", 32.0, 1, OBJ), ("dining table", 34.0, 1, OBJ), ("espresso", 32.0, 1, SCN)],
    [("elephant", 48.0, 1, OBJ), ("motorcycle", 52.0, 1, OBJ), ("moped", 52.0, 1, SCN)],
    [("cat", 60.0, 1, OBJ), ("Egyptian cat", 62.0, 1, SCN)],
    [("motorcycle", 80.0, 1, OBJ)],
    [("cat", 100.0, 1, OBJ), ("tabby", 100.0, 1, SCN)],
]


def info(duration: float) -> VideoInfo:
    return VideoInfo(
        path="/v.mp4",
        duration=duration,
        fps=10.0,
        frame_count=int(duration * 10),
        width=640,
        height=360,
        rotation=0,
        codec="h264",
        has_audio=False,
    )


def memory() -> VideoMemory:
    clips = []
    for i, tags in enumerate(CLIPS):
        clips.append(
            ClipRecord(
                index=i,
                start=16.0 * i,
                end=16.0 * (i + 1),
                frame_times=[16.0 * i + 2 * j for j in range(8)],
                tags=[t[0] for t in tags],
                tag_times=[t[1] for t in tags],
                tag_counts=[t[2] for t in tags],
                tag_sources=[t[3] for t in tags],
            )
        )
    duration = 16.0 * len(CLIPS)
    return VideoMemory(
        key="seen",
        path=Path("/v.mp4"),
        profile="lite",
        info=info(duration),
        transcript=Transcript(segments=[], language=None, duration=duration),
        clips=clips,
        sampling={"short_side": 224, "fps": 0.5},
    )


def words_cost(text: str) -> int:
    return len(text.split())


def seg_cost(seg: VideoSegment) -> int:
    return 6 + words_cost(seg.text)


def plan(question: str, m: VideoMemory | None = None, settings: RetrievalSettings | None = None):
    m = m or memory()
    settings = settings or RetrievalSettings()
    tq = parse_time_refs(question, m.duration)
    vectors = QuestionVectors()
    scores = score_clips(m, question, vectors, use_tags=settings.use_tags)
    moments = find_moments(m, question, scores, vectors) if tq.is_when_question and not tq.windows else []
    said = said_windows(m, question, vectors) if not (tq.windows or moments) else []
    p = plan_prompt(m, question, tq, scores, moments, [], said, settings, 400, seg_cost, words_cost)
    return p, moments


# ---------------------------------------------------------------------------------------------- text forms
def test_tag_text_lists_objects_with_counts_then_scene_labels() -> None:
    text = format_tags(
        ["person", "bicycle", "mountain bike", "street sign"], [3, 1, 1, 1], ["object", "object", "scene", "scene"]
    )
    assert text == "person x3, bicycle; mountain bike, street sign"
    assert format_tags(["espresso"], [1], ["scene"]) == "espresso"
    assert format_tags([], [], []) == ""
    clip = memory().clips[1]
    assert clip.tag_text == "car x2, person, bicycle; jinrikisha"
    assert clip.search_text == "Seen: car x2, person, bicycle; jinrikisha", "tags are searchable text"


def test_prompt_line_groups_tags_by_first_sighting_with_times() -> None:
    clip = memory().clips[2]
    assert seen_line(clip, 96.0) == "Seen: [00:32] cup, bowl, espresso; [00:34] dining table"
    assert seen_line(clip, 96.0, limit=2) == "Seen: [00:32] cup, bowl"
    assert seen_line(memory().clips[1], 96.0).startswith("Seen: [00:16] car x2; [00:20] person")
    long = memory().clips[2]
    assert seen_line(long, 4000.0).startswith("Seen: [0:00:32]"), "an hour-long video's clock"
    seg = clip_segment(clip, use_ocr=True, duration=96.0)
    assert seg.text == seen_line(clip, 96.0) and seg.start == 32.0
    clip.ocr = ["CAFE"]
    assert clip_segment(clip, use_ocr=True, duration=96.0).text == "On screen: CAFE. " + seen_line(clip, 96.0)
    assert clip_segment(clip, use_ocr=True, use_tags=False, duration=96.0).text == "On screen: CAFE"


def test_a_clips_tags_keep_the_first_sighting_and_the_most_seen_at_once() -> None:
    seen = SeenTags()
    seen.add_frame([Tag("person", 0.9, "object"), Tag("tabby", 0.4, "scene")], 10.0)
    seen.add_frame([Tag("person", 0.8, "object"), Tag("person", 0.7, "object"), Tag("cat", 0.9, "object")], 12.0)
    assert seen.labels == ["person", "tabby", "cat"]
    assert seen.times == [10.0, 10.0, 12.0] and seen.counts == [2, 1, 1]
    assert seen.sources == ["object", "scene", "object"]
    assert tag_frames(8, 4) == [0, 2, 4, 6], "even gaps, from the clip's first frame"
    assert tag_frames(8, 8) == list(range(8)) and tag_frames(3, 8) == [0, 1, 2] and tag_frames(8, 0) == []


def test_a_weak_one_frame_guess_is_not_a_sighting() -> None:
    frames = [
        (48.0, [Tag("bird", 0.92, "object")]),  # sure: kept though alone
        (50.0, [Tag("cat", 0.54, "object")]),  # a cartoon taken for a cat, once
        (52.0, [Tag("motorcycle", 0.99, "object")]),
        (58.0, [Tag("dog", 0.55, "object")]),  # weak, but the next frame sees it too
        (60.0, [Tag("dog", 0.6, "object"), Tag("cat", 0.9, "object")]),
    ]
    seen = SeenTags.from_frames(frames, sure=0.7)
    assert seen.labels == ["bird", "motorcycle", "dog", "cat"]
    assert seen.times == [48.0, 52.0, 58.0, 60.0], "the cat is first seen where it really is"
    assert SeenTags.from_frames(frames).labels == ["bird", "cat", "motorcycle", "dog"], "sure=0 keeps everything"
    assert SeenTags.from_frames(frames[1:2], sure=0.7).labels == []


# ---------------------------------------------------------------------------------------------- label names
def test_label_files_hold_the_models_classes() -> None:
    coco = coco_labels()
    assert len(coco) == 80 and coco[1] == "person" and coco[17] == "cat" and coco[90] == "toothbrush"
    names = imagenet_names()
    assert len(names) == 1000 and names[285][0] == "Egyptian cat" and names[671][0] == "mountain bike"


@pytest.mark.parametrize(
    ("question", "thing", "must", "must_not"),
    [
        ("When does the bike appear?", "bike", {"bicycle", "mountain bike"}, set()),
        ("When do we see a motorbike?", "motorbike", {"motorcycle", "moped"}, set()),
        ("Is there a kitty?", "kitty", {"cat", "Egyptian cat", "tabby"}, {"dog"}),
        ("when does the coffee mug show up", "coffee mug", {"cup", "coffee mug"}, set()),
        ("What is on the table at 0:40?", "table", {"dining table"}, set()),
        ("Who is holding the teddy bear?", "teddy bear", {"teddy bear"}, {"bear"}),
        ("When do people appear?", "people", {"person"}, set()),
        ("When does a dog run?", "dog", {"dog", "golden retriever", "beagle"}, {"cat"}),
        ("Are the Egyptian cats asleep?", "egyptian cat", {"Egyptian cat"}, set()),
    ],
)
def test_everyday_words_name_the_labels_that_show_them(question, thing, must, must_not) -> None:
    named = labels_named(question)
    assert thing in named, named
    assert must <= named[thing] and not (must_not & named[thing])


def test_words_that_mean_something_else_name_nothing() -> None:
    for q in ("What is said at 3:25?", "What does the sign on screen say?", "Summarize the video.", "What happens?"):
        assert labels_named(q) == {}, q


# ---------------------------------------------------------------------------------------------- search
def test_seen_ranks_the_clips_that_show_the_named_thing() -> None:
    m = memory()
    scores = score_clips(m, "When does the kitty appear?", QuestionVectors())
    assert scores is not None and "seen" in scores.parts
    assert set(scores.top(3)) == {4, 6} | {scores.top(3)[2]} and set(scores.top(2)) == {4, 6}
    off = score_clips(m, "When does the kitty appear?", QuestionVectors(), use_tags=False)
    assert off is not None and "seen" not in off.parts
    assert seen_scores(m, "When is the word CAT written on screen?") is None, "text questions are OCR's"
    assert seen_scores(m, "What is said at 0:20?") is None, "nothing named that can be seen"


def test_when_question_gets_the_first_sighting_of_each_run() -> None:
    m = memory()
    for question, start, label in [
        ("When does the cat appear?", 60.0, "cat"),
        ("When do we first see a kitty?", 60.0, "cat"),
        ("When does the motorbike appear?", 52.0, "motorcycle"),
        ("When is the coffee mug shown?", 32.0, "cup"),
        ("When can we see a bike?", 22.0, "bicycle"),
        ("When does a person appear?", 0.0, "person"),
    ]:
        moments = find_moments(m, question, score_clips(m, question, QuestionVectors()), QuestionVectors())
        assert moments, question
        assert moments[0].start == start and moments[0].reason == f"seen: {label}", (question, moments)
    cats = find_moments(m, "When does the cat appear?", score_clips(m, "cat", QuestionVectors()), QuestionVectors())
    assert [c.start for c in cats] == [60.0, 100.0], "two separate runs, the earliest first"
    assert cats[0].end == 80.0 and cats[0].clip_index == 4, "a run spans its consecutive clips"
    motor = find_moments(
        m, "When does the motorbike appear?", score_clips(m, "motorbike", QuestionVectors()), QuestionVectors()
    )
    assert [x.start for x in motor] == [52.0, 80.0], "the cat's clip between them splits the runs"
    m.clips[4].tags.append("motorcycle")
    m.clips[4].tag_times.append(64.0)
    m.clips[4].tag_counts.append(1)
    m.clips[4].tag_sources.append("object")
    motor = find_moments(
        m, "When does the motorbike appear?", score_clips(m, "motorbike", QuestionVectors()), QuestionVectors()
    )
    assert [(x.start, x.end) for x in motor] == [(52.0, 96.0)], "clips 3-5 in a row: one moment from the first"


def test_no_tags_no_seen_moments() -> None:
    m = memory()
    for c in m.clips:
        c.tags, c.tag_times, c.tag_counts, c.tag_sources = [], [], [], []
    scores = score_clips(m, "When does the cat appear?", QuestionVectors())
    assert scores is not None and "seen" not in scores.parts
    assert find_moments(m, "When does the cat appear?", scores, QuestionVectors()) == []


def test_seen_moment_beats_a_weak_speech_match() -> None:
    from model.speech import Segment

    m = memory()
    m.transcript = Transcript([Segment(40.0, 43.0, "and then we went home")], "en", m.duration)
    q = np.eye(8, dtype=np.float32)[0]
    line = np.array([0.3, np.sqrt(1 - 0.09), 0, 0, 0, 0, 0, 0], dtype=np.float32)  # similarity 0.3 to the question
    m.segment_embeddings = line[None]
    vectors = QuestionVectors(text=q)
    question = "When does the cat appear?"
    moments = find_moments(m, question, score_clips(m, question, vectors), vectors)
    assert moments[0].reason == "seen: cat" and all("speech" not in x.reason for x in moments), moments
    m.transcript.segments[0].text = "look, the cat is back"  # a line that says it is a moment too
    moments = find_moments(m, question, score_clips(m, question, vectors), vectors)
    assert any(x.reason.startswith("speech") and x.start == 40.0 for x in moments), moments


# ---------------------------------------------------------------------------------------------- prompt plan
def test_asked_time_prompt_carries_what_was_seen_then() -> None:
    p, _ = plan("What is on the table at 0:40?")
    assert p.choice.clips == [2]
    (seg,) = p.inputs.segments
    assert seg.text == "Seen: [00:32] cup, bowl, espresso; [00:34] dining table"
    assert "things seen in the pictures" in p.inputs.instructions
    p_off, _ = plan("What is on the table at 0:40?", settings=RetrievalSettings(use_tags=False))
    assert p_off.inputs.segments == [], "without tags a lite clip shows the model nothing"


def test_when_question_prompt_holds_the_sighting_clips() -> None:
    p, moments = plan("When does the cat appear?")
    assert moments[0].start == 60.0
    texts = [s.text for s in p.inputs.segments]
    assert any("[01:00] cat" in t for t in texts), texts
    assert p.choice.priority[0] in (4, 6)


# ---------------------------------------------------------------------------------------------- cache
def test_tags_survive_the_cache_and_old_entries_read_as_untagged(tmp_path: Path) -> None:
    cache = MemoryCache(tmp_path)
    m = memory()
    entry = cache.put(m)
    got = cache.get("seen")
    assert got is not None and [c.meta() for c in got.clips] == [c.meta() for c in m.clips]
    assert got.clips[1].tag_text == "car x2, person, bicycle; jinrikisha"
    # An entry written before tags existed: its clips have no tag keys (its manifest is rewritten to match).
    meta = json.loads((entry / META).read_text())
    for c in meta["clips"]:
        for k in ("tags", "tag_times", "tag_counts", "tag_sources"):
            c.pop(k)
    (entry / META).write_text(json.dumps(meta))
    manifest = json.loads((entry / MANIFEST).read_text())
    manifest["files"][META] = {"size": (entry / META).stat().st_size, "blake2b": file_checksum(entry / META)}
    (entry / MANIFEST).write_text(json.dumps(manifest))
    old = cache.get("seen")
    assert old is not None, "an old entry is still readable"
    assert all(c.tags == [] and c.tag_text == "" for c in old.clips)
