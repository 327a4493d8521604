"""Audio track as mono float32 at a fixed rate (PyAV's resampler), aligned with the video's time origin."""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np

from model.media.errors import CorruptVideoError
from model.media.probe import _file_key, open_container

log = logging.getLogger(__name__)


def load_audio(path: str | Path, sr: int = 16000) -> np.ndarray | None:
    """Mono float32 [S] at `sr` Hz for the first audio stream, or None when the file has no audio stream.

    Sample 0 is the container's start time (the same origin as the frame times), so a word at t seconds is
    at sample t * sr. Audio-only files are accepted here (the speech step may be given one)."""
    key = _file_key(path)
    name = Path(key[0]).name
    with open_container(key[0]) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        stream.thread_type = "AUTO"
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
        chunks: list[np.ndarray] = []
        first_time: float | None = None
        try:
            for frame in container.decode(stream):
                if first_time is None and frame.time is not None:
                    first_time = frame.time
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))  # flt mono: [1, n] -> [n]
            for out in resampler.resample(None):  # flush what the resampler still holds
                chunks.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as err:
            raise CorruptVideoError(f"{name}: its audio cannot be decoded ({err.strerror}).") from err
        audio = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
        # Align to the container origin: pad a late start with silence, drop samples before it.
        origin = (container.start_time or 0) / av.time_base
        shift = round(((first_time or origin) - origin) * sr)
        if shift > 0:
            audio = np.concatenate([np.zeros(shift, np.float32), audio])
        elif shift < 0:
            audio = audio[-shift:]
        log.debug("loaded %.2f s of audio from %s", len(audio) / sr, name)
        return audio
