"""`launch.py bench encoder`: chat-encoder throughput (clips/s), achieved TFLOP/s, MFU, peak memory,
and the same run with naive (materialised-softmax) attention for comparison.

FLOPs are counted analytically (2 per multiply-add): patch embedding, the built ViT blocks (projections,
MLP, QK^T and PV), and the Q-Former bridge (self/cross attention, FFNs) plus project_up.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator

import torch

from model.internvideo2.bridge import BridgeConfig
from model.internvideo2.vit import Attention, vit_flops
from model.profiles import VisionSpec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="tiny", help="ViT preset: 1b | 6b | l14 | b14 | s14 | tiny")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--dtype", default="auto", help="auto | bf16 | fp16 | fp32")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--llm-hidden", type=int, default=4096)
    parser.add_argument(
        "--peak-tflops", type=float, default=800.0, help="accelerator peak for MFU (H100 bf16 dense ~800)"
    )
    parser.add_argument("--no-naive", action="store_true", help="skip the naive-attention comparison run")
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the ViT blocks (the naive run stays eager)"
    )


def bridge_flops(cfg: BridgeConfig, vision_tokens: int) -> float:
    q, h, i = cfg.num_queries, cfg.hidden, cfg.intermediate
    cross_layers = len(range(0, cfg.layers, cfg.cross_attention_frequency))
    self_attn = cfg.layers * (2 * q * 4 * h * h + 2 * 2 * q * q * h)
    cross = cross_layers * (
        2 * q * 2 * h * h + 2 * vision_tokens * 2 * cfg.vision_width * h + 2 * 2 * q * vision_tokens * h
    )
    ffn = cfg.layers * 2 * q * 2 * h * i
    return float(self_attn + cross + ffn + 2 * q * h * cfg.llm_hidden)


@contextlib.contextmanager
def naive_attention() -> Iterator[None]:
    """Run the ViT with explicit-softmax attention (the official non-flash path) inside this block."""
    saved = Attention.naive
    Attention.naive = True
    try:
        yield
    finally:
        Attention.naive = saved


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time_run(encoder, pixels: torch.Tensor, iters: int, warmup: int, device: str) -> dict[str, float]:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        for _ in range(warmup):
            encoder(pixels)
        _sync(device)
        start = time.perf_counter()
        for _ in range(iters):
            encoder(pixels)
        _sync(device)
    seconds = (time.perf_counter() - start) / iters
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    return {"seconds_per_batch": seconds, "peak_memory_gib": peak}


def _cpu_peak_rss_gib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def run(args: argparse.Namespace) -> dict:
    from model.internvideo2.loading import build_chat_encoder, resolve_dtype

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype_name = args.dtype
    if device == "cpu" and dtype_name in ("bf16", "auto"):
        # bf16 matmuls on CPU run only where the CPU supports them fast; else fall back to fp32
        dtype_name = "bf16" if dtype_name == "bf16" and torch.backends.mkldnn.is_available() else "fp32"
    llm_hidden = 576 if args.preset == "tiny" and args.llm_hidden == 4096 else args.llm_hidden
    spec = VisionSpec(
        source="random", preset=args.preset, frames_per_clip=args.frames, llm_hidden=llm_hidden, dtype=dtype_name
    )
    encoder = build_chat_encoder(spec, device)
    dtype = resolve_dtype(dtype_name, device)
    pixels = torch.randn(args.batch, args.frames, 3, 224, 224, device=device, dtype=dtype)

    vit_cfg = encoder.vit_cfg
    tokens = 1 + args.frames * vit_cfg.grid**2
    flops_clip = vit_flops(vit_cfg, args.frames, encoder.vision_encoder.num_blocks) + bridge_flops(
        encoder.bridge_cfg, tokens
    )
    naive = None
    if not args.no_naive and args.compile:  # eager naive run before the blocks are compiled
        naive = _naive_run(encoder, pixels, args, device)
    if args.compile:
        encoder.vision_encoder.compile_blocks(dynamic=False)
    fast = _time_run(encoder, pixels, args.iters, args.warmup, device)
    tflops = flops_clip * args.batch / fast["seconds_per_batch"] / 1e12
    result: dict = {
        "preset": args.preset,
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "frames": args.frames,
        "batch": args.batch,
        "tokens_per_clip": tokens,
        "vit_blocks": encoder.vision_encoder.num_blocks,
        "gflops_per_clip": flops_clip / 1e9,
        "attention": "flash-attn" if _uses_flash(device, dtype) else "sdpa",
        "compiled": bool(args.compile),
        "clips_per_s": args.batch / fast["seconds_per_batch"],
        "seconds_per_batch": fast["seconds_per_batch"],
        "achieved_tflops": tflops,
        "peak_memory_gib": fast["peak_memory_gib"] if fast["peak_memory_gib"] is not None else _cpu_peak_rss_gib(),
        "peak_memory_kind": "cuda max allocated" if device.startswith("cuda") else "process max RSS",
    }
    if device.startswith("cuda"):
        result["peak_tflops"] = args.peak_tflops
        result["mfu"] = tflops / args.peak_tflops
    if not args.no_naive and naive is None:
        naive = _naive_run(encoder, pixels, args, device)
    if naive is not None and naive.get("seconds_per_batch"):
        result["naive_clips_per_s"] = args.batch / naive["seconds_per_batch"]
        result["naive_peak_memory_gib"] = naive["peak_memory_gib"]
        result["speedup_vs_naive"] = naive["seconds_per_batch"] / fast["seconds_per_batch"]
    elif naive is not None:
        result["naive_clips_per_s"] = None
        result["naive_note"] = "naive attention ran out of memory"
    return result


def _naive_run(encoder, pixels: torch.Tensor, args: argparse.Namespace, device: str) -> dict:
    """The same encoder with explicit-softmax attention, eager (the official non-flash path)."""
    try:
        with naive_attention():
            return _time_run(encoder, pixels, max(1, args.iters // 2), 1, device)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return {"seconds_per_batch": None, "peak_memory_gib": None}


def _uses_flash(device: str, dtype: torch.dtype) -> bool:
    import model.internvideo2.vit as vit_mod

    return (
        vit_mod.flash_attn_func is not None and device.startswith("cuda") and dtype in (torch.float16, torch.bfloat16)
    )
