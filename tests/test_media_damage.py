"""Tolerant decoding on files the tests damage on purpose (tools.synth): packets overwritten or cut out of the
middle of the audio or the picture, a broken last frame, cut-short files, in mp4, mkv and avi (AC3 and MP3).

Each damaged file is probed, its frames are read with both backends and checked against the burned-in clock
(OCR), its audio is compared sample by sample with the intact original after the damage, and what media reports
lost is compared with where the damage was made. Then the memory (real Whisper tiny.en), its cache, and the CLI.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import model.media as media
from model.media.damage import (
    AUDIO_MISSING,
    AUDIO_UNDECODABLE,
    CUT_SHORT,
    VIDEO_MISSING,
    LostStretch,
    damage_note,
    merge_lost,
)
from tests.media_fixtures import DAMAGE_DURATION, DAMAGE_SPAN, THANKS
from tests.test_media import assert_clock_matches
from tools import synth

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
T0, T1 = DAMAGE_SPAN


# ------------------------------------------------------------------------------------------------ cases
def _last_audio(src: Path, dst: Path) -> None:
    """The user's file: the last AC3 frame is random bytes (ffmpeg warns once and plays the rest)."""
    synth.overwrite_packets(src, dst, "audio", synth.packet_spans(src, "audio")[-1].time, 1e9, keep=0)


# name -> (source, damage(src, dst), what is lost: {"audio": (a, b), "video": (a, b), "cut": True})
CASES: dict[str, tuple[str, Callable[[Path, Path], object], dict]] = {
    "mp4-audio-overwritten": (
        "mp4",
        lambda s, d: synth.overwrite_packets(s, d, "audio", T0, T1),
        {"audio": DAMAGE_SPAN},
    ),
    "mkv-audio-overwritten": (
        "mkv",
        lambda s, d: synth.overwrite_packets(s, d, "audio", T0, T1),
        {"audio": DAMAGE_SPAN},
    ),
    # bytes cut out of an mkv: the demuxer finds its feet at the next cluster, both streams lose that stretch
    "mkv-audio-cut": (
        "mkv",
        lambda s, d: synth.cut_packets(s, d, "audio", T0, T1),
        {"audio": DAMAGE_SPAN, "hole": True},
    ),
    "avi_ac3-audio-overwritten": (
        "avi_ac3",
        lambda s, d: synth.overwrite_packets(s, d, "audio", T0, T1, keep=0),
        {"audio": DAMAGE_SPAN},
    ),
    "avi_mp3-audio-overwritten": (
        "avi_mp3",
        lambda s, d: synth.overwrite_packets(s, d, "audio", T0, T1, keep=2),
        {"audio": DAMAGE_SPAN},
    ),
    "avi_ac3-last-audio-frame": ("avi_ac3", _last_audio, {"audio": (DAMAGE_DURATION - 0.07, DAMAGE_DURATION)}),
    "mp4-video-overwritten": (
        "mp4",
        lambda s, d: synth.overwrite_packets(s, d, "video", T0, T1, keep=16),
        {"video": DAMAGE_SPAN},
    ),
    "mkv-video-overwritten": (
        "mkv",
        lambda s, d: synth.overwrite_packets(s, d, "video", T0, T1, keep=16),
        {"video": DAMAGE_SPAN},
    ),
    "avi_ac3-video-overwritten": (
        "avi_ac3",
        lambda s, d: synth.overwrite_packets(s, d, "video", T0, T1, keep=16),
        {"video": DAMAGE_SPAN},
    ),
    "mp4-cut-short": ("mp4", lambda s, d: synth.truncate_file(s, d, 0.6), {"cut": True}),
    "mkv-cut-short": ("mkv", lambda s, d: synth.truncate_file(s, d, 0.6), {"cut": True}),
    "avi_ac3-cut-short": ("avi_ac3", lambda s, d: synth.truncate_file(s, d, 0.6), {"cut": True}),
}


@pytest.fixture(scope="module")
def damaged(damage_sources, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """case name -> the damaged file (made once per module)."""
    root = tmp_path_factory.mktemp("damaged")
    made: dict[str, Path] = {}

    def get(case: str) -> Path:
        if case not in made:
            source, damage, _ = CASES[case]
            src = damage_sources[source].path
            made[case] = root / f"{case}{src.suffix}"
            damage(src, made[case])
        return made[case]

    return get


@pytest.fixture(scope="module")
def ocr():
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR()


def _overlaps(s: LostStretch, a: float, b: float) -> bool:
    return s.start < b and s.end > a


def _near(s: LostStretch, a: float, b: float, slack: float = 1.0) -> bool:
    """`s` names the damaged stretch [a, b] within `slack` seconds at either end."""
    return _overlaps(s, a, b) and s.start >= a - slack and s.end <= b + slack


def _present_end(path: Path, kind: str) -> float:
    """Independent reference (ffprobe): where the last packet of the stream that is really there ends."""
    return max(t + d for t, d in synth.ffprobe_packet_times(path, kind)) - synth.ffprobe_start_time(path)


# --------------------------------------------------------------------------------------------------- probe
@pytest.mark.parametrize("case", list(CASES))
def test_probe_accepts_damaged_file_and_names_what_the_container_lost(case, damaged, damage_sources):
    path = damaged(case)
    source, _, lost = CASES[case]
    intact = media.probe(damage_sources[source].path)
    info = media.probe(path)
    found = media.probe_damage(path)
    assert (info.width, info.height, info.has_audio) == (320, 240, True)
    if lost.get("cut"):
        ref = synth.ffprobe_frame_times(path)
        assert info.duration == pytest.approx(ref[-1] - ref[0], abs=0.25)  # what the file holds, not what it promised
        assert 5.0 < info.duration < 0.8 * DAMAGE_DURATION
        cut = {s.kind: s for s in found if s.note == CUT_SHORT}
        assert set(cut) == {"audio", "video"}, found
        assert cut["video"].start == pytest.approx(info.duration, abs=0.25)
        assert cut["video"].end == pytest.approx(DAMAGE_DURATION, abs=0.25)  # the length the container declares
    else:
        assert info.duration == pytest.approx(intact.duration, abs=0.01)
        assert info.frame_count == (len(synth.ffprobe_frame_times(path)) if lost.get("hole") else intact.frame_count)
    if lost.get("hole"):  # the picture is missing where the audio is too: named, within the cluster that went
        holes = [s for s in found if s.kind == "video" and s.note == VIDEO_MISSING]
        assert len(holes) == 1 and _near(holes[0], T0, T1, slack=2.0), found
    if not lost.get("cut") and not lost.get("hole"):
        assert found == []  # payload damage does not show in the container


def test_intact_and_paused_files_report_no_damage(speech_video, vfr_video, bbb_video, damage_sources, tmp_path):
    paused = synth.make_paused_video(tmp_path / "paused.mkv")  # a 3 s hole in the frame times that is no damage
    assert np.diff(media.frame_table(paused.path).times).max() > 2.5
    for path in [speech_video.path, vfr_video.path, bbb_video, paused.path, *(v.path for v in damage_sources.values())]:
        assert media.probe_damage(path) == [], path
        track = media.decode_audio(path)
        assert track is None or track.lost == [], (path, track.lost)
        frames = media.sample_fps(path, fps=1, max_frames=16, backend="pyav")
        assert frames.lost == [] and np.array_equal(frames.indices, frames.requested)


# ------------------------------------------------------------------------------------------ frames, OCR
def _inside(t: float, stretches: list[LostStretch]) -> bool:
    return any(s.kind == "video" and s.start - 0.05 <= t < s.end + 0.05 for s in stretches)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("case", list(CASES))
def test_frames_keep_true_times(case, backend, damaged, ocr):
    path = damaged(case)
    _, _, lost = CASES[case]
    table = media.frame_table(path)
    try:
        frames = media.sample_fps(path, fps=1, max_frames=64, short_side=240, backend=backend)
    except media.CorruptVideoError as err:  # decord may refuse a damaged file: a typed error, and auto falls back
        assert backend == "decord" and "decord" in str(err)
        frames = media.sample_fps(path, fps=1, max_frames=64, short_side=240)
        assert frames.backend == "pyav"
    info = media.probe(path)
    assert len(frames) >= 0.8 * info.duration and frames.images.shape[1:] == (240, 320, 3)
    assert np.all(np.diff(frames.times) > 0) and frames.times[-1] < info.duration
    np.testing.assert_array_equal(frames.times, table.times[frames.indices])
    # decord conceals what it cannot decode without a word; PyAV's report says which pictures are damaged
    # (broken frames and those built on them up to the next keyframe): their content, not their time, is off.
    found = frames.lost if frames.backend == "pyav" else media.sample_fps(path, 1, 64, 240, backend="pyav").lost
    known = media.probe_damage(path) + found
    clean = np.array([not _inside(t, known) for t in frames.times])
    assert clean.sum() >= 0.7 * len(frames)
    # Every frame outside what was reported broken shows the clock of the time returned for it.
    sub = media.Frames(frames.images[clean], frames.times[clean], frames.indices[clean], frames.backend)
    assert_clock_matches(ocr, sub, table, 240)
    if "video" in lost and frames.backend == "pyav":  # PyAV says where the picture was damaged
        assert any(_near(s, *lost["video"]) for s in frames.lost), frames.lost


@pytest.mark.parametrize("source", ["mp4", "mkv", "avi_ac3"])
def test_broken_last_video_frame(source, damage_sources, tmp_path, ocr):
    src = damage_sources[source].path
    path = tmp_path / f"last{src.suffix}"
    last = synth.packet_spans(src, "video")[-1]
    synth.overwrite_packets(src, path, "video", last.time, 1e9, keep=0)
    info = media.probe(path)
    table = media.frame_table(path)
    n = info.frame_count
    frames = media.sample_indices(path, [0, n // 2, n - 1], short_side=240, backend="pyav")
    np.testing.assert_array_equal(frames.requested, [0, n // 2, n - 1])
    assert frames.indices[-1] < n - 1  # the broken frame is not passed off as itself
    assert frames.times[-1] == pytest.approx(table.times[frames.indices[-1]]) and frames.times[-1] > info.duration - 1
    assert any(s.kind == "video" and s.end >= info.duration - 0.01 for s in frames.lost), frames.lost
    assert_clock_matches(ocr, frames, table, 240)


def test_nothing_decodes_is_refused(undecodable_mp4):
    with pytest.raises(media.CorruptVideoError, match="no frame of its video could be decoded") as err:
        media.probe(undecodable_mp4)
    assert undecodable_mp4.name in str(err.value)
    with pytest.raises(media.CorruptVideoError):
        media.sample_fps(undecodable_mp4, fps=1, max_frames=4)


def test_cut_short_mp4_is_used_as_far_as_it_goes(truncated_mp4):
    info = media.probe(truncated_mp4)  # the fixture test_media refused before: half of a 6 s clip
    assert 1.5 < info.duration < 4.0
    (cut,) = [s for s in media.probe_damage(truncated_mp4) if s.kind == "video"]
    assert cut.note == CUT_SHORT and cut.end == pytest.approx(6.0, abs=0.15)
    assert len(media.sample_fps(truncated_mp4, fps=2, max_frames=16)) >= 3


# ------------------------------------------------------------------------------------------------- audio
def _best_lag(ref: np.ndarray, got: np.ndarray, a: int, b: int, max_lag: int = 80) -> tuple[int, float]:
    """The shift (samples, within 5 ms) that best aligns got[a:b] with ref[a:b], and the correlation there."""
    x = ref[a:b]
    lag = max(range(-max_lag, max_lag + 1), key=lambda k: float(np.dot(x, got[a + k : b + k])))
    return lag, float(np.corrcoef(x, got[a + lag : b + lag])[0, 1])


@pytest.mark.parametrize("case", list(CASES))
def test_audio_decodes_around_the_damage_and_keeps_time(case, damaged, damage_sources):
    path = damaged(case)
    source, _, lost = CASES[case]
    intact = damage_sources[source]
    ref = media.decode_audio(intact.path)
    track = media.decode_audio(path)
    assert track.decoded and track.sr == SR and track.samples.dtype == np.float32
    audio_lost = [s for s in track.lost if s.kind == "audio"]
    if lost.get("cut"):
        assert track.duration == pytest.approx(_present_end(path, "audio"), abs=0.1)
        assert audio_lost == []  # the cut itself is the probe's to name
        return
    assert track.duration == pytest.approx(ref.duration, abs=0.05)  # the lost stretch is silence, not left out
    if "audio" in lost:
        assert len(audio_lost) == 1 and _near(audio_lost[0], *lost["audio"]), track.lost
        s = audio_lost[0]
        assert s.note in ((AUDIO_MISSING, AUDIO_UNDECODABLE) if lost.get("hole") else (AUDIO_UNDECODABLE,))
        assert not np.any(track.samples[int(s.start * SR) + 1 : int(s.end * SR) - 1])  # silence instead
    else:
        assert audio_lost == []
    # Speech after the damage is where it was: the last sentence lines up with the intact file's within 5 ms.
    thanks = next(x for x in intact.sentences if x.text == THANKS)
    lag, corr = _best_lag(ref.samples, track.samples, int(thanks.start * SR), int(thanks.end * SR))
    assert abs(lag) <= 80 and corr > 0.98, (lag, corr)
    # And before the damage everything is as it was.
    lag0, corr0 = _best_lag(ref.samples, track.samples, int(1.0 * SR), int(3.0 * SR))
    assert lag0 == 0 and corr0 > 0.999


def test_hole_matches_ffprobe(damaged):
    """The audio hole of the cut mkv is exactly the one ffprobe's packet list shows."""
    path = damaged("mkv-audio-cut")
    rows = synth.ffprobe_packet_times(path, "audio")
    gaps = [(a + da, b) for (a, da), (b, _) in itertools.pairwise(rows) if b - (a + da) > 0.1]
    assert len(gaps) == 1
    (s,) = media.decode_audio(path).lost
    origin = synth.ffprobe_start_time(path)
    # the packets just before the hole were cut through (they do not decode): they are lost too
    assert gaps[0][0] - origin - 0.25 <= s.start <= gaps[0][0] - origin + 0.03
    assert s.end == pytest.approx(gaps[0][1] - origin, abs=0.03)


def test_users_avi_with_a_damaged_last_ac3_frame(damaged, damage_sources):
    """The reported file: ffmpeg plays and converts it with one warning; it used to be refused whole with
    "its audio cannot be decoded"."""
    path = damaged("avi_ac3-last-audio-frame")
    log = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"], capture_output=True, text=True)
    assert log.returncode == 0 and len(log.stderr.strip().splitlines()) == 1, log.stderr
    media.probe(path)
    audio = media.load_audio(path)  # raised CorruptVideoError before
    assert len(audio) / SR == pytest.approx(media.decode_audio(damage_sources["avi_ac3"].path).duration, abs=0.05)
    (s,) = media.decode_audio(path).lost
    assert s.kind == "audio" and s.end == pytest.approx(DAMAGE_DURATION, abs=0.05) and s.length < 0.1
    note = damage_note([s], DAMAGE_DURATION)
    assert "audio at 00:15" in note and "damaged audio" in note


def test_audio_nothing_decodes_but_the_picture_does(damage_sources, tmp_path):
    path = tmp_path / "no_audio_left.mp4"
    synth.overwrite_packets(damage_sources["mp4"].path, path, "audio", -1.0, 1e9, keep=0)
    assert media.probe(path).duration == pytest.approx(DAMAGE_DURATION, abs=0.01)  # the video is usable
    track = media.decode_audio(path)
    assert track.duration == pytest.approx(DAMAGE_DURATION, abs=0.1) and not np.any(track.samples)
    assert sum(s.length for s in track.lost) > DAMAGE_DURATION - 0.5
    if not track.decoded:
        with pytest.raises(media.CorruptVideoError, match="audio cannot be decoded"):
            media.load_audio(path)


# ------------------------------------------------------------------------------------------ damage notes
def test_lost_stretch_merge_and_note():
    with pytest.raises(ValueError):
        LostStretch("subtitles", 0, 1, "x")
    with pytest.raises(ValueError):
        LostStretch("audio", 2, 1, "x")
    a = LostStretch("audio", 4.0, 4.5, AUDIO_UNDECODABLE)
    b = LostStretch("audio", 4.8, 6.2, AUDIO_UNDECODABLE)
    v = LostStretch("video", 60.0, 95.0, CUT_SHORT)
    assert merge_lost([b, v, a]) == [LostStretch("audio", 4.0, 6.2, AUDIO_UNDECODABLE), v]
    assert merge_lost([a, LostStretch("audio", 9.0, 9.5, AUDIO_UNDECODABLE)])[1].start == 9.0  # far apart: two
    assert LostStretch.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    note = damage_note([a, b, v], duration=95.0)
    assert (
        "audio 00:04-00:07 (2.2 s, damaged audio" in note
        and "picture 01:00-01:35 (35.0 s, the file is cut short)" in note
    )
    assert damage_note([], 10.0) == ""
    assert "1:00:00" in damage_note([LostStretch("video", 3600.0, 3700.0, CUT_SHORT)], duration=4000.0)


# ------------------------------------------------------------------------------------------------ memory
@pytest.fixture(scope="module")
def ingestor(tmp_path_factory: pytest.TempPathFactory):
    """The ingest loop with real Whisper tiny.en (packaged) and nothing else: speech, clips, damage."""
    from model.memory import IngestConfig, IngestModels, Ingestor, MemoryCache
    from model.profiles import SpeechSpec
    from model.speech import build_transcriber

    models = IngestModels(transcriber=build_transcriber(SpeechSpec(model="packaged:tiny.en"), "cpu"))
    return Ingestor(models, IngestConfig(profile="damage-test"), MemoryCache(tmp_path_factory.mktemp("memcache")))


@pytest.mark.parametrize(
    "case", ["mkv-audio-cut", "avi_ac3-last-audio-frame", "avi_mp3-audio-overwritten", "mkv-cut-short"]
)
def test_memory_records_what_was_lost_and_speech_keeps_its_time(case, damaged, ingestor):
    path = damaged(case)
    _, _, lost = CASES[case]
    memory = ingestor.memory_for(path)
    assert memory.damage, "a damaged file's memory says what was lost"
    audio = [s for s in memory.damage if s.kind == "audio"]
    if lost.get("cut"):
        assert {s.kind for s in memory.damage if s.note == CUT_SHORT} == {"audio", "video"}
        assert memory.clips[-1].end <= memory.duration + 1e-6 < 0.8 * DAMAGE_DURATION
    else:
        assert any(_near(s, *lost["audio"]) for s in audio), memory.damage
        # the sentence after the damage is heard where it is said
        (thanks,) = [s for s in memory.transcript.segments if "thank" in s.text.lower()]
        assert thanks.start == pytest.approx(12.0, abs=1.0), memory.transcript.segments
    if lost.get("hole"):
        assert any(s.kind == "video" and _near(s, T0, T1, slack=2.0) for s in memory.damage)
    table = media.frame_table(path)
    for clip in memory.clips:  # clip records carry the times of frames that exist
        assert all(np.isclose(table.times, t, atol=1e-6).any() for t in clip.frame_times)
    summary = json.loads(json.dumps(memory.summary()))
    assert summary["damage"] == [s.to_dict(digits=3) for s in memory.damage]
    assert summary["damage_note"] == memory.damage_note and memory.damage_note.startswith("This file is damaged")
    reopened = ingestor.memory_for(path)
    assert reopened.from_cache and reopened.damage == memory.damage  # kept with the memory, exactly


def test_intact_memory_has_no_damage_and_old_cache_entries_read(damage_sources, ingestor, tmp_path):
    from model.memory import MemoryCache
    from model.memory.cache import META
    from model.memory.keys import file_checksum

    memory = ingestor.memory_for(damage_sources["mp4"].path)
    assert memory.damage == [] and memory.damage_note == "" and memory.summary()["damage"] == []
    # An entry written before damage was recorded has no "damage" in its meta: it reads as undamaged.
    cache = MemoryCache(tmp_path / "old")
    entry = cache.put(memory)
    meta = json.loads((entry / META).read_text())
    del meta["damage"]
    (entry / META).write_text(json.dumps(meta))
    manifest = json.loads((entry / "manifest.json").read_text())
    manifest["files"][META] = {"size": (entry / META).stat().st_size, "blake2b": file_checksum(entry / META)}
    (entry / "manifest.json").write_text(json.dumps(manifest))
    old = cache.get(memory.key)
    assert old is not None and old.damage == [] and len(old.clips) == len(memory.clips)


def test_ingest_refuses_only_what_nothing_decodes(undecodable_mp4, ingestor):
    with pytest.raises(media.CorruptVideoError, match="no frame of its video could be decoded"):
        ingestor.memory_for(undecodable_mp4)


# --------------------------------------------------------------------------------------------------- CLI
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "launch.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_cli_ingest_shows_the_damage(damaged, undecodable_mp4):
    path = damaged("avi_ac3-last-audio-frame")
    out = _cli("ingest", str(path), "--json", "--profile", "lite")
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout)  # JSON alone on stdout
    (s,) = data["damage"]
    assert s["kind"] == "audio" and s["end"] == pytest.approx(DAMAGE_DURATION, abs=0.05)
    assert "audio at 00:15" in data["damage_note"]
    text = _cli("ingest", str(damaged("mkv-cut-short")), "--profile", "lite")
    assert text.returncode == 0, text.stderr[-2000:]
    assert "note: This file is damaged" in text.stdout and "the file is cut short" in text.stdout
    bad = _cli("ingest", str(undecodable_mp4), "--json")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("error:") and "no frame of its video" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_cli_ask_json_carries_the_damage(damaged, tmp_path):
    path = damaged("mkv-audio-cut")
    out = subprocess.run(
        [sys.executable, "launch.py", "ask", str(path), "What is said at the end?", "--json", "--profile", "tiny",
         "--max-tokens", "8", "--cache-dir", str(tmp_path / "cache")],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads(out.stdout)
    assert any(s["kind"] == "audio" and s["start"] < T1 and s["end"] > T0 for s in data["damage"]), data["damage"]
    assert any(n.startswith("This file is damaged") for n in data["notes"]), data["notes"]
