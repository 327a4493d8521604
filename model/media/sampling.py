"""Frame sampling: decord first, PyAV when decord cannot open or decode a file.

Both backends decode only the frames asked for, resized on decode (short side -> `short_side`, aspect kept),
return upright RGB (the display matrix applied) and take every frame's time from the same container-timestamp
table (`probe.frame_table`), so the times are real for variable frame rate and identical across backends.

Damaged files: a frame the container marks broken is replaced, before decoding, by the nearest usable one; PyAV
(the backend `auto` picks for a file `probe` found damaged) also skips packets that do not decode and gives the
nearest frame that did. Either way `Frames.times`/`indices` are those of the frames really returned, and
`Frames.lost` says which stretches the decoder found broken.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import av
import numpy as np

from model.media.damage import VIDEO_CONCEALED, VIDEO_UNDECODABLE, LostStretch, merge_lost
from model.media.errors import CorruptVideoError
from model.media.probe import FrameTable, _cached, _file_key, _frame_stretches, decode_tolerant, open_container

log = logging.getLogger(__name__)

BACKENDS = ("auto", "decord", "pyav")
CHUNK = 32  # frames per decord get_batch call: bounds the temporary copy
MAX_BACK = 8  # keyframes PyAV steps back when a seek lands past its target


@dataclass
class Frames:
    images: np.ndarray  # uint8 [N, H, W, 3] RGB, upright
    times: np.ndarray  # float64 [N] seconds (container timestamps) of the frames returned
    indices: np.ndarray  # int64 [N] frame indices (presentation order) of the frames returned
    backend: str  # "decord" | "pyav"
    requested: np.ndarray | None = None  # int64 [N] the indices asked for (differ from `indices` where broken)
    lost: list[LostStretch] = field(default_factory=list)  # broken frames the decoder met on the way

    def __len__(self) -> int:
        return len(self.indices)


class _BackendFailed(Exception):
    """decord could not serve this file; fall back to PyAV."""


def segment_indices(num_frames_in_video: int, n: int) -> list[int]:
    """The official InternVideo2 segment midpoints: seg = (len-1)/n; idx = int(seg/2) + round(seg*i)."""
    if n <= 0 or num_frames_in_video <= 0:
        raise ValueError("segment_indices needs n > 0 and a video with frames")
    seg = float(num_frames_in_video - 1) / n
    start = int(seg / 2)
    return [start + int(np.round(seg * i)) for i in range(n)]


def fps_grid(duration: float, fps: float, max_frames: int) -> tuple[np.ndarray, float]:
    """Times 0, step, 2*step, ... below `duration`; step = 1/fps, or duration/max_frames when the cap binds."""
    if fps <= 0 or max_frames <= 0:
        raise ValueError("fps and max_frames must be positive")
    step = 1.0 / fps
    count = max(1, int(np.floor(duration * fps - 1e-9)) + 1)
    if count > max_frames:
        count, step = max_frames, duration / max_frames
    return np.arange(count, dtype=np.float64) * step, step


def output_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """(w, h) with the short side scaled to `short_side` and the aspect kept (None: unchanged)."""
    if not short_side:
        return width, height
    scale = short_side / min(width, height)
    return max(2, round(width * scale)), max(2, round(height * scale))


def _choose_backend(backend: str | None) -> str:
    choice = backend or os.environ.get("VIDEOCHAT_VIDEO_BACKEND", "auto")
    if choice not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {choice!r}")
    return choice


# ------------------------------------------------------------------------------------------------ decoders
@lru_cache(maxsize=64)
def _decord_turns_upright(path: str, mtime_ns: int, size: int, rotation: int) -> bool:
    """Whether decord applies the rotation itself (it reads the legacy `rotate` tag): its native frame is then
    as displayed. Checked once per rotated file."""
    import decord

    shape = decord.VideoReader(path, ctx=decord.cpu(0)).next().shape  # [H, W, 3]
    return (rotation in (90, -90) and shape[0] > shape[1]) or rotation == 180  # portrait out of a landscape store


def _decode_decord(path: str, indices: np.ndarray, size: tuple[int, int], table: FrameTable) -> np.ndarray:
    """Frames as decord returns them; the caller's `size` is for the stored picture, swapped when decord
    already turns the picture upright (then the returned rotation to apply is 0, see `_load`)."""
    try:
        import decord

        reader = decord.VideoReader(path, ctx=decord.cpu(0), width=size[0], height=size[1], num_threads=0)
    except Exception as err:  # decord raises its own DECORDError / RuntimeError types
        raise _BackendFailed(f"decord cannot open it: {str(err).splitlines()[0][:200]}") from err
    if len(reader) != len(table):  # its index disagrees with the container timestamps: times would be wrong
        raise _BackendFailed(f"decord counts {len(reader)} frames, the container {len(table)}")
    out = np.empty((len(indices), size[1], size[0], 3), dtype=np.uint8)  # [N, h, w, 3]
    try:
        for i in range(0, len(indices), CHUNK):
            out[i : i + CHUNK] = reader.get_batch(indices[i : i + CHUNK].tolist()).asnumpy()
    except Exception as err:
        raise _BackendFailed(f"decord failed to decode: {str(err).splitlines()[0][:200]}") from err
    return out


def _decode_pyav(
    path: str, indices: np.ndarray, size: tuple[int, int], table: FrameTable
) -> tuple[np.ndarray, np.ndarray, set[int], set[int]]:
    """Seek to the keyframe before each needed frame only when that skips work, then decode forward, skipping
    packets that do not decode. Returns the images [N, h, w, 3], the pts of the frame each one really is (a
    wanted frame that never comes out is replaced by the nearer decoded neighbour), and the pts of frames found
    undecodable and of frames decoded with errors (concealed)."""
    n = len(indices)
    out = np.empty((n, size[1], size[0], 3), dtype=np.uint8)  # [N, h, w, 3]
    got = np.zeros(n, dtype=np.int64)
    want = table.pts[indices]
    # For every frame, the index of the last keyframe at or before it (presentation order).
    key_before = np.maximum.accumulate(np.where(table.keyframe, np.arange(len(table)), 0))
    failed: set[int] = set()
    concealed: set[int] = set()

    def on_error(packet: av.Packet, err: av.FFmpegError) -> None:
        ts = packet.pts if packet.pts is not None else packet.dts
        if ts is not None:
            failed.add(int(ts))

    def picture(frame: av.VideoFrame) -> np.ndarray:
        return frame.reformat(width=size[0], height=size[1], format="rgb24").to_ndarray()

    with open_container(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        k, pos, frames = 0, None, None
        prev: tuple[int, av.VideoFrame] | None = None  # the last frame decoded (a stand-in for lost ones)
        back = 0  # extra keyframes to step back when a seek lands past the target
        while k < n:
            kf = int(key_before[indices[k]])
            for _ in range(back):
                kf = int(key_before[max(kf - 1, 0)])
            if frames is None or pos is None or want[k] <= pos or table.pts[kf] > pos:
                container.seek(int(table.pts[kf]), stream=stream, backward=True)
                frames, pos, first = decode_tolerant(container, stream, on_error), None, True
            else:
                first = False
            progressed = False
            try:
                for frame in frames:
                    fp = frame.pts if frame.pts is not None else frame.dts
                    if fp is None:
                        continue
                    if first and fp > want[k] and kf > 0 and back < MAX_BACK:
                        break  # the seek landed after the target: step back one more keyframe
                    first, pos = False, fp
                    if frame.is_corrupt:
                        concealed.add(int(fp))
                    if fp < want[k]:
                        prev = (fp, frame)
                        continue
                    mine: np.ndarray | None = None
                    theirs: np.ndarray | None = None
                    while k < n and want[k] <= fp:  # exact match, or the wanted frame never came out
                        if want[k] != fp:
                            failed.add(int(want[k]))
                        # a frame after a broken one is built on it until the next keyframe: the frame before
                        # the break (what a player freezes on) stands in, unless this one is a nearer keyframe
                        near = prev is None or (frame.key_frame and fp - want[k] <= want[k] - prev[0])
                        if want[k] == fp or near:
                            mine = picture(frame) if mine is None else mine
                            out[k], got[k] = mine, fp
                        else:
                            theirs = picture(prev[1]) if theirs is None else theirs
                            out[k], got[k] = theirs, prev[0]
                        k += 1
                    prev = (fp, frame)
                    progressed = True
                    back = 0
                    if k >= n or table.pts[int(key_before[indices[k]])] > pos:
                        break  # done, or a seek is cheaper than decoding up to the next target
                else:  # the stream ended (damaged or cut tail): the last frame decoded stands in
                    if prev is None:
                        raise CorruptVideoError(f"{os.path.basename(path)}: no frame could be decoded.")
                    failed.update(int(w) for w in want[k:])
                    out[k:], got[k:] = picture(prev[1]), prev[0]
                    k = n
            except av.FFmpegError as err:
                raise CorruptVideoError(f"{os.path.basename(path)}: decoding failed ({err.strerror}).") from err
            if not progressed and k < n:
                back += 1
                frames = None
    return out, got, failed, concealed


def _lost_frames(table: FrameTable, pts: set[int], note: str) -> list[LostStretch]:
    """Stretches of the table's frames whose pts are in `pts`, each run to the next keyframe: the frames after a
    broken one are predicted from it, so its damage shows until a keyframe starts afresh."""
    if not pts:
        return []
    want = np.fromiter(pts, dtype=np.int64)
    idx = np.searchsorted(table.pts, want)
    idx = idx[(idx < len(table)) & (table.pts[np.minimum(idx, len(table) - 1)] == want)]
    mask = np.zeros(len(table), dtype=bool)
    mask[idx] = True
    keys = np.flatnonzero(table.keyframe)
    nxt = np.searchsorted(keys, idx, side="right")  # the keyframe after each broken frame
    for i, n in zip(idx, nxt, strict=True):
        mask[i : keys[n] if n < len(keys) else len(table)] = True
    step = float(np.median(np.diff(table.times))) if len(table) > 1 else table.duration
    return _frame_stretches(table.times, step, mask, note)


def _decord_upright(key: tuple[str, int, int], rotation: int) -> bool:
    try:
        return _decord_turns_upright(*key, rotation)
    except Exception as err:
        raise _BackendFailed(f"decord cannot open it: {str(err).splitlines()[0][:200]}") from err


def _rotate(images: np.ndarray, rotation: int) -> np.ndarray:
    """Turn stored frames upright: `rotation` is counter-clockwise degrees, as np.rot90 counts."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(images, k=k, axes=(1, 2))) if k else images


def _load(path: str, indices: np.ndarray, short_side: int | None, backend: str | None) -> Frames:
    key = _file_key(path)
    table, info = _cached(*key)
    path = key[0]
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(indices) and (indices.min() < 0 or indices.max() >= len(table)):
        raise ValueError(f"frame indices must be in [0, {len(table)}), got {indices.min()}..{indices.max()}")
    use = table.usable_index(indices)  # frames the container marks broken: the nearest usable one instead
    # Decoders work on the stored (unrotated) picture: size the short side there, then turn upright.
    stored_w, stored_h = (info.height, info.width) if info.rotation in (90, -90) else (info.width, info.height)
    size = output_size(stored_w, stored_h, short_side)
    uniq, inverse = np.unique(use, return_inverse=True)
    choice = _choose_backend(backend)
    if choice == "auto" and table.lost:
        choice = "pyav"  # a damaged file: PyAV skips what does not decode and says where
    used, turn = "pyav", info.rotation
    decoded = None
    got, lost = uniq, []
    if choice in ("auto", "decord"):
        try:
            dsize = size
            if info.rotation and _decord_upright(key, info.rotation):
                dsize, turn = (size[1], size[0]) if info.rotation in (90, -90) else size, 0
            decoded, used = _decode_decord(path, uniq, dsize, table), "decord"
        except _BackendFailed as why:
            if choice == "decord":
                raise CorruptVideoError(f"decord cannot read {os.path.basename(path)}: {why}") from why
            log.info("decord cannot serve %s (%s); falling back to PyAV", os.path.basename(path), why)
            turn = info.rotation
    if decoded is None:
        decoded, got_pts, failed, concealed = _decode_pyav(path, uniq, size, table)
        got = np.searchsorted(table.pts, got_pts).astype(np.int64)
        lost = merge_lost(
            _lost_frames(table, failed, VIDEO_UNDECODABLE) + _lost_frames(table, concealed - failed, VIDEO_CONCEALED)
        )
        if lost:
            log.info("%s: %s", os.path.basename(path), "; ".join(x.describe() for x in lost))
    log.info("sampled %d frames of %s with %s", len(indices), os.path.basename(path), used)
    images = _rotate(decoded[inverse] if len(uniq) != len(indices) else decoded, turn)
    shown = got[inverse]
    return Frames(
        images=images, times=table.times[shown].copy(), indices=shown, backend=used, requested=indices, lost=lost
    )


# ------------------------------------------------------------------------------------------------- public
def sample_indices(
    path: str, indices: Sequence[int] | np.ndarray, short_side: int | None = 224, backend: str | None = None
) -> Frames:
    """These frames (presentation-order indices), in the given order."""
    return _load(str(path), np.asarray(indices, dtype=np.int64), short_side, backend)


def sample_segments(path: str, n: int, short_side: int | None = 224, backend: str | None = None) -> Frames:
    """n segment midpoints over the whole video (InternVideo2's sampling)."""
    table = _cached(*_file_key(path))[0]
    return _load(str(path), np.asarray(segment_indices(len(table), n)), short_side, backend)


def sample_fps(
    path: str, fps: float, max_frames: int, short_side: int | None = 224, backend: str | None = None
) -> Frames:
    """The frame shown at t = 0, 1/fps, 2/fps, ...; when more than max_frames, max_frames spread evenly.
    A frame shown at several grid times (fps above the video's rate) appears once."""
    table = _cached(*_file_key(path))[0]
    grid, _ = fps_grid(table.duration, fps, max_frames)
    idx = table.index_at(grid)
    return _load(str(path), idx[np.sort(np.unique(idx, return_index=True)[1])], short_side, backend)


def sample_window(
    path: str,
    t0: float,
    t1: float,
    n: int | None = None,
    fps: float | None = None,
    short_side: int | None = 224,
    backend: str | None = None,
) -> Frames:
    """Dense frames in [t0, t1]: `n` frames at the midpoints of n equal parts (exactly n, repeats possible in a
    window shorter than n frames), or the frames shown at t0, t0 + 1/fps, ... (distinct), or with neither every
    frame in the window."""
    table = _cached(*_file_key(path))[0]
    t0, t1 = max(0.0, float(t0)), min(float(t1), table.duration)
    if t1 < t0:
        raise ValueError(f"empty window [{t0}, {t1}] (video is {table.duration:.2f} s)")
    if n is not None:
        idx = table.index_at(t0 + (t1 - t0) * (np.arange(n) + 0.5) / n)
    elif fps is not None:
        idx = np.unique(table.index_at(np.arange(t0, t1 + 1e-9, 1.0 / fps)))
    else:
        idx = np.flatnonzero((table.times >= t0 - 1e-6) & (table.times <= t1 + 1e-6))
        if not len(idx):
            idx = table.index_at(np.array([t0]))
    return _load(str(path), idx, short_side, backend)
