"""App logic without a browser: citation links, exports, per-session state, auth parsing."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from app.config import AppSettings, parse_auth, settings_from_args
from app.export import chat_markdown, safe_stem
from app.links import find_times, format_clock, linkify_times, moments_html, parse_clock, seek_link, transcript_html
from app.state import SessionState, Turn, delete_session
from model.errors import ConfigError
from model.speech import Segment, Transcript, to_srt, to_vtt


class _Links(HTMLParser):
    """Collects (data-seek, href, text) of every <a> and all text, to check the markup independently."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str]] = []
        self.text: list[str] = []
        self._open: dict[str, str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._open = {**dict(attrs), "text": ""}
        elif tag in ("script", "img", "iframe"):
            raise AssertionError(f"unexpected <{tag}> made it through")

    def handle_endtag(self, tag):
        if tag == "a" and self._open is not None:
            self.links.append(self._open)
            self._open = None

    def handle_data(self, data):
        self.text.append(data)
        if self._open is not None:
            self._open["text"] += data


def _parse(markup: str) -> _Links:
    p = _Links()
    p.feed(markup)
    p.close()
    return p


@pytest.mark.parametrize(
    ("clock", "seconds"),
    [("00:00", 0), ("0:07", 7), ("01:23", 83), ("12:05.5", 725.5), ("1:02:03", 3723), ("10:00:00", 36000)],
)
def test_parse_clock(clock: str, seconds: float) -> None:
    assert parse_clock(clock) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["1:60", "1:2", "::", "1", "1:00:60", "1:60:00", ""])
def test_parse_clock_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_clock(bad)


def test_format_clock_round_trip() -> None:
    for s in (0, 5, 59, 60, 83, 599, 3599, 3600, 3723, 7325):
        text = format_clock(s)
        assert parse_clock(text) == s
        assert (":" in text) and (text.count(":") == (2 if s >= 3600 else 1))


def test_citations_become_seek_links() -> None:
    text = "The cat appears [00:12] and leaves at [1:02:03]. Range [00:20-00:31], also [0:40 – 0:45]."
    out = _parse(linkify_times(text, duration=4000))
    seeks = [float(a["data-seek"]) for a in out.links]
    assert seeks == [12, 3723, 20, 31, 40, 45]
    assert [a["text"] for a in out.links] == ["00:12", "1:02:03", "00:20", "00:31", "0:40", "0:45"]
    for a in out.links:
        assert a["class"] == "seek" and a["href"] == f"#t={a['data-seek']}"
    # the visible text is unchanged apart from markup
    assert "".join(out.text) == text
    assert find_times(text) == seeks


def test_times_past_the_end_are_not_links() -> None:
    out = _parse(linkify_times("At [00:10] and at [09:59].", duration=60))
    assert [float(a["data-seek"]) for a in out.links] == [10]
    assert "09:59" in "".join(out.text)


def test_non_citations_untouched_and_html_escaped() -> None:
    text = 'Ratio 16:9, time 12:30 without brackets, [note] and <script>alert("x")</script> & [ab:cd]'
    markup = linkify_times(text, duration=None)
    out = _parse(markup)  # raises if a <script> tag survived
    assert out.links == []
    assert "".join(out.text) == text
    assert "<script>" not in markup and html.escape("<script>") in markup


def test_seek_link_formats_fractional_seconds() -> None:
    a = _parse(seek_link(83.25)).links[0]
    assert a["data-seek"] == "83.25" and a["text"] == "[01:23]"
    assert _parse(seek_link(90.0)).links[0]["data-seek"] == "90"


def test_transcript_and_moments_html() -> None:
    segs = [Segment(0.0, 2.5, "Hello <world>"), Segment(65.2, 70.0, "Second line")]
    out = _parse(transcript_html(segs))
    assert [float(a["data-seek"]) for a in out.links] == [0.0, 65.2]
    assert "Hello <world>" in "".join(out.text)
    assert "No speech" in transcript_html([])
    m = _parse(moments_html([(30.0, 41.0, "the weather")]))
    assert float(m.links[0]["data-seek"]) == 30.0 and m.links[0]["text"] == "[00:30–00:41]"
    assert moments_html([]) == ""


def test_chat_markdown_export() -> None:
    turns = [
        Turn("What is said first?", "A greeting [00:01]."),
        Turn("And then?", "It talks about rain [00:12-00:20]", stopped=True),
        Turn("Broken?", error="The engine failed."),
    ]
    md = chat_markdown(turns, "my clip.mp4", duration=75.0, profile="lite")
    lines = md.splitlines()
    assert lines[0] == "# Chat about my clip.mp4"
    assert "length 01:15" in lines[2] and "profile lite" in lines[2]
    heads = [ln for ln in lines if ln.startswith("## ")]
    assert heads == ["## Q1: What is said first?", "## Q2: And then?", "## Q3: Broken?"]
    # citations stay as written, so the Markdown is readable outside the app
    assert "A greeting [00:01]." in lines and "<a" not in md
    assert md.index("_(stopped)_") > md.index("rain [00:12-00:20]")
    assert "> Error: The engine failed." in lines
    assert safe_stem("../a b?.mp4") == "a_b"


def test_subtitle_exports_from_transcript(tmp_path: Path) -> None:
    from app.export import write_subtitles

    class _Memory:  # only the attribute the export reads
        transcript = Transcript([Segment(1.0, 2.0, "one"), Segment(3.5, 4.0, "two")], "en", 4.0)

    st = SessionState(memory=_Memory(), video_name="clip.mp4")
    srt, vtt = write_subtitles(st, "srt"), write_subtitles(st, "vtt")
    assert srt is not None and vtt is not None and srt.parent == vtt.parent == st.dir()
    assert srt.read_text() == to_srt(_Memory.transcript) and vtt.read_text() == to_vtt(_Memory.transcript)
    assert vtt.read_text().startswith("WEBVTT") and srt.name == "clip.srt"
    st.cleanup()
    assert not srt.exists()
    assert write_subtitles(SessionState(), "vtt") is None


def test_sessions_are_isolated() -> None:
    a, b = SessionState(), SessionState()
    assert a.session_id != b.session_id
    a.turns.append(Turn("q", "answer"))
    a.video_name = "a.mp4"
    assert b.turns == [] and b.video_name == ""
    da, db = a.dir(), b.dir()
    assert da != db and da.is_dir() and db.is_dir()
    (da / "x.txt").write_text("x")
    ra, rb = a.new_request_id(), b.new_request_id()
    assert ra != rb and ra.startswith(a.session_id) and rb.startswith(b.session_id)
    assert a.history() == [("q", "answer")] and b.history() == []
    a.reset_conversation()
    assert a.turns == [] and a.request_id is None and b.request_id == rb
    delete_session(a)
    assert not da.exists() and db.exists()
    b.reset_video()
    assert not db.exists() and b.memory is None


def test_parse_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIDEOCHAT_AUTH", raising=False)
    assert parse_auth(None) is None
    assert parse_auth("ann:pw:with:colons") == [("ann", "pw:with:colons")]
    f = tmp_path / "users.txt"
    f.write_text("# users\nann:one\n\nbob:two\n")
    assert parse_auth(str(f)) == [("ann", "one"), ("bob", "two")]
    monkeypatch.setenv("VIDEOCHAT_AUTH", "env:secret")
    assert parse_auth(None) == [("env", "secret")]
    for bad in (":pw", "user:", str(tmp_path / "missing")):
        with pytest.raises(ConfigError):
            parse_auth(bad)


def test_settings_from_args() -> None:
    import argparse

    s = settings_from_args(argparse.Namespace(max_upload_mb=10.0, max_duration_min=2.0, concurrency=3))
    assert s.max_file_size == 10 * 2**20 and s.concurrency == 3 and s.max_duration_min == 2.0
    assert AppSettings().max_file_size == (2048 * 2**20)
    with pytest.raises(ConfigError):
        settings_from_args(argparse.Namespace(max_upload_mb=10.0, max_duration_min=2.0, concurrency=0))


def test_seek_script_targets_the_player() -> None:
    js = (Path(__file__).resolve().parents[1] / "assets" / "seek.js").read_text()
    assert re.search(r"#player video", js) and "data" in js and "currentTime" in js
