"""`launch.py bench asr [VIDEO] --json`: real-time factor of each Whisper backend and model on this machine.

faster-whisper (CTranslate2, int8 on CPU) and openai-whisper (PyTorch) run the same checkpoints: the packaged
CTranslate2 models, converted once for openai-whisper (model/speech/convert.py). Each pair is loaded, warmed
up (openai-whisper compiles its word-alignment code with numba on first use), then timed on the whole audio;
the best of `--repeats` is reported. Without VIDEO an espeak-ng speech video is generated (tools/synth.py),
and its known sentences give a word-match score.
"""

from __future__ import annotations

import argparse
import difflib
import os
import platform
import re
import shutil
import tempfile
import time
from pathlib import Path

DEFAULT_MODELS = "packaged:tiny.en,packaged:base"
DEFAULT_BACKENDS = "faster-whisper,openai-whisper"
SYNTH_SENTENCES = [
    (2.0, "The red ball is bouncing on the table."),
    (6.5, "My favorite fruit is a green apple."),
    (11.0, "Seven boats sailed across the quiet lake."),
    (16.0, "The old clock on the wall stopped at noon."),
    (21.0, "Please bring two cups of tea to the kitchen."),
    (26.0, "A small dog is sleeping under the wooden chair."),
]
SYNTH_DURATION = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", nargs="?", default=None, help="a video or audio file (default: a generated one)")
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated model sources")
    parser.add_argument("--backends", default=DEFAULT_BACKENDS, help="comma-separated backends")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per pair (best is reported)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--beam-size", type=int, default=5, help="both backends (5: the app's setting; 1: greedy)")
    parser.add_argument(
        "--word-timestamps", action="store_true", help="also return words (segment times use them anyway)"
    )


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower().replace("favourite", "favorite"))


def _machine(device: str) -> dict:
    import torch

    info = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _load_pair(backend: str, model: str, audio, args: argparse.Namespace) -> dict:
    from model.profiles import SpeechSpec
    from model.speech import build_transcriber

    t0 = time.perf_counter()
    transcriber = build_transcriber(SpeechSpec(backend=backend, model=model), args.device)
    load_s = time.perf_counter() - t0
    transcriber.beam_size = args.beam_size
    t0 = time.perf_counter()
    transcriber.transcribe(audio, word_timestamps=args.word_timestamps)  # warm-up (JIT, allocator, caches)
    warmup_s = time.perf_counter() - t0
    return {"transcriber": transcriber, "load_s": load_s, "warmup_s": warmup_s, "runs": [], "transcript": None}


def _timed(pair: dict, audio, args: argparse.Namespace) -> None:
    import torch

    torch.manual_seed(0)  # openai-whisper samples when it falls back to a higher temperature
    t0 = time.perf_counter()
    pair["transcript"] = pair["transcriber"].transcribe(audio, word_timestamps=args.word_timestamps)
    pair["runs"].append(time.perf_counter() - t0)


def _row(backend: str, model: str, pair: dict, duration: float, reference: str | None) -> dict:
    transcriber, transcript = pair["transcriber"], pair["transcript"]
    best = min(pair["runs"])
    row = {
        "backend": backend,
        "model": model,
        "model_path": transcriber.model_path,
        "precision": getattr(transcriber, "compute_type", None)
        or ("float16" if getattr(transcriber, "fp16", False) else "float32"),
        "load_s": round(pair["load_s"], 3),
        "warmup_s": round(pair["warmup_s"], 3),
        "transcribe_s": [round(r, 3) for r in pair["runs"]],
        "best_s": round(best, 3),
        "rtf": round(best / duration, 4),  # seconds of compute per second of audio (< 1: faster than real time)
        "x_realtime": round(duration / best, 1),
        "language": transcript.language,
        "segments": len(transcript.segments),
        "text": transcript.text,
    }
    if reference is not None:
        row["word_match"] = round(difflib.SequenceMatcher(a=_words(transcript.text), b=_words(reference)).ratio(), 3)
    return row


def run(args: argparse.Namespace) -> dict:
    from model.media import load_audio

    tmp = None
    reference = None
    source = {}
    path = args.video
    if path is None:
        from tools.synth import make_speech_video

        tmp = Path(tempfile.mkdtemp(prefix="bench-asr-"))
        synth = make_speech_video(tmp / "speech.mp4", SYNTH_SENTENCES, SYNTH_DURATION, clock=False)
        path = str(synth.path)
        reference = " ".join(s.text for s in synth.sentences)
        source = {"generated": True, "sentences": [s._asdict() for s in synth.sentences]}
    try:
        audio = load_audio(path, sr=16000)
        if audio is None:
            return {"video": str(args.video), "error": "the file has no audio stream: nothing to transcribe"}
        duration = audio.shape[0] / 16000
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        backends = [b.strip() for b in args.backends.split(",") if b.strip()]
        load_before = os.getloadavg()
        pairs, not_compared = {}, []
        for model in models:
            for backend in backends:
                try:
                    pairs[(backend, model)] = _load_pair(backend, model, audio, args)
                except Exception as err:
                    not_compared.append({"backend": backend, "model": model, "why": f"{type(err).__name__}: {err}"})
        for _ in range(max(1, args.repeats)):  # interleaved: every pair sees the same share of the machine's load
            for pair in pairs.values():
                _timed(pair, audio, args)
        results = [_row(backend, model, pair, duration, reference) for (backend, model), pair in pairs.items()]
        not_compared.append({
            "backend": "both",
            "model": "large-v3-turbo (the GPU profile's model)",
            "why": "no copy of it installs offline (only tiny.en and base ship inside PyPI packages); "
            "with internet run e.g. --models large-v3-turbo --device cuda",
        })  # fmt: skip
        if "openai-whisper" in backends and not args.device.startswith("cuda"):
            not_compared.append({
                "backend": "openai-whisper",
                "model": "int8",
                "why": "openai-whisper has no int8 CPU path: it runs the same weights in float32 on CPU, while "
                "faster-whisper runs int8; the figures compare the two runtimes as each is used on a CPU",
            })  # fmt: skip
        speedups = {}
        for model in models:
            by_backend = {r["backend"]: r for r in results if r["model"] == model}
            if {"faster-whisper", "openai-whisper"} <= by_backend.keys():
                speedups[model] = round(
                    by_backend["openai-whisper"]["best_s"] / by_backend["faster-whisper"]["best_s"], 2
                )
        return {
            "video": args.video or "generated (deleted after the run)",
            "source": source,
            "audio_s": round(duration, 3),
            "word_timestamps": args.word_timestamps,  # word alignment runs either way: segment times snap to words
            "repeats": args.repeats,
            "beam_size": args.beam_size,
            "machine": _machine(args.device),
            "load_average_1m": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
            "results": results,
            "faster_whisper_speedup": speedups,  # openai-whisper time / faster-whisper time, same model
            "not_compared": not_compared,
        }
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
