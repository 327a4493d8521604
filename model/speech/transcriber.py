"""Whisper transcription: faster-whisper (CTranslate2, default) or openai-whisper (PyTorch).

`build_transcriber(spec, device)` resolves the model source once (packaged, local folder/file, or a hub
name/id through the Hugging Face cache) and returns a `Transcriber` whose `transcribe()` gives a `Transcript`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
import pickle
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from model.errors import ConfigError, ModelAccessError
from model.profiles import SpeechSpec
from model.sources import is_offline, resolve_model_dir
from model.speech.transcript import AudioInputError, Segment, Transcript, Word

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
BACKENDS = ("faster-whisper", "openai-whisper")
# Silero VAD: faster-whisper's defaults (2 s min silence, 400 ms pad) keep pauses inside chunks, and Whisper then
# stretches a sentence's last word over the pause; shorter pauses split chunks so times stay on the speech.
VAD_OPTIONS: dict[str, float] = {"min_silence_duration_ms": 500, "speech_pad_ms": 200}
PAUSE_SPLIT_S = 1.0  # a pause this long between words starts a new transcript line
CHECK_SECONDS = 1.0  # audio transcribed at load on CUDA to prove the backend runs there
Progress = Callable[[str, float], None]
AudioInput = np.ndarray | str | os.PathLike | None


def _cpu_threads() -> int:
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


# --------------------------------------------------------------------------------------------- faster-whisper


# The files faster-whisper loads (its own download_model fetches the same).
CT2_FILES = ["config.json", "preprocessor_config.json", "model.bin", "tokenizer.json", "vocabulary.*"]


def whisper_repo_id(source: str) -> str:
    """A Whisper size name ("tiny.en", "large-v3-turbo") -> its faster-whisper hub repo; hub ids pass through."""
    if "/" in source:
        return source
    from faster_whisper.utils import _MODELS  # faster-whisper's own size -> repo table (no public accessor)

    if source not in _MODELS:
        raise ConfigError(f"Unknown Whisper model {source!r}; sizes: {', '.join(_MODELS)}, or a hub id / local folder")
    return _MODELS[source]


def resolve_faster_whisper_model(source: str) -> str:
    """A CTranslate2 Whisper folder for `source`: packaged:NAME, a local folder, or a size name / hub id.

    Hub models go through the Hugging Face cache (model.sources); offline (HF_HUB_OFFLINE=1) only a cached copy is used.
    """
    if not source.startswith("packaged:") and not Path(source).expanduser().exists():
        source = whisper_repo_id(source)
    try:
        path = resolve_model_dir(source, allow_patterns=CT2_FILES, what="Whisper model")
    except ModelAccessError as err:
        hint = " (offline: download it once with internet, or use a packaged/local model)" if is_offline() else ""
        raise ModelAccessError(f"{err}{hint}") from err
    if not (path / "model.bin").is_file():
        raise ModelAccessError(f"{path} is not a faster-whisper (CTranslate2) model folder: no model.bin inside.")
    return str(path)


class FasterWhisperTranscriber(Transcriber):
    backend = "faster-whisper"

    def __init__(self, spec: SpeechSpec, device: str, batch_size: int | None = None, beam_size: int = 5) -> None:
        super().__init__(spec, device)
        self.beam_size = beam_size
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        self.model_path = resolve_faster_whisper_model(spec.model)
        self.compute_type = resolve_compute_type(spec.compute_type, device)
        ct2_device = "cuda" if device.startswith("cuda") else "cpu"
        device_index = int(device.split(":")[1]) if ":" in device else 0
        try:
            self.model = WhisperModel(
                self.model_path,
                device=ct2_device,
                device_index=device_index,
                compute_type=self.compute_type,
                cpu_threads=_cpu_threads(),
            )
        except (RuntimeError, ValueError) as err:  # corrupt model.bin, unsupported compute type, CUDA missing
            if ct2_device == "cuda":
                raise WhisperBackendError(f"faster-whisper cannot load on {device}: {_first_line(err)}") from err
            raise ModelAccessError(f"Could not load the Whisper model {self.model_path}: {err}") from err
        self.multilingual = bool(self.model.model.is_multilingual)
        # Batching pays off on a GPU; on CPU the sequential decoder (with its previous-text context) is as fast.
        self.batch_size = batch_size if batch_size is not None else (16 if ct2_device == "cuda" else 1)
        self.pipeline = BatchedInferencePipeline(self.model) if self.batch_size > 1 else None

    def check(self, seconds: float = CHECK_SECONDS) -> None:
        """Transcribe `seconds` of quiet noise end to end (encoder and decoder). CTranslate2 loads cuBLAS/cuDNN
        only at the first run, so a model that builds can still fail at every upload; this finds out at load."""
        audio = (np.random.default_rng(0).standard_normal(int(seconds * SAMPLE_RATE)) * 1e-3).astype(np.float32)
        try:
            segments, _ = self.model.transcribe(
                audio,
                language="en",
                beam_size=1,
                vad_filter=False,
                without_timestamps=True,
                condition_on_previous_text=False,
                max_new_tokens=4,
            )
            list(segments)  # a generator: decoding runs here
        except (RuntimeError, OSError, ValueError) as err:  # "Library libcublas.so.12 is not found ..."
            raise WhisperBackendError(f"faster-whisper cannot run on {self.device}: {_first_line(err)}") from err

    def _transcribe(
        self, audio: np.ndarray, duration: float, word_timestamps: bool, progress: Progress | None
    ) -> tuple[list[Segment], str | None]:
        if self.pipeline is not None:
            # The batched pipeline needs speech chunks: VAD gives them (it cannot run with VAD off).
            raw, info = self.pipeline.transcribe(
                audio,
                batch_size=self.batch_size,
                beam_size=self.beam_size,
                vad_filter=True,
                vad_parameters=VAD_OPTIONS,
                word_timestamps=word_timestamps,
                without_timestamps=False,
            )
        else:
            raw, info = self.model.transcribe(
                audio,
                beam_size=self.beam_size,
                vad_filter=self.vad,
                vad_parameters=VAD_OPTIONS,
                word_timestamps=word_timestamps,
            )
        segments = []
        for s in raw:  # a generator: decoding happens while we iterate
            words = None
            if word_timestamps:
                words = [Word(w.start, w.end, w.word, w.probability) for w in (s.words or [])]
            segments.append(Segment(start=s.start, end=s.end, text=s.text, words=words))
            if progress and duration > 0:
                progress("transcribing", float(min(1.0, s.end / duration)))
        language = info.language if self.multilingual else "en"
        return segments, language


# --------------------------------------------------------------------------------------------- openai-whisper


def resolve_openai_whisper_checkpoint(source: str) -> str:
    """What openai-whisper loads for `source`: a local .pt file, or a size name `whisper.load_model` can get.

    CTranslate2 folders (packaged:NAME, a local faster-whisper folder, or offline a faster-whisper copy of the
    size in the Hugging Face cache) are converted once into a cached .pt (model/speech/convert.py): they hold
    the same float16 weights, and openai-whisper's own checkpoints need a download.
    """
    from model.speech.convert import openai_checkpoint_for

    if source.startswith("packaged:"):
        return str(openai_checkpoint_for(resolve_model_dir(source, what="Whisper model"), source))
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ModelAccessError(
                f"{path} is a folder without model.bin; openai-whisper loads a .pt checkpoint or a CTranslate2 folder."
            )
        return str(openai_checkpoint_for(path, path.name))
    if path.is_file():
        return str(path)
    import whisper

    if source not in whisper._MODELS:
        raise ConfigError(f"Unknown openai-whisper model {source!r}; sizes: {', '.join(whisper.available_models())}")
    cached = Path(_openai_download_root()) / os.path.basename(whisper._MODELS[source])
    if cached.is_file() or not is_offline():
        return source
    try:  # offline: faster-whisper's copy of the same size, if the Hugging Face cache has it
        ct2_dir = Path(resolve_faster_whisper_model(source))
    except (ModelAccessError, ConfigError):
        raise ModelAccessError(
            f"openai-whisper model {source!r} is not cached at {cached}, nor is faster-whisper's copy in the "
            f"Hugging Face cache, and this machine is offline; use a packaged model (packaged:tiny.en, "
            f"packaged:base) or a local .pt checkpoint."
        ) from None
    return str(openai_checkpoint_for(ct2_dir, f"hf-{source}"))


def load_openai_checkpoint(path: str, device: str):
    """openai-whisper's `load_model` for a local file, plus the alignment heads a converted checkpoint carries."""
    import torch
    import whisper

    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = whisper.Whisper(whisper.ModelDimensions(**checkpoint["dims"]))
    model.load_state_dict(checkpoint["model_state_dict"])
    heads = checkpoint.get("alignment_heads")
    if heads:  # word timestamps use these cross-attention heads (default: all heads of the last half)
        mask = torch.zeros(model.dims.n_text_layer, model.dims.n_text_head, dtype=torch.bool)
        for layer, head in heads:
            mask[layer, head] = True
        model.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)
    return model.to(device)


def _openai_download_root() -> str:
    return os.path.join(os.getenv("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "whisper")


_OPENAI_LOCK = threading.Lock()


class _FrameProgress:
    """Stands in for the tqdm bar inside `whisper.transcribe`: mel frames decoded -> progress fraction."""

    def __init__(self, total: int, progress: Progress) -> None:
        self.total, self.done, self.progress = max(1, int(total)), 0, progress

    def __enter__(self) -> _FrameProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        self.done += max(0, int(n))
        self.progress("transcribing", min(1.0, self.done / self.total))


@contextmanager
def _openai_progress(progress: Progress | None, frames: int | None = None):
    """Report openai-whisper's progress (it only has a tqdm bar) through `progress`, one call at a time.

    The bar counts the mel frames decoded (100 a second) out of the whole audio; with VAD clips only the clips
    are decoded, so `frames` (the clips' total) is the better denominator.
    """
    module = sys.modules.get("whisper.transcribe")
    with _OPENAI_LOCK:  # the bar is a module global; the lock also keeps one decode per model at a time
        if progress is None or module is None or not hasattr(module, "tqdm"):
            yield
            return
        original = module.tqdm
        module.tqdm = SimpleNamespace(tqdm=lambda total=None, **_: _FrameProgress(frames or total or 1, progress))
        try:
            yield
        finally:
            module.tqdm = original


class OpenAIWhisperTranscriber(Transcriber):
    backend = "openai-whisper"

    def __init__(self, spec: SpeechSpec, device: str, beam_size: int = 5) -> None:
        super().__init__(spec, device)
        import whisper

        # Beam search as faster-whisper (and openai-whisper's CLI) decode; whisper.transcribe() alone is greedy.
        self.beam_size = beam_size
        self.model_path = resolve_openai_whisper_checkpoint(spec.model)
        try:
            if Path(self.model_path).is_file():
                self.model = load_openai_checkpoint(self.model_path, device)
            else:
                self.model = whisper.load_model(self.model_path, device=device, download_root=_openai_download_root())
        except (OSError, RuntimeError, KeyError, TypeError, pickle.UnpicklingError) as err:
            # download failed (URLError is an OSError), not a checkpoint, or one of another architecture
            raise ModelAccessError(f"Could not load the openai-whisper model {spec.model!r}: {err}") from err
        self.multilingual = bool(self.model.is_multilingual)
        self.fp16 = device.startswith("cuda") and spec.compute_type in ("auto", "float16")

    def _transcribe(
        self, audio: np.ndarray, duration: float, word_timestamps: bool, progress: Progress | None
    ) -> tuple[list[Segment], str | None]:
        import whisper

        clips: list[float] | str = "0"
        speech_start, clip_frames = 0, None
        if self.vad:
            # Same Silero VAD as faster-whisper; openai-whisper then decodes only the speech regions.
            from faster_whisper.vad import VadOptions, get_speech_timestamps

            regions = get_speech_timestamps(audio, VadOptions(**VAD_OPTIONS))
            if not regions:
                return [], None
            clips = [t / SAMPLE_RATE for r in regions for t in (r["start"], r["end"])]
            speech_start = regions[0]["start"]
            clip_frames = sum(round(b * 100) - round(a * 100) for a, b in zip(clips[::2], clips[1::2], strict=True))
        language = "en"
        if self.multilingual:
            # whisper.transcribe detects the language on the first 30 s of the audio even when the speech starts
            # later; detect it on the 30 s from the first speech instead.
            window = whisper.pad_or_trim(audio[speech_start:])
            mel = whisper.log_mel_spectrogram(window, self.model.dims.n_mels).to(self.model.device)
            _, probs = self.model.detect_language(mel.half() if self.fp16 else mel)
            language = max(probs, key=probs.get)
        import torch

        # A window that fails Whisper's quality checks is decoded again by sampling: seed it (without touching
        # the caller's random state) so the same audio always gives the same transcript.
        cuda = [self.model.device.index or 0] if self.model.device.type == "cuda" else []
        with _openai_progress(progress, clip_frames), torch.random.fork_rng(devices=cuda):
            torch.manual_seed(0)
            result = whisper.transcribe(
                self.model,
                audio,
                verbose=None,
                word_timestamps=word_timestamps,
                clip_timestamps=clips,
                fp16=self.fp16,
                language=language,
                beam_size=self.beam_size if self.beam_size > 1 else None,
                best_of=5,  # candidates sampled when a window falls back to a higher temperature
            )
        segments = []
        for s in result["segments"]:
            words = None
            if word_timestamps:
                words = [Word(w["start"], w["end"], w["word"], w["probability"]) for w in s.get("words", [])]
            segments.append(Segment(start=float(s["start"]), end=float(s["end"]), text=s["text"], words=words))
        return segments, language


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]


def _openai_fallback(spec: SpeechSpec, device: str, err: WhisperBackendError) -> Transcriber:
    """openai-whisper (PyTorch: torch's own CUDA libraries) for a faster-whisper model that cannot run on `device`.

    It runs on `device` when torch has CUDA, else on the CPU. A size name or hub id is served from the CTranslate2
    folder faster-whisper already has (converted once, losslessly) rather than downloaded a second time.
    """
    import torch

    target = device if device.startswith("cuda") and torch.cuda.is_available() else "cpu"
    source = spec.model
    if not source.startswith("packaged:") and not Path(source).expanduser().exists():
        with contextlib.suppress(ModelAccessError, ConfigError):  # else openai-whisper resolves the size itself
            source = resolve_faster_whisper_model(source)
    log.warning("%s; transcribing with openai-whisper (PyTorch) on %s instead", err, target)
    model = OpenAIWhisperTranscriber(dataclasses.replace(spec, backend="openai-whisper", model=source), target)
    model.model_name = spec.model
    model.fallback_reason = str(err)
    return model


def build_transcriber(spec: SpeechSpec, device: str) -> Transcriber:
    """Load the profile's Whisper model on `device` ("cpu", "cuda", "cuda:1").

    On CUDA, faster-whisper must also transcribe one second at load (`check`); when CTranslate2 cannot load or run
    there, openai-whisper takes over (`Transcriber.fallback_reason` says why) instead of every upload failing.
    """
    if spec.backend == "faster-whisper":
        if not device.startswith("cuda"):
            return FasterWhisperTranscriber(spec, device)
        try:
            model = FasterWhisperTranscriber(spec, device)
            model.check()
            return model
        except WhisperBackendError as err:
            return _openai_fallback(spec, device, err)
    if spec.backend == "openai-whisper":
        return OpenAIWhisperTranscriber(spec, device)
    raise ConfigError(f"Unknown speech backend {spec.backend!r}; choose one of: {', '.join(BACKENDS)}")
