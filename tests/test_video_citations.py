"""The citation grammar for answers about several videos: `[lecture2.mp4 03:10]`, checked per video."""

from __future__ import annotations

import time

import pytest

from model.qa.citations import check_citations, check_video_citations, resolve_video
from model.timecode import CITATION_RE, citation_name, find_times, find_video_times, format_citation


def test_video_citations_are_read_with_their_video() -> None:
    text = "See [lecture2.mp4 03:10], [my talk (v2).webm 1:02:03 - 1:02:10] and [a.mp4 00:05, b c.mkv 01:10 and 01:20]."
    assert find_video_times(text) == [
        ("lecture2.mp4", 190.0),
        ("my talk (v2).webm", 3723.0),
        ("my talk (v2).webm", 3730.0),
        ("a.mp4", 5.0),
        ("b c.mkv", 70.0),
        ("b c.mkv", 80.0),
    ]
    assert find_times(text) == [t for _, t in find_video_times(text)]
    m = CITATION_RE.search("[x.mp4  00:10 to 00:20]")
    assert m is not None and (m.group("video"), m.group("a"), m.group("b")) == ("x.mp4", "00:10", "00:20")


def test_plain_citations_read_as_before() -> None:
    text = "At [00:12-00:20], [1:02:03], not [note], [ab:cd], 16:9, [e.g. 03:10] or [01:02.5]."
    assert find_times(text) == [12.0, 20.0, 3723.0, 62.5]
    assert find_video_times("[00:12]") == [(None, 12.0)]


@pytest.mark.parametrize(
    "hostile",
    [
        ("[" + "a.mp4 00:01, " * 300 + "x") * 3,
        "[" + "a and " * 500 + "x.mp4 00:01]",
        "[" + "x.mp4 00:01 and " * 300,
        "[a.b 1:1 " * 2000,
    ],
)
def test_grammar_stays_fast_on_hostile_text(hostile: str) -> None:
    t = time.perf_counter()
    find_video_times(hostile)
    CITATION_RE.findall(hostile)
    assert time.perf_counter() - t < 2.0  # a backtracking grammar takes minutes here


def test_single_video_check_leaves_named_citations_alone() -> None:
    text, cites, notes = check_citations("It is [00:05] and [other.mp4 00:07].", 60.0)
    assert text == "It is [00:05] and [other.mp4 00:07]." and [c.seconds for c in cites] == [5.0] and not notes


def test_each_citation_is_checked_against_its_own_video() -> None:
    durations = {"lecture1.mp4": 60.0, "lecture2.mp4": 300.0}
    text, cites, notes = check_video_citations(
        "Gravity is in [lecture2.mp4 03:10]; again [lecture1.mp4 03:10], and [00:20] then [LECTURE2.MP4 04:00-09:00].",
        durations,
    )
    # 03:10 is inside lecture2 (5 min) but past the end of lecture1 (1 min): removed there, with a note
    assert [(c.video, c.seconds, c.end) for c in cites] == [
        ("lecture2.mp4", 190.0, None),
        ("lecture1.mp4", 20.0, None),  # an unnamed time belongs to the video cited just before it
        ("lecture2.mp4", 240.0, 300.0),  # a range past the end is clamped to its own video's end
    ]
    assert "[lecture1.mp4 03:10]" not in text and "[lecture1.mp4 00:20]" in text
    assert "[lecture2.mp4 04:00-05:00]" in text
    assert len(notes) == 2 and "lecture1.mp4" in notes[0] and "lecture2.mp4" in notes[1]


def test_unknown_videos_and_unnamed_first_citations() -> None:
    durations = {"a.mp4": 30.0, "b.mp4": 30.0}
    text, cites, notes = check_video_citations("First [00:03], then [zebra.mp4 00:04].", durations, default="b.mp4")
    assert [(c.video, c.seconds) for c in cites] == [("b.mp4", 3.0)]
    assert "[b.mp4 00:03]" in text and "[zebra.mp4 00:04]" in text and "zebra.mp4" in notes[0]
    text, cites, _ = check_video_citations("Only [00:03].", durations)  # no default: not a citation
    assert cites == [] and text == "Only [00:03]."


def test_names_resolve_and_labels_fit_the_grammar() -> None:
    names = ["Lecture 1.mp4", "lecture 2.mp4", "notes.webm"]
    assert resolve_video("lecture 1.MP4", names) == "Lecture 1.mp4"
    assert resolve_video("notes", names) == "notes.webm"
    assert resolve_video("lecture", names) is None  # two videos start so: ambiguous
    for raw in ["a[1]:b.mp4", "lecture", "x, y; z.mkv", ""]:
        label = citation_name(raw)
        found = find_video_times(f"[{format_citation(5.0, 60.0, label)}]")
        assert found == [(label, 5.0)], (raw, label)
    assert citation_name("talk.mp4", {"TALK.mp4", "talk (2).mp4"}) == "talk (3).mp4"
