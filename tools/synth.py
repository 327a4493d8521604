"""Offline generators for test and evaluation media (ffmpeg, espeak-ng, sox; no network).

Every video carries a burned-in clock that OCR reads reliably: ``T 0012.300`` is the frame's presentation
time in seconds (drawn from the filter graph's pts, so it stays exact for variable frame rate). Tests read it
back to prove that the times our sampler returns are the real times of the frames.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import wave
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


class SpokenSentence(NamedTuple):
    """(start, end, text): where the voice really starts and ends in the video (measured on the samples)."""

    start: float
    end: float
    text: str


@dataclass
class SynthVideo:
    """What a generator made: the file and the ground truth a test or an eval needs."""

    path: Path
    duration: float
    size: tuple[int, int]  # (width, height) as displayed
    fps: float | None
    sentences: list[SpokenSentence] = field(default_factory=list)
    scenes: list[tuple[float, float, str]] = field(default_factory=list)
    has_audio: bool = False
    rotation: int = 0  # display-matrix rotation, counter-clockwise degrees (ffprobe's sign)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["path"] = str(self.path)
        return out


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return proc.stdout


def _ffmpeg(*args: str) -> None:
    _run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args])


def _esc(text: str) -> str:
    """Escape text for a drawtext `text=` value inside a single-quoted filter argument."""
    return text.replace("\\", "\\\\").replace("'", "\u2019").replace(":", "\\:").replace("%", "\\%")


def clock_filter(height: int) -> str:
    """drawtext that burns ``T <seconds, 4 digits>.<milliseconds>`` at the top left, big and boxed."""
    size = max(14, height // 9)
    # eif with round() avoids 12.2999 -> 12.299; seconds and milliseconds drawn separately.
    text = r"T %{eif\:trunc(round(t*1000)/1000)\:d\:4}.%{eif\:mod(round(t*1000)\,1000)\:d\:3}"
    return (
        f"drawtext=fontfile={FONT}:text='{text}':x=4:y=4:fontsize={size}:fontcolor=white"
        f":box=1:boxcolor=black:boxborderw=4"
    )


def scene_filters(scenes: list[tuple[float, float, str]], height: int) -> list[str]:
    size = max(16, height // 6)
    return [
        f"drawtext=fontfile={FONT}:text='{_esc(label)}':x=(w-text_w)/2:y=(h-text_h)/2+{height // 8}"
        f":fontsize={size}:fontcolor=yellow:box=1:boxcolor=black@0.8:boxborderw=6"
        f":enable='between(t,{t0:.3f},{t1:.3f})'"
        for t0, t1, label in scenes
    ]


def parse_clock(text: str) -> float | None:
    """Inverse of `clock_filter` for OCR output: ``'T 0012.300'`` -> 12.3 (None if unreadable)."""
    import re

    m = re.search(r"(\d{4})\s*[.,:]?\s*(\d{3})", text.replace(" ", ""))
    return int(m.group(1)) + int(m.group(2)) / 1000.0 if m else None


# ----------------------------------------------------------------------------------------------- speech
def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        sr, n, ch, width = w.getframerate(), w.getnframes(), w.getnchannels(), w.getsampwidth()
        data = np.frombuffer(w.readframes(n), dtype=np.int16 if width == 2 else np.int8)
    return data.reshape(-1, ch).mean(axis=1).astype(np.float32) / 32768.0, sr


def _write_wav(path: Path, samples: np.ndarray, sr: int) -> None:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())


def sox_duration(path: Path) -> float:
    return float(_run(["sox", "--i", "-D", str(path)]).strip())


def speak(text: str, out: Path, voice: str = "en-us", speed: int = 150) -> Path:
    _run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(out), text])
    return out


def make_speech_track(
    sentences: list[tuple[float, str]], duration: float, out: Path, voice: str = "en-us"
) -> list[SpokenSentence]:
    """Place espeak-ng sentences at their offsets in one mono wav; return where each voice really starts/ends."""
    work = Path(tempfile.mkdtemp(prefix="speech-", dir=out.parent))
    try:
        clips: list[tuple[float, str, np.ndarray, int]] = []
        for i, (start, text) in enumerate(sorted(sentences)):
            wav = speak(text, work / f"s{i}.wav", voice=voice)
            samples, sr = _read_wav(wav)
            assert abs(len(samples) / sr - sox_duration(wav)) < 0.01, "sox and wave disagree on the length"
            clips.append((start, text, samples, sr))
        sr = clips[0][3] if clips else 22050
        track = np.zeros(round(duration * sr), dtype=np.float32)
        spoken: list[SpokenSentence] = []
        prev_end = -1.0
        for start, text, samples, rate in clips:
            assert rate == sr
            at = round(start * sr)
            if at < round(prev_end * sr) or at + len(samples) > len(track):
                raise ValueError(f"sentence {text!r} at {start}s overlaps the previous one or runs past {duration}s")
            track[at : at + len(samples)] += samples
            voiced = np.flatnonzero(np.abs(samples) > 0.01)  # espeak pads with a little silence
            s0, s1 = (voiced[0], voiced[-1] + 1) if len(voiced) else (0, len(samples))
            spoken.append(SpokenSentence(start=float((at + s0) / sr), end=float((at + s1) / sr), text=text))
            prev_end = (at + len(samples)) / sr
        _write_wav(out, track, sr)
        return spoken
    finally:
        shutil.rmtree(work, ignore_errors=True)


_VIDEO_CODECS = {"libx264": ["-c:v", "libx264", "-preset", "ultrafast"], "mpeg4": ["-c:v", "mpeg4", "-q:v", "5"]}


def make_speech_video(
    path: str | Path,
    sentences: list[tuple[float, str]],
    duration: float,
    size: tuple[int, int] = (320, 240),
    fps: int = 10,
    clock: bool = True,
    label_scenes: list[tuple[float, float, str]] | None = None,
    voice: str = "en-us",
    video_codec: str = "libx264",
    audio_codec: str = "aac",
    audio_rate: int = 16000,
    faststart: bool = False,
) -> SynthVideo:
    """A video (testsrc2 picture, optional clock and scene labels) with espeak-ng speech at the given offsets.
    The container follows the suffix (.mp4, .mkv, .avi, ...); `video_codec` "mpeg4" and `audio_codec` "ac3" or
    "libmp3lame" make the classic AVI kind (AC3 wants `audio_rate` 48000). `faststart`: an MP4's index
    before its data (as streaming sites write it), so a cut-short copy still opens."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wav = path.with_suffix(".speech.wav")
    spoken = make_speech_track(sentences, duration, wav, voice=voice)
    w, h = size
    filters = scene_filters(label_scenes or [], h)
    if clock:
        filters.append(clock_filter(h))
    vf = ["-vf", ",".join(filters)] if filters else []
    _ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}:duration={duration}",
        "-i", str(wav), *vf, "-t", f"{duration}",
        *_VIDEO_CODECS.get(video_codec, ["-c:v", video_codec]), "-pix_fmt", "yuv420p", "-g", str(fps * 2),
        "-c:a", audio_codec, "-b:a", "64k", "-ar", str(audio_rate), "-ac", "1",
        *(["-movflags", "+faststart"] if faststart else []), str(path),
    )  # fmt: skip
    wav.unlink(missing_ok=True)
    return SynthVideo(path, duration, size, fps, sentences=spoken, scenes=list(label_scenes or []), has_audio=True)


# ---------------------------------------------------------------------------------------------- pictures
def make_clock_video(
    path: str | Path,
    duration: float,
    size: tuple[int, int] = (320, 240),
    fps: float = 10,
    audio: bool = False,
    codec: str = "libx264",
    extra_filters: list[str] | None = None,
) -> SynthVideo:
    """testsrc2 with the clock; optionally a 440 Hz tone as audio."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    vf = ",".join([*(extra_filters or []), clock_filter(h)])
    audio_in = ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={duration}"] if audio else []
    audio_out = ["-c:a", "aac", "-b:a", "48k"] if audio else ["-an"]
    # B-frames on purpose: decode order differs from presentation order, as in real camera files.
    vcodec = {
        "libx264": ["-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-g", str(int(fps * 2) or 1)],
        "libsvtav1": ["-c:v", "libsvtav1", "-preset", "12"],
    }.get(codec, ["-c:v", codec])
    _ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}:duration={duration}", *audio_in,
        "-vf", vf, "-t", f"{duration}", *vcodec, "-pix_fmt", "yuv420p", *audio_out, str(path),
    )  # fmt: skip
    return SynthVideo(path, duration, size, fps, has_audio=audio)


def make_silent_video(path: str | Path, duration: float = 4.0, size: tuple[int, int] = (320, 240), fps: float = 10):
    """A video with no audio stream at all."""
    return make_clock_video(path, duration, size, fps, audio=False)


def make_long_video(
    path: str | Path, duration: float = 600.0, size: tuple[int, int] = (160, 120), fps: float = 2
) -> SynthVideo:
    """A long low-resolution video with the clock (10 min at 2 fps encodes in a few seconds)."""
    return make_clock_video(path, duration, size, fps, audio=False)


def make_vfr_video(path: str | Path, size: tuple[int, int] = (320, 240)) -> SynthVideo:
    """Variable frame rate: 0-3 s at 10 fps, 3-6 s at 30 fps, 6-9 s at 5 fps, 9-10 s at 15 fps (pts kept)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    # Frames of a 30 fps source are dropped by time region; fps_mode vfr keeps each survivor's own pts.
    keep = "lt(t,2.99)*not(mod(n,3)) + between(t,2.99,5.99) + between(t,5.99,8.99)*not(mod(n,6)) + gte(t,8.99)*not(mod(n,2))"
    _ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate=30:duration=10",
        "-vf", f"select='{keep}',{clock_filter(h)}", "-fps_mode", "vfr",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-an", str(path),
    )  # fmt: skip
    return SynthVideo(path, 10.0, size, None, extra={"rates": [(0, 3, 10), (3, 6, 30), (6, 9, 5), (9, 10, 15)]})


def make_rotated_video(path: str | Path, duration: float = 3.0, size: tuple[int, int] = (240, 320), fps: float = 10):
    """Phone style: the upright picture is `size` (portrait, a red block top left, the clock); it is stored turned
    90 degrees counter-clockwise (landscape) with a display matrix telling players to turn it back clockwise
    (ffprobe shows rotation=-90, as for a phone held upright)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = path.with_suffix(".stored.mp4")
    w, h = size
    vf = f"drawbox=x=0:y=0:w=iw/3:h=ih/4:color=red:t=fill,{clock_filter(h)},transpose=cclock"
    _ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}:duration={duration}", "-vf", vf,
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-an", str(stored),
    )  # fmt: skip
    # ffmpeg 5.1 writes the display matrix only on stream copy; its legacy `rotate` tag is clockwise degrees.
    _ffmpeg("-i", str(stored), "-c", "copy", "-metadata:s:v:0", "rotate=270", str(path))
    stored.unlink()
    return SynthVideo(path, duration, size, fps, rotation=-90)


def make_av1_video(path: str | Path, duration: float = 3.0, size: tuple[int, int] = (320, 240), fps: float = 10):
    """AV1 with the clock: PyAV (dav1d) decodes it, decord's bundled FFmpeg has no AV1 decoder (a real fallback)."""
    return make_clock_video(path, duration, size, fps, codec="libsvtav1")


def make_audio_only(path: str | Path, duration: float = 3.0) -> Path:
    """An AAC-in-MP4 file (.m4a content, any suffix) with no video stream."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _ffmpeg("-f", "lavfi", "-i", f"sine=frequency=300:duration={duration}", "-c:a", "aac", "-f", "mp4", str(path))
    return path


def make_truncated_mp4(path: str | Path, keep: float = 0.5, faststart: bool = True) -> Path:
    """An mp4 cut after `keep` of its bytes. faststart (moov first) opens fine but its samples run past the end;
    without it the moov index is lost."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    full = path.with_suffix(".full.mp4")
    make_clock_video(full, 6.0, (320, 240), 10)
    if faststart:
        moved = path.with_suffix(".fs.mp4")
        _ffmpeg("-i", str(full), "-c", "copy", "-movflags", "+faststart", str(moved))
        moved.replace(full)
    data = full.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    full.unlink()
    return path


def make_zero_byte(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def make_zero_duration_mp4(path: str | Path) -> Path:
    """A one-frame mp4 whose every duration field (mvhd, tkhd, mdhd, elst, stts) is patched to 0."""
    import struct

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10", "-frames:v", "1", "-c:v", "libx264", str(path))
    data = bytearray(path.read_bytes())
    # (box type, byte offset of a 32-bit duration after the box type, for version-0 boxes)
    for box, off in ((b"mvhd", 20), (b"tkhd", 24), (b"mdhd", 20), (b"elst", 12), (b"stts", 16)):
        at = data.find(box)
        while at >= 0:
            assert data[at + 4] == 0, f"{box!r} is not version 0"
            data[at + off : at + off + 4] = struct.pack(">I", 0)
            at = data.find(box, at + 4)
    path.write_bytes(bytes(data))
    return path


def make_text_as_mp4(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("This is a text file, not a video.\n" * 40)
    return path


def make_unknown_codec_video(path: str | Path) -> Path:
    """An AVI whose video FourCC is patched to one no decoder knows ("QQQQ"): a real unsupported-codec file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    src = path.with_suffix(".src.avi")
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10:duration=2", "-c:v", "mpeg4",
            "-vtag", "XVID", "-an", str(src))  # fmt: skip
    data = src.read_bytes()
    src.unlink()
    assert data.count(b"XVID") >= 1
    path.write_bytes(data.replace(b"XVID", b"QQQQ").replace(b"FMP4", b"QQQQ").replace(b"xvid", b"QQQQ"))
    return path


def ffprobe_frame_times(path: str | Path) -> list[float]:
    """Independent reference: every video frame's presentation time as ffprobe reports it."""
    out = _run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts_time",
                "-of", "json", str(path)])  # fmt: skip
    return sorted(float(f["pts_time"]) for f in json.loads(out)["frames"] if "pts_time" in f)


def make_paused_video(path: str | Path, pause: tuple[float, float] = (4.0, 7.0), duration: float = 10.0) -> SynthVideo:
    """An undamaged mkv whose picture pauses: no frame in `pause` (as screen recorders send none while nothing
    changes), over a continuous tone. A hole in the frame times that is not damage."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    a, b = pause
    _ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate=10:duration={duration}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:duration={duration}",
        "-vf", f"select='not(between(t,{a},{b - 0.05}))',{clock_filter(240)}", "-fps_mode", "vfr",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path),
    )  # fmt: skip
    return SynthVideo(path, duration, (320, 240), None, has_audio=True, extra={"pause": pause})


# ------------------------------------------------------------------------------------- damage on purpose
@dataclass(frozen=True)
class PacketSpan:
    """One packet of a stream: its presentation time and duration (seconds from the container start, the origin
    of the frame times), where its payload bytes lie in the file, and whether it is a keyframe."""

    time: float
    duration: float
    offset: int  # byte offset of the payload (not of the container's block header)
    size: int
    keyframe: bool


def packet_spans(path: str | Path, kind: str) -> list[PacketSpan]:
    """Every packet of the first `kind` ("audio" / "video") stream, in file order (PyAV, independent of the
    project's media code). The payload offset is found by its bytes, so it is exact in every container."""
    import av

    data = Path(path).read_bytes()
    out: list[PacketSpan] = []
    with av.open(str(path)) as container:
        stream = container.streams.audio[0] if kind == "audio" else container.streams.video[0]
        tb = float(stream.time_base)
        origin = (container.start_time or 0) / av.time_base
        for packet in container.demux(stream):
            if not packet.size or packet.pts is None or packet.pos is None or packet.pos < 0:
                continue
            payload = bytes(packet)
            at = data.find(payload[:64], max(0, packet.pos - 64))
            assert at >= 0, f"payload of the packet at {packet.pos} not found"
            out.append(
                PacketSpan(packet.pts * tb - origin, (packet.duration or 0) * tb, at, packet.size, packet.is_keyframe)
            )
    return out


def overwrite_packets(
    src: str | Path, dst: str | Path, kind: str, t0: float, t1: float, keep: int = 8, seed: int = 0
) -> list[PacketSpan]:
    """Copy `src` to `dst` with the payload of every `kind` packet starting in [t0, t1) overwritten by random bytes
    after its first `keep` bytes (codec headers such as AC3's sync word survive, as in real bit rot). The
    container stays intact. Returns the damaged packets."""
    data = bytearray(Path(src).read_bytes())
    rng = np.random.default_rng(seed)
    hit = [p for p in packet_spans(src, kind) if t0 <= p.time < t1]
    assert hit, f"no {kind} packet starts in [{t0}, {t1})"
    for p in hit:
        n = max(0, p.size - keep)
        data[p.offset + keep : p.offset + keep + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    Path(dst).write_bytes(bytes(data))
    return hit


def cut_packets(src: str | Path, dst: str | Path, kind: str, t0: float, t1: float) -> tuple[int, int]:
    """Copy `src` to `dst` without the bytes from the first `kind` packet starting in [t0, t1) to the end of the
    last one (whatever else lies between goes too, as when a download loses a block). Returns (offset, length)."""
    hit = [p for p in packet_spans(src, kind) if t0 <= p.time < t1]
    assert hit, f"no {kind} packet starts in [{t0}, {t1})"
    a = min(p.offset for p in hit)
    b = max(p.offset + p.size for p in hit)
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[:a] + data[b:])
    return a, b - a


def truncate_file(src: str | Path, dst: str | Path, keep: float) -> Path:
    """Copy the first `keep` (fraction) of `src`'s bytes: an interrupted download or copy."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * keep)])
    return Path(dst)


def ffprobe_packet_times(path: str | Path, kind: str) -> list[tuple[float, float]]:
    """Independent reference: (pts_time, duration_time) of every packet of the first `kind` stream, per ffprobe."""
    sel = "a:0" if kind == "audio" else "v:0"
    out = _run(["ffprobe", "-v", "error", "-select_streams", sel, "-show_entries", "packet=pts_time,duration_time",
                "-of", "json", str(path)])  # fmt: skip
    rows = json.loads(out).get("packets", [])
    return sorted(
        (float(r["pts_time"]), float(r.get("duration_time", 0) or 0))
        for r in rows
        if r.get("pts_time") not in (None, "N/A")
    )


def ffprobe_start_time(path: str | Path) -> float:
    """Independent reference: the container start time (the origin of frame and sample times), per ffprobe."""
    out = _run(["ffprobe", "-v", "error", "-show_entries", "format=start_time", "-of", "json", str(path)])
    return float(json.loads(out)["format"].get("start_time", 0) or 0)
