"""Media pipeline: probe, frame sampling (decord, PyAV fallback), audio, clip planning, test-media generators."""

from model.media.audio import load_audio
from model.media.clips import ClipPlan, plan_clips
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
from model.media.probe import FrameTable, VideoInfo, frame_table, probe
from model.media.sampling import (
    Frames,
    fps_grid,
    output_size,
    sample_fps,
    sample_indices,
    sample_segments,
    sample_window,
    segment_indices,
)

__all__ = [
    "ClipPlan",
    "CorruptVideoError",
    "EmptyFileError",
    "FrameTable",
    "Frames",
    "MediaError",
    "MissingFileError",
    "NoVideoStreamError",
    "NotAVideoError",
    "UnsupportedCodecError",
    "VideoInfo",
    "ZeroDurationError",
    "fps_grid",
    "frame_table",
    "load_audio",
    "output_size",
    "plan_clips",
    "probe",
    "sample_fps",
    "sample_indices",
    "sample_segments",
    "sample_window",
    "segment_indices",
]
