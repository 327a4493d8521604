"""The `Transcriber` interface and what every Whisper backend shares: audio checks, the clean-up of Whisper's
segments (times clamped, lines split where the words pause) and the constants of the speech stage."""

from __future__ import annotations

import itertools
import os
from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np

from model.errors import ModelAccessError
from model.profiles import SpeechSpec
from model.speech.transcript import AudioInputError, Segment, Transcript, Word

SAMPLE_RATE = 16000
BACKENDS = ("faster-whisper", "openai-whisper")
# Silero VAD: faster-whisper's defaults (2 s min silence, 400 ms pad) keep pauses inside chunks, and Whisper then
# stretches a sentence's last word over the pause; shorter pauses split chunks so times stay on the speech.
VAD_OPTIONS: dict[str, float] = {"min_silence_duration_ms": 500, "speech_pad_ms": 200}
PAUSE_SPLIT_S = 1.0  # a pause this long between words starts a new transcript line
CHECK_SECONDS = 1.0  # audio transcribed at load on CUDA to prove the backend runs there
Progress = Callable[[str, float], None]
AudioInput = np.ndarray | str | os.PathLike | None


def cpu_threads() -> int:
    """Threads for CTranslate2 on CPU: the cores there are, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def resolve_compute_type(compute_type: str, device: str) -> str:
    """Resolve "auto": int8 on CPU (fast, small), float16 on CUDA."""
    if compute_type != "auto":
        return compute_type
    return "float16" if device.startswith("cuda") else "int8"


class WhisperBackendError(ModelAccessError):
    """faster-whisper (CTranslate2) cannot run on this device, e.g. its wheel links CUDA 12 libraries
    (libcublas.so.12) that a CUDA 13 stack does not have."""


class Transcriber(ABC):
    """A loaded Whisper model. `transcribe` takes 16 kHz mono float32 audio or a media path."""

    backend: str
    fallback_reason: str | None = None  # set when this backend runs because the profile's could not
    model_name: str  # what the spec asked for ("packaged:tiny.en", "large-v3-turbo", a path...)
    model_path: str  # what was actually loaded
    device: str
    multilingual: bool

    def __init__(self, spec: SpeechSpec, device: str) -> None:
        self.spec = spec
        self.device = device
        self.model_name = spec.model
        self.vad = spec.vad
        # Whisper's segment timestamps are coarse (tiny/base were 0.7 s off on espeak speech); the word
        # alignment pass is cheap and snaps segment bounds to the first/last word, so it always runs.
        self.precise_times = True

    def transcribe(
        self, audio: AudioInput, word_timestamps: bool = False, progress: Progress | None = None
    ) -> Transcript:
        """Transcribe `audio` (float32 [S] at 16 kHz, or a media path); silence or no audio -> empty transcript."""
        samples = self._prepare_audio(audio)
        if samples is None:  # media without an audio stream
            if progress:
                progress("transcribing", 1.0)
            return Transcript(segments=[], language=None, duration=0.0)
        duration = samples.shape[0] / SAMPLE_RATE
        if samples.shape[0] == 0 or not np.any(samples):  # nothing to hear; Whisper would hallucinate
            if progress:
                progress("transcribing", 1.0)
            return Transcript(segments=[], language=None, duration=duration)
        if progress:
            progress("transcribing", 0.0)
        segments, language = self._transcribe(samples, duration, word_timestamps or self.precise_times, progress)
        segments = [part for s in segments for part in split_on_pauses(_clean_segment(s, duration))]
        if not word_timestamps:
            segments = [Segment(s.start, s.end, s.text, None) for s in segments]
        segments = [s for s in segments if s.text]
        if progress:
            progress("transcribing", 1.0)
        return Transcript(segments=segments, language=language if segments else None, duration=duration)

    @abstractmethod
    def _transcribe(
        self, audio: np.ndarray, duration: float, word_timestamps: bool, progress: Progress | None
    ) -> tuple[list[Segment], str | None]:
        """audio: float32 [S] at 16 kHz, not empty."""

    @staticmethod
    def _prepare_audio(audio: AudioInput) -> np.ndarray | None:
        if audio is None:
            return None
        if isinstance(audio, (str, os.PathLike)):
            from model.media import load_audio

            return Transcriber._prepare_audio(load_audio(str(audio), sr=SAMPLE_RATE))
        if not isinstance(audio, np.ndarray):
            raise AudioInputError(f"Audio must be a numpy array or a file path, not {type(audio).__name__}.")
        if audio.ndim != 1:
            raise AudioInputError(f"Audio must be mono samples [S] at 16 kHz; got an array of shape {audio.shape}.")
        if not np.issubdtype(audio.dtype, np.floating):
            raise AudioInputError(f"Audio must be float samples in [-1, 1]; got dtype {audio.dtype}.")
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if not np.all(np.isfinite(audio)):
            raise AudioInputError("Audio contains NaN or infinite samples.")
        return audio

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model_name!r}, device={self.device!r})"


def split_on_pauses(seg: Segment, min_gap: float = PAUSE_SPLIT_S) -> list[Segment]:
    """Split a segment where its words pause for `min_gap` seconds or more.

    VAD stitches speech regions together before Whisper sees them, and Whisper may then write one segment over
    sentences that were seconds apart (tiny.en did: one 6-52 s line for five sentences). Each line's time must be
    where it is said, so the word times decide the lines.
    """
    if not seg.words or len(seg.words) < 2:
        return [seg]
    groups: list[list[Word]] = [[seg.words[0]]]
    for prev, word in itertools.pairwise(seg.words):
        if word.start - prev.end >= min_gap:
            groups.append([word])
        else:
            groups[-1].append(word)
    if len(groups) == 1:
        return [seg]
    parts = []
    for group in groups:
        text = " ".join(w.word for w in group).strip().rstrip(",;:")
        parts.append(Segment(group[0].start, group[-1].end, text[:1].upper() + text[1:], group))
    return parts


def _clean_segment(seg: Segment, duration: float) -> Segment:
    """Clamp times into [0, duration], strip text and keep word times monotonic inside their segment."""
    start = min(max(0.0, seg.start), duration)
    end = min(max(start, seg.end), duration)
    words = None
    if seg.words is not None:
        words, t = [], start
        for w in seg.words:
            ws = min(max(w.start, t), end)
            we = min(max(w.end, ws), end)
            words.append(
                Word(
                    start=round(float(ws), 3),
                    end=round(float(we), 3),
                    word=w.word.strip(),
                    probability=float(w.probability),
                )
            )
            t = ws
    return Segment(start=round(float(start), 3), end=round(float(end), 3), text=seg.text.strip(), words=words)


def first_line(err: BaseException) -> str:
    """The first line of an error, short enough for a one-line log or message."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
