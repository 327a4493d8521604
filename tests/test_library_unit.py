"""App pieces of the library, the API and MCP without a server: links that switch videos, the MCP sign-in check,
server paths the API may ingest, transcript sections, and the seek script's switch."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from app.config import AppSettings, settings_from_args
from app.library import models_summary
from app.links import linkify_times, linkify_video_times, video_moments_html
from app.mcp_tools import basic_user
from app.service import ApiInputError, VideoService, chapters_of

VIDEOS = {"a.mp4": ("KEYA", 60.0), "b c.mkv": ("KEYB", 30.0)}


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str]] = []
        self.text: list[str] = []
        self._open: dict[str, str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._open = {**dict(attrs), "text": ""}

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
    return p


def test_cross_video_citations_link_to_their_video() -> None:
    text = "Gravity [a.mp4 00:10], onions [b c.mkv 00:20-00:40] and again [00:05] <b>x</b> [zzz.mp4 00:01]"
    cited = [("a.mp4", 10.0), ("b c.mkv", 20.0), ("b c.mkv", 40.0), (None, 5.0)]
    out = _parse(linkify_video_times(text, VIDEOS, cited, default="a.mp4"))
    got = [(a["data-video"], float(a["data-seek"]), a["text"]) for a in out.links]
    # the chat keeps only href/class/title of a link: the key rides in the href too
    assert [a["href"] for a in out.links] == ["#t=10&v=KEYA", "#t=20&v=KEYB", "#t=5&v=KEYA"]
    # 00:40 is past the end of b c.mkv (30 s): no link; an unnamed time belongs to the default video;
    # a video that is none of the answer's stays text
    assert got == [("KEYA", 10.0, "00:10"), ("KEYB", 20.0, "00:20"), ("KEYA", 5.0, "00:05")]
    assert "".join(out.text) == text  # the visible text is unchanged; the model's markup is escaped
    only = _parse(linkify_video_times("[a.mp4 00:10] [a.mp4 00:30]", VIDEOS, [("a.mp4", 30.0)]))
    assert [float(a["data-seek"]) for a in only.links] == [30.0]  # only checked citations link
    # the single-video linker leaves a named citation alone
    assert _parse(linkify_times("[a.mp4 00:10] and [00:10]", 60.0)).links[0]["href"] == "#t=10"
    assert len(_parse(linkify_times("[a.mp4 00:10] and [00:10]", 60.0)).links) == 1


def test_found_moments_of_several_videos_switch_video() -> None:
    out = _parse(
        video_moments_html([("b c.mkv", 5.0, 9.0, 'speech: "onions"'), (None, 1.0, 2.0, "x")], VIDEOS, "a.mp4")
    )
    assert [(a["data-video"], a["text"]) for a in out.links] == [
        ("KEYB", "[b c.mkv 00:05–00:09]"),
        ("KEYA", "[a.mp4 00:01–00:02]"),
    ]
    assert video_moments_html([], VIDEOS) == ""


def test_mcp_basic_auth_check() -> None:
    users = {"alice": "s3cret", "bob": "pw:with:colons"}

    def hdr(value: str) -> list[tuple[bytes, bytes]]:
        return [(b"Authorization", value.encode())]

    def basic(user: str, pw: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()

    assert basic_user(hdr(basic("alice", "s3cret")), users) == "alice"
    assert basic_user(hdr(basic("bob", "pw:with:colons")), users) == "bob"
    assert basic_user(hdr(basic("alice", "wrong")), users) is None
    assert basic_user(hdr(basic("carol", "s3cret")), users) is None
    assert basic_user(hdr("Basic !!notbase64"), users) is None
    assert basic_user(hdr("Bearer abc"), users) is None
    assert basic_user([], users) is None
    # with the page's own check (e.g. its lockout after wrong passwords), that check decides
    seen: list[tuple[str, str]] = []

    def check(user: str, password: str) -> bool:
        seen.append((user, password))
        return False

    assert basic_user(hdr(basic("alice", "s3cret")), users, check) is None and seen == [("alice", "s3cret")]


class _NoAssistant:
    cache = None


def test_server_paths_only_inside_media_folders(tmp_path: Path, silent_video) -> None:
    media = tmp_path / "media"
    media.mkdir()
    inside = media / "ok.mp4"
    inside.write_bytes(Path(silent_video.path).read_bytes())
    (media / "link.mp4").symlink_to(silent_video.path)  # a link out of the folder is outside
    settings = AppSettings(media_dirs=(str(media.resolve()),))
    svc = VideoService.__new__(VideoService)  # the path rule needs no models
    svc.settings = settings
    assert svc.server_path(str(inside)) == inside.resolve()
    for bad in (str(silent_video.path), str(media / "link.mp4"), str(media / "missing.mp4"), str(media / ".." / "x")):
        with pytest.raises(ApiInputError):
            svc.server_path(bad)
    svc.settings = AppSettings()  # no --media-dir: no server paths at all
    with pytest.raises(ApiInputError, match="media"):
        svc.server_path(str(inside))


def test_settings_take_admins_and_media_dirs(tmp_path: Path) -> None:
    import argparse

    args = argparse.Namespace(admin="root, ops,", media_dir=[str(tmp_path)], cache_dir=None)
    s = settings_from_args(args)
    assert s.admins == ("root", "ops") and s.media_dirs == (str(tmp_path.resolve()),)


def test_transcript_sections_without_chapters() -> None:
    from model.media import VideoInfo
    from model.memory import VideoMemory
    from model.speech import Segment, Transcript

    info = VideoInfo(
        path="/v.mp4", duration=180.0, fps=10.0, frame_count=1800, width=320, height=240, rotation=0,
        codec="h264", has_audio=True,
    )  # fmt: skip
    segs = [Segment(5.0, 9.0, "first part"), Segment(70.0, 75.0, "second part"), Segment(130, 135, "third part")]
    memory = VideoMemory("k", Path("/v.mp4"), "lite", info, Transcript(segs, "en", 180.0), [], {})
    chapters, source = chapters_of(memory)
    assert source == "transcript sections"
    assert [(c["start"], c["title"]) for c in chapters] == [
        (0.0, "first part"),
        (60.0, "second part"),
        (120.0, "third part"),
    ]


def test_models_summary_is_short() -> None:
    models = {
        "speech": {"backend": "faster-whisper", "model": "packaged:base", "compute_type": "int8"},
        "vision": None,
        "text_embedder": "packaged:all-minilm-l6-v2",
        "ocr": True,
    }
    assert models_summary(models) == "faster-whisper base · all-minilm-l6-v2 · ocr"


def test_seek_script_switches_videos() -> None:
    js = (Path(__file__).resolve().parents[1] / "assets" / "seek.js").read_text()
    assert "dataset.video" in js and "#video-switch" in js and "#current-video" in js
    assert re.search(r"videochatSwitch\(key, seconds\)", js)
