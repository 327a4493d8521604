"""Audio track as mono float32 at a fixed rate (PyAV's resampler), aligned with the video's time origin.

Damaged audio is decoded as far as it goes: a packet that does not decode, or a stretch the file does not hold,
becomes silence of the same length (so speech after it keeps its time), and `AudioTrack.lost` says where.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from model.media.damage import AUDIO_MISSING, AUDIO_UNDECODABLE, LostStretch, merge_lost
from model.media.errors import CorruptVideoError
from model.media.probe import _file_key, open_container

log = logging.getLogger(__name__)

HOLE = 0.01  # seconds: a jump in frame times larger than this is a hole (timestamp jitter is ~1 ms)


@dataclass
class AudioTrack:
    """The decoded track. `samples[0]` is the container start (the frame times' origin)."""

    samples: np.ndarray  # float32 [S] mono at `sr`
    sr: int
    lost: list[LostStretch] = field(default_factory=list)  # kind "audio", seconds from the origin
    decoded: bool = True  # False: not one packet decoded (the samples are all silence)

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sr


class _Timeline:
    """Resampled chunks placed at their times: holes are filled with silence of their real length."""

    def __init__(self, sr: int) -> None:
        self.sr = sr
        self.chunks: list[np.ndarray] = []
        self.written = 0  # output samples so far
        self.resampler: av.AudioResampler | None = None
        self.shape: tuple[str, str, int] | None = None  # (format, layout, rate) the resampler was set up for

    def add(self, frame: av.AudioFrame) -> None:
        """Resample one decoded frame; raises av.FFmpegError for a frame the resampler refuses (garbage that
        decoded to a nonsense layout: the caller counts it as lost)."""
        shape = (frame.format.name, frame.layout.name, frame.sample_rate)
        if self.resampler is not None and shape != self.shape:  # the stream changed its layout or rate
            self.flush()
        if self.resampler is None:
            self.resampler, self.shape = av.AudioResampler(format="flt", layout="mono", rate=self.sr), shape
        try:
            converted = self.resampler.resample(frame)
        except (av.FFmpegError, ValueError):
            self.resampler = None  # a refused frame leaves the filter graph unusable
            raise
        for out in converted:
            self._append(out.to_ndarray().reshape(-1))  # flt mono: [1, n] -> [n]

    def flush(self) -> None:
        """Drain the resampler (before a hole and at the end), so what it holds lands before the silence."""
        if self.resampler is not None:
            for out in self.resampler.resample(None):
                self._append(out.to_ndarray().reshape(-1))
            self.resampler = None

    def pad_to(self, seconds: float) -> None:
        self.flush()
        missing = round(seconds * self.sr) - self.written
        if missing > 0:
            self._append(np.zeros(missing, np.float32))

    def _append(self, chunk: np.ndarray) -> None:
        self.chunks.append(chunk)
        self.written += len(chunk)

    def samples(self) -> np.ndarray:
        return np.concatenate(self.chunks).astype(np.float32, copy=False) if self.chunks else np.zeros(0, np.float32)


def decode_audio(path: str | Path, sr: int = 16000) -> AudioTrack | None:
    """The first audio stream as mono float32 at `sr` Hz, or None when the file has no audio stream.

    Sample 0 is the container's start time (the same origin as the frame times), so a word at t seconds is at
    sample t * sr, also after a damaged stretch. Audio-only files are accepted here (the speech step may be
    given one)."""
    key = _file_key(path)
    name = Path(key[0]).name
    with open_container(key[0]) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        stream.thread_type = "AUTO"
        tb = float(stream.time_base)
        origin = (container.start_time or 0) / av.time_base
        line = _Timeline(sr)
        first: float | None = None  # time of the first decoded sample (output sample 0 until aligned)
        cursor = 0.0  # where the next decoded sample belongs, from the sample counts so far
        end = 0.0  # end of the last packet the file holds (decodable or not)
        holes: list[tuple[float, float]] = []
        broken: list[tuple[float, float]] = []  # packets that did not decode
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.FFmpegError as err:  # the demuxer gave up: keep what came before
                log.info("%s: reading its audio stopped early (%s)", name, err)
                break
            start = None
            if packet.size and packet.pts is not None:
                start = packet.pts * tb
                end = max(end, start + (packet.duration or 0) * tb)
            try:
                frames = packet.decode()
            except av.FFmpegError as err:
                log.debug("%s: audio packet at %s s does not decode (%s)", name, start, err)
                if start is not None:
                    broken.append((start, start + (packet.duration or 0) * tb))
                continue
            for frame in frames:
                t = frame.time if frame.time is not None else (cursor if first is not None else start or origin)
                if first is None:
                    first = cursor = t
                if t - cursor > HOLE:  # packets lost or missing: silence of the same length
                    line.pad_to(t - first)
                    holes.append((cursor, t))
                    cursor = t
                try:
                    if frame.is_corrupt:  # decoded with errors (ffmpeg warns and plays it): noise or worse
                        raise ValueError("decoded with errors")
                    line.add(frame)
                except (av.FFmpegError, ValueError) as err:
                    log.debug("%s: audio frame at %.3f s is unusable (%s)", name, t, err)
                    broken.append((t, t + frame.samples / max(frame.sample_rate, 1)))
                    continue  # not advancing the cursor: the next good frame opens a hole here
                cursor += frame.samples / frame.sample_rate
        line.flush()
        decoded = first is not None
        if first is None:  # nothing decoded: silence as long as the packets say, all of it lost
            first = cursor = origin
            if end > origin:
                holes.append((origin, end))
        if end - cursor > HOLE and any(b > cursor for _, b in broken):  # the last packets did not decode
            line.pad_to(end - first)  # (a short end without broken packets is the codec's own end padding)
            holes.append((cursor, end))
        audio = line.samples()
        # Align to the container origin: pad a late start with silence, drop samples before it.
        shift = round((first - origin) * sr)
        if shift > 0:
            audio = np.concatenate([np.zeros(shift, np.float32), audio])
        elif shift < 0:
            audio = audio[-shift:]
        lost = []
        for a, b in holes:
            why = AUDIO_UNDECODABLE if any(p0 < b + HOLE and p1 > a - HOLE for p0, p1 in broken) else AUDIO_MISSING
            lost.append(LostStretch("audio", max(0.0, a - origin), max(0.0, b - origin), why))
        track = AudioTrack(audio, sr, merge_lost(lost), decoded=decoded)
        if track.lost:
            log.info("%s: audio lost %s", name, "; ".join(s.describe() for s in track.lost))
        log.debug("loaded %.2f s of audio from %s", track.duration, name)
        return track


def load_audio(path: str | Path, sr: int = 16000) -> np.ndarray | None:
    """Mono float32 [S] at `sr` Hz (`decode_audio`'s samples: damaged stretches are silence), or None when the
    file has no audio stream. A track of which not one packet decodes is a CorruptVideoError."""
    track = decode_audio(path, sr)
    if track is None:
        return None
    if not track.decoded:
        raise CorruptVideoError(f"{Path(path).name}: its audio cannot be decoded (no packet of it decodes).")
    return track.samples
