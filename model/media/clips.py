"""Clip planning: sample a video at a fixed rate (lowered when the frame cap binds) and cut K-frame clips."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from model.media.errors import MediaError
from model.media.probe import VideoInfo, frame_table
from model.media.sampling import fps_grid

log = logging.getLogger(__name__)


@dataclass
class ClipPlan:
    """One clip: K frame indices (presentation order) with their real times, and the time span it covers.

    Every clip has exactly `frames_per_clip` frames so clips batch as [B, K] for the encoder: the last clip,
    when short, is PADDED by repeating its last frame (`padded` says how many entries are repeats; the
    repeats also repeat the time)."""

    index: int
    frame_indices: list[int]
    frame_times: list[float]
    start: float  # seconds: the first frame's time
    end: float  # seconds: last real frame time + one sampling step, clipped to the duration
    padded: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def plan_clips(info: VideoInfo, fps: float = 1.0, frames_per_clip: int = 8, max_frames: int = 3600) -> list[ClipPlan]:
    """Sample at `fps` (at most the video's own rate; lowered to duration/max_frames when the cap binds), map each
    sample time to the frame shown then (real container timestamps when the file is readable, else
    index/fps), and cut into clips of `frames_per_clip` frames."""
    if frames_per_clip <= 0:
        raise ValueError("frames_per_clip must be positive")
    rate = min(fps, info.fps) if info.fps > 0 else fps
    grid, step = fps_grid(info.duration, rate, max_frames)
    try:
        table = frame_table(info.path)
        idx = table.index_at(grid)
        times = table.times[idx]
    except (MediaError, OSError):  # an info without its file (e.g. from a cache): uniform frame times
        log.debug("planning %s without its frame table", Path(info.path).name)
        idx = np.minimum(np.round(grid * info.fps).astype(np.int64), max(info.frame_count - 1, 0))
        times = idx / info.fps
    plans: list[ClipPlan] = []
    for c, s in enumerate(range(0, len(idx), frames_per_clip)):
        fi = [int(i) for i in idx[s : s + frames_per_clip]]
        ft = [float(t) for t in times[s : s + frames_per_clip]]
        end = min(float(grid[min(s + len(fi), len(grid)) - 1]) + step, info.duration)
        end = max(end, ft[-1])
        pad = frames_per_clip - len(fi)
        plans.append(ClipPlan(c, fi + fi[-1:] * pad, ft + ft[-1:] * pad, ft[0], end, pad))
    return plans
