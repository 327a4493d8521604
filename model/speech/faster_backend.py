"""The faster-whisper backend (CTranslate2, the default): model resolution (packaged, local folder, size name or
hub id through the Hugging Face cache) and the transcriber, batched with VAD on a GPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.errors import ConfigError, ModelAccessError
from model.profiles import SpeechSpec
from model.sources import is_offline, resolve_model_dir
from model.speech.base import (
    CHECK_SECONDS,
    SAMPLE_RATE,
    VAD_OPTIONS,
    Progress,
    Transcriber,
    WhisperBackendError,
    cpu_threads,
    first_line,
    resolve_compute_type,
)
from model.speech.transcript import Segment, Word

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
                cpu_threads=cpu_threads(),
            )
        except (RuntimeError, ValueError) as err:  # corrupt model.bin, unsupported compute type, CUDA missing
            if ct2_device == "cuda":
                raise WhisperBackendError(f"faster-whisper cannot load on {device}: {first_line(err)}") from err
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
            raise WhisperBackendError(f"faster-whisper cannot run on {self.device}: {first_line(err)}") from err

    def _transcribe(
        self, audio: np.ndarray, duration: float, word_timestamps: bool, progress: Progress | None
    ) -> tuple[list[Segment], str | None]:
        options = {"beam_size": self.beam_size, "vad_parameters": VAD_OPTIONS, "word_timestamps": word_timestamps}
        if self.pipeline is not None:
            # The batched pipeline needs speech chunks: VAD gives them (it cannot run with VAD off).
            raw, info = self.pipeline.transcribe(
                audio, batch_size=self.batch_size, vad_filter=True, without_timestamps=False, **options
            )
        else:
            raw, info = self.model.transcribe(audio, vad_filter=self.vad, **options)
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
