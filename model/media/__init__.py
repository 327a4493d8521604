"""Media pipeline: probe, frame sampling (decord, PyAV fallback), audio, clip planning, test-media generators."""

from model.media.audio import AudioTrack, decode_audio, load_audio
from model.media.clips import ClipPlan, plan_clips
from model.media.damage import LostStretch, damage_note, merge_lost
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
from model.media.probe import FrameTable, VideoInfo, frame_table, probe, probe_damage
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
    "AudioTrack",
    "ClipPlan",
    "CorruptVideoError",
    "EmptyFileError",
    "FrameTable",
    "Frames",
    "LostStretch",
    "MediaError",
    "MissingFileError",
    "NoVideoStreamError",
    "NotAVideoError",
    "UnsupportedCodecError",
    "VideoInfo",
    "ZeroDurationError",
    "damage_note",
    "decode_audio",
    "fps_grid",
    "frame_table",
    "load_audio",
    "merge_lost",
    "output_size",
    "plan_clips",
    "probe",
    "probe_damage",
    "sample_fps",
    "sample_indices",
    "sample_segments",
    "sample_window",
    "segment_indices",
]
