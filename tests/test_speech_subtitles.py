"""Subtitle exports (SRT/WebVTT parsed back by an independent parser) and the budgeted subtitle lines."""

from __future__ import annotations

import re

import pytest

from model.speech import Segment, SpeechError, Transcript, Word, save_subtitles, subtitle_lines, to_srt, to_vtt


def T(*segs: tuple[float, float, str], duration: float | None = None) -> Transcript:
    segments = [Segment(a, b, text) for a, b, text in segs]
    return Transcript(segments, "en", duration if duration is not None else max((b for _, b, _ in segs), default=0.0))


def ws_tokens(text: str) -> int:
    """A real (if simple) tokenizer: whitespace-separated pieces, a line break is one token."""
    return len(text.split()) + text.count("\n")


# ----------------------------------------------------------------------------------------------- SRT / VTT

_SRT_TIME = re.compile(r"^(\d{2}):(\d{2}):(\d{2}),(\d{3}) --> (\d{2}):(\d{2}):(\d{2}),(\d{3})$")
_VTT_TIME = re.compile(r"^(\d{2}):(\d{2}):(\d{2})\.(\d{3}) --> (\d{2}):(\d{2}):(\d{2})\.(\d{3})$")


def _secs(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def parse_srt(text: str) -> list[tuple[int, float, float, str]]:
    cues = []
    for block in text.strip().split("\n\n"):
        lines = block.split("\n")
        m = _SRT_TIME.match(lines[1])
        assert m, lines[1]
        g = m.groups()
        cues.append((int(lines[0]), _secs(*g[:4]), _secs(*g[4:]), "\n".join(lines[2:])))
    return cues


def parse_vtt(text: str) -> list[tuple[str, float, float, str]]:
    blocks = text.strip().split("\n\n")
    assert blocks[0] == "WEBVTT"
    cues = []
    for block in blocks[1:]:
        ident, timing, *payload = block.split("\n")
        m = _VTT_TIME.match(timing)
        assert m, timing
        g = m.groups()
        body = "\n".join(payload)
        assert "-->" not in body and "<" not in body
        unescaped = body.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        cues.append((ident, _secs(*g[:4]), _secs(*g[4:]), unescaped))
    return cues


SAMPLE = T(
    (0.0, 1.5, "Hello there."),
    (61.25, 65.0, "  A <b>bold</b> & fast\n\nclaim --> here  "),
    (65.0, 65.0, "zero length"),
    (70.0, 71.0, "   "),  # nothing to show: no cue
    (3723.4567, 3725.001, "Over an hour in."),
)


def test_srt_roundtrip():
    text = to_srt(SAMPLE)
    cues = parse_srt(text)
    assert [c[0] for c in cues] == [1, 2, 3, 4]
    assert cues[0][1:3] == (0.0, 1.5)
    assert cues[1][1:] == (61.25, 65.0, "A <b>bold</b> & fast claim -> here")
    assert cues[2][1] == 65.0 and cues[2][2] > cues[2][1]  # zero-length cue gets a minimal length
    assert cues[3][1:3] == (pytest.approx(3723.457), pytest.approx(3725.001))
    assert "01:02:03,457 --> 01:02:05,001" in text
    assert text.endswith("\n") and not text.endswith("\n\n\n")


def test_vtt_roundtrip_and_escaping():
    text = to_vtt(SAMPLE)
    assert text.startswith("WEBVTT\n\n")
    cues = parse_vtt(text)
    assert [c[0] for c in cues] == ["1", "2", "3", "4"]
    assert cues[1][1:] == (61.25, 65.0, "A <b>bold</b> & fast claim --> here")
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; fast claim --&gt; here" in text
    assert "01:02:03.457 --> 01:02:05.001" in text
    assert to_vtt(Transcript()).strip() == "WEBVTT" and to_srt(Transcript()) == ""


def test_save_subtitles_by_extension(tmp_path):
    srt = save_subtitles(SAMPLE, tmp_path / "a" / "x.SRT")
    vtt = save_subtitles(SAMPLE, tmp_path / "x.vtt")
    assert srt.read_text(encoding="utf-8") == to_srt(SAMPLE)
    assert vtt.read_text(encoding="utf-8") == to_vtt(SAMPLE)
    with pytest.raises(SpeechError, match=r"\.srt or \.vtt"):
        save_subtitles(SAMPLE, tmp_path / "x.txt")


def test_transcript_dict_roundtrip_plain():
    t = Transcript([Segment(1.0, 2.0, "a", [Word(1.0, 1.5, "a", 0.9)]), Segment(2.0, 3.0, "b")], None, 3.0)
    assert Transcript.from_dict(t.to_dict()) == t
    assert t.text == "a b" and bool(t) and not Transcript()


# ----------------------------------------------------------------------------------------------- subtitle_lines

LONG = T(
    (0.4, 4.2, "one two three"),
    (65.0, 69.0, "four five six"),
    (130.9, 134.1, "seven eight nine"),
    (200.0, 204.0, "ten eleven twelve"),
    duration=240.0,
)
LINE_TOKENS = 4  # "[mm:ss-mm:ss]" + three words


def test_lines_format_and_full_budget():
    text = subtitle_lines(LONG, 1000, ws_tokens)
    assert text.split("\n") == [
        "[00:00-00:05] one two three",
        "[01:05-01:09] four five six",
        "[02:10-02:15] seven eight nine",
        "[03:20-03:24] ten eleven twelve",
    ]


def test_priority_windows_first_then_time_order_output_chronological():
    budget = 2 * LINE_TOKENS + 1  # two lines and the break between them
    # The window picks the third line; the rest of the budget goes to the earliest other line.
    text = subtitle_lines(LONG, budget, ws_tokens, priority_windows=[(131.0, 133.0)])
    assert text.split("\n") == ["[00:00-00:05] one two three", "[02:10-02:15] seven eight nine"]
    assert ws_tokens(text) <= budget
    # Windows are ranked: with room for one line, the first window wins even though it is later.
    text = subtitle_lines(LONG, LINE_TOKENS, ws_tokens, priority_windows=[(199.0, 201.0), (60.0, 70.0)])
    assert text == "[03:20-03:24] ten eleven twelve"
    # Both windows fit: output is chronological, not window order.
    text = subtitle_lines(LONG, budget, ws_tokens, priority_windows=[(199.0, 201.0), (60.0, 70.0)])
    assert text.split("\n") == ["[01:05-01:09] four five six", "[03:20-03:24] ten eleven twelve"]
    # A moment (t0 == t1) selects the line that contains it; touching a boundary without overlap does not.
    assert subtitle_lines(LONG, LINE_TOKENS, ws_tokens, [(66.0, 66.0)]) == "[01:05-01:09] four five six"
    assert subtitle_lines(LONG, LINE_TOKENS, ws_tokens, [(4.2, 65.0)]) == "[00:00-00:05] one two three"


def test_budget_limits_and_skips_lines_that_do_not_fit():
    assert subtitle_lines(LONG, 0, ws_tokens) == ""
    assert subtitle_lines(LONG, LINE_TOKENS - 1, ws_tokens) == ""
    assert subtitle_lines(Transcript(), 100, ws_tokens) == ""
    t = T((0.0, 2.0, "a very long line that will not fit at all"), (3.0, 4.0, "short"), duration=10.0)
    assert subtitle_lines(t, 3, ws_tokens) == "[00:03-00:04] short"
    for budget in range(0, 20):
        assert ws_tokens(subtitle_lines(LONG, budget, ws_tokens)) <= budget


def test_joined_text_is_rechecked_when_the_tokenizer_merges_lines():
    # A tokenizer whose joined cost exceeds the per-line sum: lines are dropped until it fits.
    def costly(text: str) -> int:
        return ws_tokens(text) + 3 * text.count("\n")

    text = subtitle_lines(LONG, 2 * LINE_TOKENS + 1, costly)
    assert costly(text) <= 2 * LINE_TOKENS + 1 and text == "[00:00-00:05] one two three"


def test_hour_long_videos_use_hours():
    t = T((5.0, 7.0, "early"), (3725.2, 3727.9, "late"), duration=3800.0)
    assert subtitle_lines(t, 100, ws_tokens).split("\n") == ["[0:00:05-0:00:07] early", "[1:02:05-1:02:08] late"]
    short_but_long_container = T((5.0, 7.0, "early"), duration=3600.0)
    assert subtitle_lines(short_but_long_container, 100, ws_tokens) == "[0:00:05-0:00:07] early"
    assert subtitle_lines(T((5.0, 7.0, "x"), duration=3599.0), 100, ws_tokens) == "[00:05-00:07] x"


def test_split_on_pauses_gives_each_sentence_its_own_time() -> None:
    from model.speech.transcriber import split_on_pauses

    words = [
        Word(5.8, 6.2, "Welcome", 0.9),
        Word(6.2, 6.9, "home,", 0.9),
        Word(15.2, 15.5, "the", 0.9),
        Word(15.5, 16.0, "red", 0.9),
        Word(16.0, 16.4, "ball.", 0.9),
    ]
    parts = split_on_pauses(Segment(5.8, 16.4, "Welcome home, the red ball.", words))
    assert [(p.start, p.end, p.text) for p in parts] == [(5.8, 6.9, "Welcome home"), (15.2, 16.4, "The red ball.")]
    assert parts[1].words == words[2:]
    close = [Word(0.0, 0.5, "a", 0.9), Word(0.9, 1.2, "b", 0.9)]
    assert split_on_pauses(Segment(0.0, 1.2, "a b", close)) == [Segment(0.0, 1.2, "a b", close)]
    assert split_on_pauses(Segment(0.0, 1.2, "a b", None)) == [Segment(0.0, 1.2, "a b", None)]
