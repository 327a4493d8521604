"""The page's long-video pieces (app/chapters.py): chapter links, the ingest progress bar and status line, files."""

from __future__ import annotations

import re
from pathlib import Path

from app.chapters import EMPTY, chapters_html, ingest_line, progress_html, write_chapter_files
from app.export import write_chat_markdown
from app.state import SessionState
from model.media import VideoInfo
from model.memory import VideoMemory
from model.qa.chapters import Chapter, Chapters
from model.speech import Transcript


def _state(seen: float | None) -> SessionState:
    info = VideoInfo("/v.mp4", 3600.0, 10.0, 36000, 320, 240, 0, "h264", True)
    st = SessionState()
    st.video_name = "talk <1>.mp4"
    st.memory = VideoMemory("k", Path("/v.mp4"), "lite", info, Transcript(), [], {}, ingested_until=seen)
    return st


def test_chapters_are_seek_links_with_titles_escaped() -> None:
    ch = Chapters([Chapter(0.0, 300.0, "Baking <bread>"), Chapter(300.0, 3600.0, "Planets")], "Bread & planets.")
    page = chapters_html(ch, 3600.0)
    assert re.findall(r'data-seek="([\d.]+)"', page) == ["0", "300"]
    assert "[0:05:00]" in page and "Baking &lt;bread&gt;" in page and "Bread &amp; planets." in page
    assert chapters_html(None, 3600.0) == EMPTY and chapters_html(Chapters([]), 60.0) == EMPTY


def test_progress_and_status_while_ingesting() -> None:
    st = _state(750.0)
    line = ingest_line(st)
    assert "ready" not in line, "the page is not ready until the whole video is in"
    assert "seen up to 0:12:30 (21%)" in line and "talk &lt;1&gt;.mp4" in line
    bar = progress_html(0.2083, 750.0, 3600.0)
    assert "width:20.8%" in bar and "Ready up to 0:12:30 of 1:00:00" in bar
    assert progress_html(1.0, 3600.0, 3600.0) == ""


def test_chapter_files_and_markdown_export() -> None:
    st = _state(None)
    ch = Chapters([Chapter(0.0, 300.0, "Baking bread"), Chapter(300.0, 3600.0, "Planets")], "A talk.")
    st.memory.chapters = ch
    vtt, txt = write_chapter_files(st, ch)
    assert vtt.read_text().startswith("WEBVTT") and "00:05:00.000 --> 01:00:00.000\nPlanets" in vtt.read_text()
    assert txt.read_text() == "0:00:00 Baking bread\n0:05:00 Planets\n"
    md = write_chat_markdown(st, "lite").read_text()
    assert "## Chapters" in md and "- [0:05:00] Planets" in md and "A talk." in md
    st.cleanup()
