"""The openai-whisper backend (PyTorch): checkpoint resolution (a .pt, a size name, or a CTranslate2 folder
converted once), its progress bar turned into progress calls, and the transcriber (beam search, VAD clips)."""

from __future__ import annotations

import os
import pickle
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from model.errors import ConfigError, ModelAccessError
from model.profiles import SpeechSpec
from model.sources import is_offline, resolve_model_dir
from model.speech.base import SAMPLE_RATE, VAD_OPTIONS, Progress, Transcriber
from model.speech.faster_backend import resolve_faster_whisper_model
from model.speech.transcript import Segment, Word


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
