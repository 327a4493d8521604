"""Probe a video with PyAV: metadata, the per-frame timestamp table, and typed errors for bad files."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import av
import numpy as np

from model.media.errors import (
    CorruptVideoError,
    EmptyFileError,
    MediaError,
    MissingFileError,
    NotAVideoError,
    NoVideoStreamError,
    UnsupportedCodecError,
    ZeroDurationError,
)

log = logging.getLogger(__name__)

# Leading bytes of containers we know: a file that starts like one of these but does not open is damaged,
# anything else that does not open is simply not a video.
_SIGNATURES: tuple[tuple[int, bytes], ...] = (
    (4, b"ftyp"), (4, b"moov"), (4, b"mdat"), (4, b"free"), (4, b"wide"), (4, b"skip"),
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM
    (0, b"RIFF"), (0, b"OggS"), (0, b"FLV"), (0, b"\x00\x00\x01\xba"), (0, b"\x00\x00\x01\xb3"),
    (0, b"\x30\x26\xb2\x75"),  # ASF / WMV
    (0, b"\x47"),  # MPEG-TS sync byte
)  # fmt: skip


@dataclass
class VideoInfo:
    """What `probe` learns about a video. `width`/`height` are as DISPLAYED (rotation applied);
    `rotation` is the display-matrix angle in counter-clockwise degrees (ffprobe's sign: a portrait phone
    video is usually -90). `fps` is the average rate (frame_count / duration for variable frame rate)."""

    path: str
    duration: float  # seconds
    fps: float
    frame_count: int
    width: int
    height: int
    rotation: int
    codec: str
    has_audio: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FrameTable:
    """Every frame of the first video stream in presentation order."""

    pts: np.ndarray  # int64 [F], stream time_base units, sorted
    times: np.ndarray  # float64 [F], seconds from the container start
    keyframe: np.ndarray  # bool [F]
    time_base: float
    origin: float  # seconds subtracted from pts * time_base (the container start time)
    duration: float  # seconds: last frame time + its display time (clipped to metadata when known)

    def __len__(self) -> int:
        return len(self.pts)

    def index_at(self, t: np.ndarray | float) -> np.ndarray:
        """Index of the frame shown at time t (the last frame whose time is <= t)."""
        idx = np.searchsorted(self.times, np.asarray(t, dtype=np.float64) + 1e-6, side="right") - 1
        return np.clip(idx, 0, len(self.times) - 1).astype(np.int64)


def _file_key(path: str | Path) -> tuple[str, int, int]:
    """(resolved path, mtime_ns, size): the cache key that changes when the file does."""
    p = Path(path)
    if not p.exists():
        raise MissingFileError(f"File not found: {p}")
    if not p.is_file():
        raise NotAVideoError(f"{p} is not a file.")
    st = p.stat()
    if st.st_size == 0:
        raise EmptyFileError(f"{p.name} is empty (0 bytes); the upload or copy may have been interrupted.")
    return str(p.resolve()), st.st_mtime_ns, st.st_size


def _looks_like_media(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(16)
    return any(head[off : off + len(sig)] == sig for off, sig in _SIGNATURES)


def open_container(path: str) -> av.container.InputContainer:
    """av.open with typed errors (the path was checked by `_file_key`)."""
    try:
        return av.open(path, metadata_errors="ignore")
    except av.FFmpegError as err:
        name = Path(path).name
        if _looks_like_media(path):
            raise CorruptVideoError(f"{name} looks like a video but is damaged or truncated ({err.strerror}).") from err
        raise NotAVideoError(f"{name} is not a video file (no known video format could read it).") from err


def video_stream(container: av.container.InputContainer, name: str) -> av.video.stream.VideoStream:
    if not container.streams.video:
        what = "audio only" if container.streams.audio else "no picture"
        raise NoVideoStreamError(f"{name} has no video stream ({what}).")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    if ctx is None or ctx.codec is None or stream.codec_context.name in (None, "", "none"):
        tag = getattr(stream.codec_context, "codec_tag", None) if ctx is not None else None
        raise UnsupportedCodecError(f"{name}: its video codec ({tag or 'unknown'}) cannot be decoded here.")
    return stream


def _build_table(path: str, size: int) -> tuple[FrameTable, VideoInfo]:
    name = Path(path).name
    with open_container(path) as container:
        if container.format.name == "image2" or container.format.name.endswith("_pipe"):
            raise NotAVideoError(f"{name} is a still image, not a video.")
        stream = video_stream(container, name)
        tb = float(stream.time_base)
        origin = (container.start_time or 0) / av.time_base
        # Truncation shows in the index before any reading: samples that lie past the end of the file.
        entries = stream.index_entries
        if len(entries) and max(e.pos + e.size for e in entries[-8:]) > size:
            raise CorruptVideoError(f"{name} is truncated: its index points past the end of the file.")
        pts: list[int] = []
        key: list[bool] = []
        try:
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_discard:
                    continue
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is None:
                    continue
                pts.append(ts)
                key.append(packet.is_keyframe)
        except av.FFmpegError as err:
            raise CorruptVideoError(f"{name} is damaged: reading its frames failed ({err.strerror}).") from err
        if not pts:
            raise ZeroDurationError(f"{name} has a video stream without any frames.")
        if stream.frames and len(pts) < 0.98 * stream.frames:
            raise CorruptVideoError(f"{name} is truncated: {len(pts)} of {stream.frames} frames are present.")
        # The first frame decodes (codec really works, and its side data carries the display matrix).
        rotation = 0
        try:
            container.seek(0)
            for frame in container.decode(stream):
                rotation = round(frame.rotation or 0)
                break
            else:
                raise CorruptVideoError(f"{name}: no frame of its video could be decoded.")
        except av.FFmpegError as err:
            raise CorruptVideoError(f"{name}: its video frames cannot be decoded ({err.strerror}).") from err

        order = np.argsort(np.asarray(pts, dtype=np.int64), kind="stable")
        pts_arr = np.asarray(pts, dtype=np.int64)[order]
        times = pts_arr * tb - origin
        if stream.duration:  # the video track's own end, trustworthy when past the last frame time
            meta = (stream.duration + (stream.start_time or 0)) * tb - origin
        else:
            meta = (container.duration or 0) / av.time_base
        if len(times) > 1:
            est = float(times[-1] + np.median(np.diff(times)))
            duration = meta if (stream.duration and meta > times[-1]) else min(est, max(meta, times[-1]) or est)
        else:
            duration = float(meta)
        if duration <= 0:
            raise ZeroDurationError(f"{name} has zero duration.")
        rotation = ((90 * round(rotation / 90) + 179) % 360) - 179  # one of -90, 0, 90, 180
        w, h = stream.codec_context.width, stream.codec_context.height
        if rotation in (90, -90):
            w, h = h, w
        table = FrameTable(pts_arr, times, np.asarray(key, dtype=bool)[order], tb, origin, duration)
        info = VideoInfo(
            path=path,
            duration=duration,
            fps=float(len(pts_arr) / duration),
            frame_count=len(pts_arr),
            width=int(w),
            height=int(h),
            rotation=rotation,
            codec=stream.codec_context.name,
            has_audio=bool(container.streams.audio),
        )
        return table, info


@lru_cache(maxsize=64)
def _cached(path: str, mtime_ns: int, size: int) -> tuple[FrameTable, VideoInfo]:
    log.debug("indexing %s", path)
    try:
        return _build_table(path, size)
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError) as err:  # anything else PyAV raises is a damaged file
        raise CorruptVideoError(f"{Path(path).name} could not be read as a video: {err}") from err


def frame_table(path: str | Path) -> FrameTable:
    """The frame timestamp table, cached by (path, mtime, size) so repeated sampling does not re-demux."""
    return _cached(*_file_key(path))[0]


def probe(path: str | Path) -> VideoInfo:
    """Duration, fps, frame count, displayed size, rotation, codec and audio presence, or a typed MediaError."""
    info = _cached(*_file_key(path))[1]
    return VideoInfo(**asdict(info))  # a copy: callers may edit theirs
