"""Time references in questions (model.memory.timeparse)."""

from __future__ import annotations

import pytest

from model.qa.timeparse import parse_time_refs
from model.timecode import format_time

D = 600.0  # a 10-minute video

MOMENTS = [
    ("What is written on the board at 2:15?", 135.0),
    ("what happens at 0:05", 5.0),
    ("at 9:59 what is shown", 599.0),
    ("what is shown at 90s", 90.0),
    ("what is shown at 90 seconds?", 90.0),
    ("what happens 90 seconds in", 90.0),
    ("what happens 3 minutes into the video", 180.0),
    ("at 2 minutes 30 seconds", 150.0),
    ("at 2 minutes and 30 seconds", 150.0),
    ("what happens at 2m30s", 150.0),
    ("at 1.5 minutes", 90.0),
    ("at minute 5", 300.0),
    ("at the 4-minute mark", 240.0),
    ("What does he say at five minutes?", 300.0),
    ("the 7:30 mark", 450.0),
    ("describe 4:10", 250.0),
]


@pytest.mark.parametrize(("question", "t"), MOMENTS)
def test_moments(question: str, t: float) -> None:
    q = parse_time_refs(question, D)
    assert len(q.windows) == 1, q
    w = q.windows[0]
    assert w.is_moment
    assert w.start == pytest.approx(t)
    assert not q.notes


@pytest.mark.parametrize(
    ("question", "t"),
    [("around the 5 minute mark", 300.0), ("roughly at 3:20", 200.0), ("about 2 minutes in", 120.0)],
)
def test_approximate_moments(question: str, t: float) -> None:
    (w,) = parse_time_refs(question, D).windows
    assert w.approximate and w.start == pytest.approx(t) and w.is_moment


def test_hours_clock() -> None:
    (w,) = parse_time_refs("what happens at 1:02:03?", 7200).windows
    assert w.start == 3723.0


RANGES = [
    ("what is said between 1:00 and 1:30", 60.0, 90.0),
    ("summarize from 5 to 7 minutes", 300.0, 420.0),
    ("from 30 to 45 seconds", 30.0, 45.0),
    ("between 2 and 3 minutes", 120.0, 180.0),
    ("from 1:00 to 2 minutes", 60.0, 120.0),
    ("1:00-1:30 summary", 60.0, 90.0),
    ("what happens 2:00 to 2:45", 120.0, 165.0),
    ("what happens in the first 2 minutes", 0.0, 120.0),
    ("in the first minute", 0.0, 60.0),
    ("in the last 2 minutes?", 480.0, 600.0),
    ("during the final 30 seconds", 570.0, 600.0),
    ("in the first half", 0.0, 300.0),
    ("the second half of the video", 300.0, 600.0),
    ("what happens after 2:00", 120.0, 150.0),
    ("what happened before 3:00", 150.0, 180.0),
    ("between 1:30 and 1:00", 60.0, 90.0),  # reversed order still a range
]


@pytest.mark.parametrize(("question", "start", "end"), RANGES)
def test_ranges(question: str, start: float, end: float) -> None:
    q = parse_time_refs(question, D)
    assert len(q.windows) == 1, q
    assert (q.windows[0].start, q.windows[0].end) == pytest.approx((start, end))
    assert not q.notes


@pytest.mark.parametrize(
    ("question", "start", "end"),
    [
        ("what happens at the start", 0.0, 15.0),
        ("at the beginning", 0.0, 15.0),
        ("what happens at the end of the video", 585.0, 600.0),
        ("near the end", 585.0, 600.0),
        ("what happens halfway", 300.0, 300.0),
        ("what happens in the middle of the video", 300.0, 300.0),
    ],
)
def test_fuzzy_places(question: str, start: float, end: float) -> None:
    (w,) = parse_time_refs(question, D).windows
    assert (w.start, w.end) == pytest.approx((start, end))
    assert w.approximate


def test_several_refs_in_order() -> None:
    q = parse_time_refs("compare 5:00 with 1:00 and the end", D)
    assert [w.start for w in q.windows] == [300.0, 60.0, 585.0]


@pytest.mark.parametrize(
    "question",
    [
        "What is this video about?",
        "between 3 and 5 people walk in",
        "the ball bounces for 2 seconds",
        "I am in the kitchen",
        "list the 3 main points",
        "is this in 4k?",
    ],
)
def test_no_time(question: str) -> None:
    q = parse_time_refs(question, D)
    assert q.windows == [] and q.notes == []


@pytest.mark.parametrize(
    "question", ["What is written on the board at 12:40?", "what happens at 30:00", "at 11 minutes"]
)
def test_past_the_end_is_told_not_clamped(question: str) -> None:
    q = parse_time_refs(question, D)
    assert q.windows == []
    assert len(q.notes) == 1 and "10:00" in q.notes[0]


def test_range_past_the_end_is_clipped_with_note() -> None:
    q = parse_time_refs("from 9:00 to 12:00", D)
    (w,) = q.windows
    assert (w.start, w.end) == (540.0, 600.0)
    assert q.notes and "12:00" in q.notes[0]


def test_last_longer_than_video() -> None:
    q = parse_time_refs("the last 20 minutes", D)
    assert (q.windows[0].start, q.windows[0].end) == (0.0, 600.0)
    assert q.notes


def test_end_within_tolerance_is_fine() -> None:
    q = parse_time_refs("at 10:00", D)
    assert q.windows[0].start == 600.0 and not q.notes


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("When does the dog appear?", True),
        ("when did she open the door", True),
        ("At what time is the car shown?", True),
        ("What time does the car arrive?", True),
        ("Find the moment where he laughs", True),
        ("so when is the cake cut?", True),
        ("What is the man holding?", False),
        ("What is written on the board at 12:40?", False),
        ("Summarize the video", False),
    ],
)
def test_when_questions(question: str, expected: bool) -> None:
    assert parse_time_refs(question, D).is_when_question is expected


@pytest.mark.parametrize(
    ("seconds", "duration", "text"),
    [(0, 60, "00:00"), (75.4, 600, "01:15"), (599.6, 600, "09:59"), (59.6, 600, "00:59"), (3723, 7200, "1:02:03"), (5, 7200, "0:00:05")],
)
def test_format_time(seconds: float, duration: float, text: str) -> None:
    assert format_time(seconds, duration) == text


@pytest.mark.parametrize("t", [0, 1, 59, 61, 135, 599])
def test_round_trip(t: int) -> None:
    (w,) = parse_time_refs(f"what happens at {format_time(t, D)}?", D).windows
    assert w.start == t


@pytest.mark.parametrize(
    ("question", "start", "end"),
    [
        ("from 5:00 to the end", 300.0, 600.0),
        ("from the beginning to 2:00", 0.0, 120.0),
        ("after 8 minutes until the end", 480.0, 600.0),
    ],
)
def test_open_ranges(question: str, start: float, end: float) -> None:
    (w,) = parse_time_refs(question, D).windows
    assert (w.start, w.end) == (start, end)
