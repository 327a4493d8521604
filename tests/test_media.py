"""Media pipeline on real files: probe, typed errors, true frame times (OCR of a burned-in clock), rotation,
resize, decord -> PyAV fallback, audio and clip plans. Media come from tests/media_fixtures.py."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import model.media as media
from model.errors import VideoChatError
from tests.media_fixtures import RED_BALL
from tools import synth


# ------------------------------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def ocr():
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR()


def read_clock(engine, image: np.ndarray, drawn_height: int) -> float | None:
    """OCR the clock band at the top of an upright frame (recognition only: the band is known)."""
    scale = image.shape[0] / drawn_height
    band = image[: int((drawn_height // 9 + 16) * scale), :, ::-1]  # RGB -> BGR
    result, _ = engine(np.ascontiguousarray(band), use_det=False, use_cls=False)
    return synth.parse_clock(result[0][0]) if result else None


def frame_interval(table: media.FrameTable, index: int) -> float:
    """Display time of a frame (to its neighbour): the "within one frame" tolerance."""
    j = min(index + 1, len(table) - 1)
    i = j - 1 if j == index else index
    return float(table.times[j] - table.times[i])


def assert_clock_matches(engine, frames: media.Frames, table: media.FrameTable, drawn_height: int) -> None:
    read = [read_clock(engine, img, drawn_height) for img in frames.images]
    assert sum(r is not None for r in read) >= 0.8 * len(read), f"OCR failed on too many frames: {read}"
    for r, t, i in zip(read, frames.times, frames.indices, strict=True):
        if r is not None:
            assert abs(r - t) <= frame_interval(table, int(i)) + 1e-3, f"frame {i}: clock {r} vs returned {t}"


def ffmpeg_frames(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Independent reference: every frame decoded by the ffmpeg CLI (autorotated), scaled to size (w, h)."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-vf", f"scale={size[0]}:{size[1]}", "-f", "rawvideo",
         "-pix_fmt", "rgb24", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    return np.frombuffer(raw, np.uint8).reshape(-1, size[1], size[0], 3)


# --------------------------------------------------------------------------------------------------- probe
def test_probe_speech_video(speech_video):
    info = media.probe(speech_video.path)
    ref = synth.ffprobe_frame_times(speech_video.path)
    assert info.frame_count == len(ref) == 600
    assert info.duration == pytest.approx(60.0, abs=0.01)
    assert info.fps == pytest.approx(10.0, abs=0.01)
    assert (info.width, info.height, info.rotation) == (320, 240, 0)
    assert info.codec == "h264" and info.has_audio
    assert json.loads(json.dumps(info.to_dict()))["frame_count"] == 600


def test_probe_bbb_and_silent(bbb_video, silent_video):
    info = media.probe(bbb_video)
    assert (info.width, info.height) == (1280, 720) and info.has_audio
    assert 5.0 < info.duration < 5.6
    assert info.frame_count == len(synth.ffprobe_frame_times(bbb_video))
    assert media.probe(silent_video.path).has_audio is False


@pytest.mark.parametrize("fixture", ["speech_video", "vfr_video", "rotated_video"])
def test_frame_table_matches_ffprobe(fixture, request):
    video = request.getfixturevalue(fixture)
    table = media.frame_table(video.path)
    ref = np.array(synth.ffprobe_frame_times(video.path))
    np.testing.assert_allclose(table.times, ref - ref[0], atol=1e-3)


def test_vfr_really_variable(vfr_video):
    table = media.frame_table(vfr_video.path)
    steps = np.round(np.diff(table.times), 3)
    assert {0.033, 0.1, 0.2}.issubset({round(float(s), 3) for s in steps})
    # 0-3 s at 10 fps, 3-6 s at 30 fps: frame counts per region follow the rates.
    assert np.sum(table.times < 3) == pytest.approx(30, abs=1)
    assert np.sum((table.times >= 3) & (table.times < 6)) == pytest.approx(90, abs=1)


def test_probe_rotated(rotated_video):
    info = media.probe(rotated_video.path)
    assert info.rotation == -90
    assert (info.width, info.height) == (240, 320)  # as displayed


@pytest.mark.parametrize(
    ("fixture", "error"),
    [
        ("zero_byte_file", media.EmptyFileError),
        ("text_as_mp4", media.NotAVideoError),
        ("undecodable_mp4", media.CorruptVideoError),  # a cut-short mp4 is used as far as it goes now
        ("audio_only_file", media.NoVideoStreamError),
    ],
)
def test_bad_files_typed_errors(fixture, error, request):
    path = request.getfixturevalue(fixture)
    with pytest.raises(error) as info:
        media.probe(path)
    assert isinstance(info.value, media.MediaError) and isinstance(info.value, VideoChatError)
    assert Path(path).name in str(info.value)  # a message a user can act on
    with pytest.raises(error):  # sampling the same file gives the same typed error
        media.sample_segments(path, 4)


def test_more_bad_files(tmp_path):
    with pytest.raises(media.MissingFileError):
        media.probe(tmp_path / "nope.mp4")
    with pytest.raises(media.CorruptVideoError, match="damaged or truncated"):  # moov atom lost
        media.probe(synth.make_truncated_mp4(tmp_path / "cut.mp4", keep=0.7, faststart=False))
    with pytest.raises(media.UnsupportedCodecError):
        media.probe(synth.make_unknown_codec_video(tmp_path / "unknown.avi"))
    with pytest.raises(media.ZeroDurationError):
        media.probe(synth.make_zero_duration_mp4(tmp_path / "zero_duration.mp4"))


# ------------------------------------------------------------------------------------ true frame times
@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("fixture", ["speech_video", "vfr_video"])
def test_times_are_true_ocr(fixture, backend, request, ocr):
    video = request.getfixturevalue(fixture)
    table = media.frame_table(video.path)
    frames = media.sample_segments(video.path, 8, short_side=240, backend=backend)
    assert frames.backend == backend
    assert_clock_matches(ocr, frames, table, video.size[1])
    win = media.sample_window(video.path, 2.5, 3.5, fps=20, short_side=240, backend=backend)
    assert np.all((win.times >= 2.5 - 0.2) & (win.times <= 3.5)) and len(win) >= 6
    assert_clock_matches(ocr, win, table, video.size[1])


def test_backends_agree(vfr_video):
    a = media.sample_fps(vfr_video.path, fps=3, max_frames=64, backend="decord")
    b = media.sample_fps(vfr_video.path, fps=3, max_frames=64, backend="pyav")
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.times, b.times)
    assert a.images.shape == b.images.shape
    assert np.abs(a.images.astype(np.int16) - b.images).mean() < 6  # same frames, scalers differ slightly


def test_decord_times_agree_with_its_own_timestamps(vfr_video):
    import decord

    table = media.frame_table(vfr_video.path)
    reader = decord.VideoReader(str(vfr_video.path))
    starts = reader.get_frame_timestamp(list(range(len(reader))))[:, 0]
    np.testing.assert_allclose(table.times, starts, atol=1e-3)


def test_long_video_fps_cap(long_video, ocr):
    table = media.frame_table(long_video.path)
    assert media.probe(long_video.path).duration == pytest.approx(600.0, abs=0.01)
    frames = media.sample_fps(long_video.path, fps=1.0, max_frames=24)
    assert len(frames) == 24  # the cap binds: 24 spread evenly over 10 minutes
    np.testing.assert_allclose(np.diff(frames.times), 25.0, atol=0.51)
    assert_clock_matches(ocr, frames, table, long_video.size[1])


# ------------------------------------------------------------------------------------ fallback, rotation
def test_fallback_to_pyav(av1_video, caplog, ocr):
    with caplog.at_level(logging.INFO, logger="model.media.sampling"):
        frames = media.sample_segments(av1_video.path, 6, short_side=240)
    assert frames.backend == "pyav"
    assert "falling back to PyAV" in caplog.text
    assert_clock_matches(ocr, frames, media.frame_table(av1_video.path), av1_video.size[1])
    with pytest.raises(media.CorruptVideoError, match="decord"):
        media.sample_segments(av1_video.path, 2, backend="decord")


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_rotation_upright(rotated_video, backend, ocr):
    frames = media.sample_segments(rotated_video.path, 4, short_side=None, backend=backend)
    assert frames.images.shape[1:] == (320, 240, 3)  # portrait, as displayed
    ref = ffmpeg_frames(rotated_video.path, (240, 320))[frames.indices]  # ffmpeg applies the display matrix
    assert np.abs(frames.images.astype(np.int16) - ref).mean() < 4
    # The asymmetric mark: the red block is top left (below the clock band), not anywhere else.
    red = frames.images[:, 45:75, 5:60].astype(int)
    assert (red[..., 0] > 180).mean() > 0.9 and (red[..., 1] < 80).mean() > 0.9
    assert_clock_matches(ocr, frames, media.frame_table(rotated_video.path), 320)


# -------------------------------------------------------------------------------------- resize, indices
def test_resize_keeps_aspect(speech_video, bbb_video, rotated_video):
    assert media.sample_segments(speech_video.path, 2, short_side=224).images.shape == (2, 224, 299, 3)
    bbb = media.sample_segments(bbb_video, 3, short_side=224)
    assert bbb.images.shape == (3, 224, 398, 3) and bbb.images.dtype == np.uint8
    assert media.sample_segments(rotated_video.path, 2, short_side=120).images.shape == (2, 160, 120, 3)
    assert media.sample_segments(speech_video.path, 1, short_side=None).images.shape == (1, 240, 320, 3)
    h, w = bbb.images.shape[1:3]
    assert abs(w / h - 1280 / 720) < 1 / 224


def test_bbb_backends_agree(bbb_video):
    a = media.sample_segments(bbb_video, 4, backend="decord")
    b = media.sample_segments(bbb_video, 4, backend="pyav")
    np.testing.assert_array_equal(a.times, b.times)
    assert np.abs(a.images.astype(np.int16) - b.images).mean() < 6


def test_sample_indices_order_and_range(speech_video):
    frames = media.sample_indices(speech_video.path, [50, 10, 50, 599])
    assert frames.indices.tolist() == [50, 10, 50, 599]
    np.testing.assert_array_equal(frames.images[0], frames.images[2])
    np.testing.assert_allclose(frames.times, [5.0, 1.0, 5.0, 59.9], atol=1e-6)
    with pytest.raises(ValueError):
        media.sample_indices(speech_video.path, [600])


def official_get_index(num_frames: int, num_segments: int) -> np.ndarray:
    """Verbatim from the InternVideo2 chat demo (the reference the formula must match)."""
    seg_size = float(num_frames - 1) / num_segments
    start = int(seg_size / 2)
    offsets = np.array([start + int(np.round(seg_size * idx)) for idx in range(num_segments)])
    return offsets


@pytest.mark.parametrize(("num", "n"), [(600, 8), (133, 16), (10, 8), (5, 8), (1, 4), (3601, 4)])
def test_segment_indices_formula(num, n):
    got = media.segment_indices(num, n)
    np.testing.assert_array_equal(got, official_get_index(num, n))
    assert len(got) == n and all(0 <= i < num for i in got) and got == sorted(got)


def test_frame_table_cached(speech_video, tmp_path):
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(Path(speech_video.path).read_bytes())
    t0 = time.perf_counter()
    first = media.frame_table(copy)
    cold = time.perf_counter() - t0
    assert media.frame_table(copy) is first  # cached by path + mtime
    stat = copy.stat()
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert media.frame_table(copy) is not first  # a changed file is re-indexed
    assert cold > 0


# ------------------------------------------------------------------------------------------------ audio
def test_load_audio(speech_video, silent_video, audio_only_file):
    audio = media.load_audio(speech_video.path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) / 16000 == pytest.approx(60.0, abs=0.1)
    # Independent reference: the ffmpeg CLI's own resampling to mono 16 kHz.
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(speech_video.path), "-ac", "1", "-ar", "16000", "-f", "f32le", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    ref = np.frombuffer(raw, np.float32)
    n = min(len(ref), len(audio))
    assert abs(len(ref) - len(audio)) < 1600
    assert np.corrcoef(ref[:n], audio[:n])[0, 1] > 0.98
    # Speech sits where the generator put it; the first 5 s are silent.
    rms = lambda a, b: float(np.sqrt(np.mean(audio[int(a * 16000) : int(b * 16000)] ** 2)))  # noqa: E731
    ball = next(s for s in speech_video.sentences if s.text == RED_BALL)
    assert rms(0, 5) < 1e-3 < rms(ball.start, ball.end)
    assert speech_video.sentences[0].start >= 5.0
    assert len(media.load_audio(speech_video.path, sr=8000)) / 8000 == pytest.approx(60.0, abs=0.1)
    assert media.load_audio(silent_video.path) is None
    assert len(media.load_audio(audio_only_file)) / 16000 == pytest.approx(3.0, abs=0.1)


# -------------------------------------------------------------------------------------------- clip plans
def test_plan_clips(speech_video):
    info = media.probe(speech_video.path)
    plans = media.plan_clips(info, fps=1.0, frames_per_clip=8)
    assert len(plans) == 8  # 60 samples -> 7 full clips + 4 real frames padded to 8
    assert all(len(p.frame_indices) == len(p.frame_times) == 8 for p in plans)
    assert [p.padded for p in plans] == [0] * 7 + [4]
    assert plans[-1].frame_indices[-4:] == [plans[-1].frame_indices[3]] * 4
    flat = [i for p in plans for i in p.frame_indices[: 8 - p.padded]]
    assert flat == list(range(0, 600, 10))
    table = media.frame_table(speech_video.path)
    for p in plans:
        np.testing.assert_allclose(p.frame_times, table.times[p.frame_indices])
        assert p.start == p.frame_times[0] and p.end == pytest.approx(min(p.frame_times[-1] + 1.0, info.duration))
    assert plans[-1].end == pytest.approx(60.0)
    assert json.loads(json.dumps([p.to_dict() for p in plans]))[0]["frame_indices"][:2] == [0, 10]


def test_plan_clips_cap_and_vfr(long_video, vfr_video):
    info = media.probe(long_video.path)
    plans = media.plan_clips(info, fps=1.0, frames_per_clip=8, max_frames=40)
    times = [t for p in plans for t in p.frame_times[: 8 - p.padded]]
    assert len(times) == 40 and np.allclose(np.diff(times), 15.0, atol=0.51)  # rate lowered to 40 / 600 s
    fast = media.plan_clips(info, fps=5.0, frames_per_clip=16)  # above the video's 2 fps: capped, no repeats
    idx = [i for p in fast for i in p.frame_indices[: 16 - p.padded]]
    assert len(idx) == len(set(idx)) == 1200
    vinfo = media.probe(vfr_video.path)
    vt = media.frame_table(vfr_video.path)
    for p in media.plan_clips(vinfo, fps=4.0, frames_per_clip=4):
        np.testing.assert_allclose(p.frame_times, vt.times[p.frame_indices])  # real, not index / fps
        assert p.end <= vinfo.duration + 1e-9
