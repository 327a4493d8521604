"""Whisper transcription: faster-whisper (CTranslate2, default) or openai-whisper (PyTorch).

`build_transcriber(spec, device)` resolves the model source once (packaged, local folder/file, or a hub
name/id through the Hugging Face cache) and returns a `Transcriber` whose `transcribe()` gives a `Transcript`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path

from model.errors import ConfigError, ModelAccessError
from model.profiles import SpeechSpec
from model.speech.base import (
    BACKENDS,
    SAMPLE_RATE,
    Transcriber,
    WhisperBackendError,
    resolve_compute_type,
    split_on_pauses,
)
from model.speech.faster_backend import FasterWhisperTranscriber, resolve_faster_whisper_model, whisper_repo_id
from model.speech.openai_backend import OpenAIWhisperTranscriber, resolve_openai_whisper_checkpoint

# the names callers import from here (their homes: base, faster_backend, openai_backend)
__all__ = [
    "SAMPLE_RATE",
    "FasterWhisperTranscriber",
    "OpenAIWhisperTranscriber",
    "Transcriber",
    "WhisperBackendError",
    "build_transcriber",
    "resolve_compute_type",
    "resolve_faster_whisper_model",
    "resolve_openai_whisper_checkpoint",
    "split_on_pauses",
    "whisper_repo_id",
]

log = logging.getLogger(__name__)


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
