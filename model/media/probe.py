"""Probe a video with PyAV: metadata, the per-frame timestamp table, what a damaged file lost, typed errors.

A damaged file is accepted as far as it decodes: frames whose packets are broken stay in the table (so frame
indices agree with decord's) but are marked unusable, and what the container shows as lost (a file cut short,
a stretch missing from every stream) is kept in `FrameTable.lost`. Only a file where no frame decodes is refused.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import av
import numpy as np

from model.media.damage import CUT_SHORT, VIDEO_MISSING, VIDEO_UNDECODABLE, LostStretch, merge_lost
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
    usable: np.ndarray | None = None  # bool [F]: False for frames whose packet is broken (None: all usable)
    lost: tuple[LostStretch, ...] = ()  # what the container shows as lost (cut short, missing stretches)

    def __len__(self) -> int:
        return len(self.pts)

    def usable_index(self, idx: np.ndarray) -> np.ndarray:
        """Each index, or for an unusable frame the nearest usable one before it (the picture a player keeps
        showing), else the nearest after it."""
        idx = np.asarray(idx, dtype=np.int64)
        if self.usable is None or self.usable.all():
            return idx
        good = np.flatnonzero(self.usable)
        if not len(good):
            raise CorruptVideoError("no frame of this video can be decoded")
        before = np.searchsorted(good, idx, side="right") - 1
        return np.where(self.usable[idx], idx, good[np.where(before >= 0, before, 0)]).astype(np.int64)

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


def decode_tolerant(
    container: av.container.InputContainer,
    stream: av.stream.Stream,
    on_error: Callable[[av.Packet, av.FFmpegError], None] | None = None,
) -> Iterator[av.frame.Frame]:
    """Frames of `stream` from the container's current position, skipping packets that do not decode
    (`on_error(packet, err)` hears of each). Ends quietly where the file cannot be read any further."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.FFmpegError as err:  # the demuxer gave up (damaged container): what was read stands
            log.info("reading %s stopped early: %s", container.name, err)
            return
        try:
            frames = packet.decode()
        except av.FFmpegError as err:
            if on_error is not None:
                on_error(packet, err)
            continue
        yield from frames


def _declared_avi(path: str, size: int) -> tuple[bool, float]:
    """(RIFF size says the file is longer than it is, the main header's frame count x frame time in seconds):
    an AVI has no timestamps to compare, its header is what says how long it was meant to be."""
    with open(path, "rb") as f:
        head = f.read(56)
    if len(head) < 56 or head[:4] != b"RIFF" or head[8:12] != b"AVI " or head[24:28] != b"avih":
        return False, 0.0
    (riff_size,) = struct.unpack("<I", head[4:8])
    us_per_frame, _max_rate, _padding, _flags, total = struct.unpack("<5I", head[32:52])
    return riff_size + 8 > size, us_per_frame * total / 1e6


def _frame_stretches(times: np.ndarray, step: float, bad: np.ndarray, note: str) -> list[LostStretch]:
    """One stretch per run of bad frames, each frame lasting until the next one (the last: `step`)."""
    ends = np.append(times[1:], times[-1] + step)
    return merge_lost(LostStretch("video", float(times[i]), float(ends[i]), note) for i in np.flatnonzero(bad))


def _gaps(spans: list[tuple[float, float]], min_gap: float) -> list[tuple[float, float]]:
    """Holes between consecutive (start, end) spans longer than `min_gap`."""
    out: list[tuple[float, float]] = []
    reach = None  # the furthest end so far
    for a, b in sorted(spans):
        if reach is not None and a - reach > min_gap:
            out.append((reach, a))
        reach = b if reach is None else max(reach, b)
    return out


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
        # A file cut short shows in the index before any reading: samples that lie past the end of the file.
        entries = stream.index_entries
        past_end = bool(len(entries)) and max(e.pos + e.size for e in entries[-8:]) > size
        audio = container.streams.audio[0] if container.streams.audio else None
        atb = float(audio.time_base) if audio is not None else 0.0
        pts: list[int] = []
        key: list[bool] = []
        whole: list[bool] = []  # the packet was read in full
        spans: list[tuple[float, float]] = []  # audio packets, seconds
        audio_broken = False  # the last audio packet was cut off
        stopped = False  # the demuxer gave up before the end
        packets = container.demux(*(s for s in (stream, audio) if s is not None))
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.FFmpegError as err:
                if not pts:
                    raise CorruptVideoError(f"{name} is damaged: reading its frames failed ({err.strerror}).") from err
                log.info("%s: reading stopped at a damaged part (%s); using what came before", name, err)
                stopped = True
                break
            if packet.size == 0 or packet.is_discard:
                continue
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None:
                continue
            if packet.stream.index == stream.index:
                pts.append(ts)
                key.append(packet.is_keyframe)
                whole.append(not packet.is_corrupt)
            else:
                start = ts * atb - origin
                spans.append((start, start + (packet.duration or 0) * atb))
                audio_broken = packet.is_corrupt
        if not pts:
            raise ZeroDurationError(f"{name} has a video stream without any frames.")

        order = np.argsort(np.asarray(pts, dtype=np.int64), kind="stable")
        pts_arr = np.asarray(pts, dtype=np.int64)[order]
        usable = np.asarray(whole, dtype=bool)[order]
        times = pts_arr * tb - origin
        step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0

        # The first frame that decodes cleanly proves the codec works (its side data carries the display
        # matrix); a file none of whose frames decodes is the one file refused.
        rotation = 0
        clean = False
        try:
            container.seek(0)
            for frame in decode_tolerant(container, stream):
                if not frame.is_corrupt:
                    rotation, clean = round(frame.rotation or 0), True
                    break
        except av.FFmpegError as err:
            raise CorruptVideoError(f"{name}: its video frames cannot be decoded ({err.strerror}).") from err
        if not clean:
            raise CorruptVideoError(f"{name}: no frame of its video could be decoded.")

        if stream.duration:  # the video track's own end, trustworthy when past the last frame time
            meta = (stream.duration + (stream.start_time or 0)) * tb - origin
        else:
            meta = (container.duration or 0) / av.time_base
        if len(times) > 1:
            est = float(times[-1] + step)
            duration = meta if (stream.duration and meta > times[-1]) else min(est, max(meta, times[-1]) or est)
        else:
            duration = float(meta)

        # What was lost. Cut short: the index or the header promise more than the file holds, the last packet
        # was cut off, the demuxer stopped, or no stream reaches the length the container declares.
        lost: list[LostStretch] = []
        avi_cut, avi_length = _declared_avi(path, size)
        last_good = int(np.flatnonzero(usable)[-1]) if usable.any() else -1
        video_end = float(times[last_good] + (step or duration)) if last_good >= 0 else 0.0
        audio_end = max((b for _, b in spans), default=0.0)
        declared = max(meta, (container.duration or 0) / av.time_base, avi_length)
        cut = past_end or avi_cut or stopped or not usable[-1] or audio_broken
        cut = cut or (stream.frames > 0 and len(pts) < 0.98 * stream.frames)
        cut = cut or max(video_end, audio_end) < declared - max(1.0, 3 * step)
        if cut:
            end = max(declared, video_end)
            lost.append(LostStretch("video", video_end, end, CUT_SHORT))
            if audio is not None and spans:
                lost.append(LostStretch("audio", min(audio_end, end), end, CUT_SHORT))
            duration = min(duration, video_end) if video_end > 0 else duration
        inside = ~usable
        inside[last_good + 1 :] = False  # broken frames at the end belong to the cut
        lost += _frame_stretches(times, step, inside, VIDEO_UNDECODABLE)
        # A hole in the frame times is a lost stretch only where the audio has a hole too: video alone may
        # legitimately pause (screen recordings send no frame while nothing changes).
        if audio is not None and len(times) > 1:
            holes = _gaps(spans, 0.1)
            for i in np.flatnonzero(np.diff(times) > max(0.5, 4 * step)) if holes else []:
                a, b = float(times[i] + step), float(times[i + 1])
                if any(h0 < b and h1 > a for h0, h1 in holes):
                    lost.append(LostStretch("video", a, b, VIDEO_MISSING))
        if duration <= 0:
            raise ZeroDurationError(f"{name} has zero duration.")
        if lost:
            log.info("%s is damaged: %s", name, "; ".join(x.describe() for x in merge_lost(lost)))
        rotation = ((90 * round(rotation / 90) + 179) % 360) - 179  # one of -90, 0, 90, 180
        w, h = stream.codec_context.width, stream.codec_context.height
        if rotation in (90, -90):
            w, h = h, w
        table = FrameTable(
            pts_arr, times, np.asarray(key, dtype=bool)[order], tb, origin, duration,
            usable=None if usable.all() else usable, lost=tuple(merge_lost(lost)),
        )  # fmt: skip
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


def probe_damage(path: str | Path) -> list[LostStretch]:
    """What the container shows as lost (cut short, stretches missing from the file, broken frame packets);
    audio that does not decode is found by `decode_audio`, frames that do not by the samplers."""
    return list(_cached(*_file_key(path))[0].lost)


def probe(path: str | Path) -> VideoInfo:
    """Duration, fps, frame count, displayed size, rotation, codec and audio presence, or a typed MediaError."""
    info = _cached(*_file_key(path))[1]
    return VideoInfo(**asdict(info))  # a copy: callers may edit theirs
