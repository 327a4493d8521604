"""The GPU profile compiles the ViT blocks: ingest's batches (8, then a smaller last one) and one-clip re-samples
must not recompile them mid-upload. Checked on CPU with the tiny preset through torch._dynamo's own counters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from model.internvideo2 import build_chat_encoder
from model.memory import IngestConfig, IngestModels, Ingestor, MemoryCache
from model.profiles import VisionSpec

SPEC = VisionSpec(source="random", preset="tiny", frames_per_clip=4, llm_hidden=64, dtype="fp32")


def _graphs() -> int:
    return int(counters["stats"]["unique_graphs"])


@pytest.mark.slow  # one inductor compile on 2 CPU cores: about two minutes
def test_compiled_encoder_pads_ingest_batches_and_never_recompiles(tmp_path: Path) -> None:
    eager = build_chat_encoder(SPEC, "cpu")
    compiled = build_chat_encoder(SPEC, "cpu")  # the same seeded random weights
    before = _graphs()
    compiled.compile_for_inference(batch_size=4)  # warm-up: the one compile happens here, at load
    assert _graphs() == before + 1

    frames = np.random.default_rng(0).integers(0, 256, (7, 4, 48, 64, 3), dtype=np.uint8)
    ingest = Ingestor(IngestModels(encoder=compiled), IngestConfig(encode_batch_clips=4), MemoryCache(tmp_path))
    warmed = _graphs()
    got = ingest.encode_clips(frames)  # batches of 4 and 3
    one = compiled.encode(frames[:1])  # a dense re-sample: one clip
    two = compiled.encode(frames[:2])
    assert _graphs() == warmed, "a batch size other than the compiled one recompiled the blocks"

    want = eager.encode(frames)
    assert got is not None and got.shape == (7, 96, 64)
    torch.testing.assert_close(got.float(), want, atol=2e-3, rtol=2e-3)  # fp16 storage of the records
    torch.testing.assert_close(one, want[:1], atol=1e-4, rtol=1e-4)  # padding rows change no real row
    torch.testing.assert_close(two, want[:2], atol=1e-4, rtol=1e-4)
