"""CUDA checks of the GPU profile's encoder path (skipped without CUDA; run on the GPU machine).

The same deterministic random encoder runs in fp32 on the CPU (the reference) and in bf16 on CUDA with the
ViT blocks compiled, as the internvideo2-chat-8b profile runs it. Also runnable without pytest's conftest
(which needs the media stack): `python -m tests.test_gpu`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.internvideo2 import build_chat_encoder
from model.profiles import VisionSpec

pytestmark = pytest.mark.gpu


def _frames(clips: int, frames: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (clips, frames, 240, 320, 3), dtype=np.uint8)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)


def test_compiled_bf16_cuda_encoder_matches_fp32_cpu() -> None:
    spec = VisionSpec(source="random", preset="tiny", frames_per_clip=4, llm_hidden=256, compile=True)
    cpu = build_chat_encoder(VisionSpec(**{**spec.__dict__, "dtype": "fp32"}), "cpu")
    gpu = build_chat_encoder(spec, "cuda")
    assert gpu.dtype == torch.bfloat16 and gpu.device.type == "cuda"
    gpu.vision_encoder.compile_blocks()
    frames = _frames(3, 4)
    want = cpu.encode(frames)  # [3, 96, 256] fp32
    got = gpu.encode(frames)
    assert got.shape == want.shape == (3, 96, 256)
    assert torch.isfinite(got).all()
    assert _cosine(got, want).min() > 0.99, _cosine(got, want)
    assert (got - want).abs().max() / want.abs().max() < 0.05


def test_1b_encoder_cuda_shapes_and_compiled_equals_eager() -> None:
    spec = VisionSpec(source="random", preset="1b", frames_per_clip=8, llm_hidden=4096)
    enc = build_chat_encoder(spec, "cuda")
    frames = _frames(2, 8, seed=1)
    eager = enc.encode(frames)
    enc.vision_encoder.compile_blocks()
    compiled = enc.encode(frames)
    assert eager.shape == (2, 96, 4096) and torch.isfinite(compiled).all()
    assert _cosine(compiled, eager).min() > 0.999
    assert torch.cuda.max_memory_allocated() < 8 * 2**30  # 1B in bf16 + 2 clips fits beside a 7B LLM


if __name__ == "__main__":  # the GPU machine has no media stack for conftest
    for test in (
        test_compiled_bf16_cuda_encoder_matches_fp32_cpu,
        test_1b_encoder_cuda_shapes_and_compiled_equals_eager,
    ):
        test()
        print(f"PASS {test.__name__}")
