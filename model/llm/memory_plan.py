"""How much GPU memory in-process vLLM may take, from what is really free when it starts (pure arithmetic).

vLLM starts last, after the encoder, the retrieval model and Whisper are on the same GPU, and it refuses to start
unless the free memory is at least `gpu_memory_utilization x total`. A fixed fraction is wrong both ways: 0.55 of a
24 GB card is more than is free there, and 0.55 of an H200 is 77 GiB the LLM does not need. The plan instead asks
for the weights, vLLM's own overhead and the KV cache for `sequences` full-length requests, capped by what is free
after keeping `reserve` for the other models' working memory (their activations while the LLM answers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from model.llm.errors import EngineError

GIB = 1 << 30
# Working memory the other models need while vLLM runs: the compiled 1B encoder at 8 clips (~1 GiB of activations
# on an H200), the stage-2 retrieval model and batched Whisper (~1.5 GiB).
WORKING_RESERVE = 3 * GIB
# vLLM's memory beside weights and KV cache: its CUDA context, the profiling run's activation peak, CUDA graphs.
VLLM_OVERHEAD = 3 * GIB
MARGIN = GIB // 2  # what the driver and allocator rounding take between our reading and vLLM's own
SEQUENCES = 8  # full-length requests the KV cache should hold when memory allows (the app's default concurrency)

_FP8 = ("fp8", "fp8_per_tensor", "fp8_per_block", "fp8_per_channel")
_INT4 = ("awq", "gptq", "awq_marlin", "gptq_marlin", "auto_awq", "auto_gptq", "bitsandbytes")


@dataclass(frozen=True)
class LLMMemory:
    """What one LLM needs: its weights in the serving format, and the KV cache per token."""

    params: int
    weight_bytes: int
    kv_bytes_per_token: int


def llm_memory(cfg: dict[str, Any], quantization: str | None = None, dtype_bytes: int = 2) -> LLMMemory:
    """Weights and KV bytes of a decoder-only transformer from its config.json values.

    fp8 stores the linear layers in 1 byte and keeps embeddings and lm_head in the model dtype; 4-bit methods about
    half a byte plus scales. The KV cache is in the model dtype (2 bytes: k and v, per layer, per KV head).
    """
    hidden = int(cfg["hidden_size"])
    layers = int(cfg["num_hidden_layers"])
    heads = int(cfg["num_attention_heads"])
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    inter = int(cfg["intermediate_size"])
    vocab = int(cfg["vocab_size"])
    per_layer = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2 + 3 * hidden * inter
    linear = layers * per_layer
    embeddings = vocab * hidden * (1 if cfg.get("tie_word_embeddings") else 2)
    norms = (2 * layers + 1) * hidden
    q = (quantization or "").lower()
    linear_bytes = 1.0 if q in _FP8 else 0.5625 if q in _INT4 else float(dtype_bytes)
    weight_bytes = int(linear * linear_bytes) + (embeddings + norms) * dtype_bytes
    kv = 2 * layers * kv_heads * head_dim * dtype_bytes
    return LLMMemory(params=linear + embeddings + norms, weight_bytes=weight_bytes, kv_bytes_per_token=kv)


@dataclass(frozen=True)
class MemoryPlan:
    total_bytes: int
    free_bytes: int  # free at vLLM's start (after the other models loaded and torch's cache was emptied)
    reserve_bytes: int
    weight_bytes: int
    overhead_bytes: int
    kv_bytes_per_token: int
    max_model_len: int
    budget_bytes: int  # what vLLM may take: gpu_memory_utilization x total
    gpu_memory_utilization: float

    @property
    def kv_cache_bytes(self) -> int:
        return self.budget_bytes - self.weight_bytes - self.overhead_bytes

    @property
    def kv_tokens(self) -> int:
        return self.kv_cache_bytes // self.kv_bytes_per_token

    @property
    def full_sequences(self) -> float:
        return self.kv_tokens / self.max_model_len

    def as_dict(self) -> dict[str, float]:
        return {
            "total_gib": self.total_bytes / GIB,
            "free_gib": self.free_bytes / GIB,
            "reserve_gib": self.reserve_bytes / GIB,
            "weights_gib": self.weight_bytes / GIB,
            "overhead_gib": self.overhead_bytes / GIB,
            "kv_cache_gib": self.kv_cache_bytes / GIB,
            "kv_tokens": float(self.kv_tokens),
            "full_sequences": self.full_sequences,
            "budget_gib": self.budget_bytes / GIB,
            "gpu_memory_utilization": self.gpu_memory_utilization,
        }

    def summary(self) -> str:
        g = self.as_dict()
        return (
            f"GPU memory plan: {g['total_gib']:.1f} GiB card, {g['free_gib']:.1f} GiB free at LLM start; "
            f"vLLM takes {g['budget_gib']:.1f} GiB (gpu_memory_utilization {self.gpu_memory_utilization:.3f}) = "
            f"weights {g['weights_gib']:.1f} + overhead {g['overhead_gib']:.1f} + KV cache {g['kv_cache_gib']:.1f} "
            f"({self.kv_tokens} tokens, {self.full_sequences:.1f} x {self.max_model_len}); "
            f"{g['reserve_gib']:.1f} GiB kept for the encoder, retrieval and Whisper"
        )


def plan_vllm_memory(
    total_bytes: int,
    free_bytes: int,
    llm: LLMMemory,
    max_model_len: int,
    reserve_bytes: int = WORKING_RESERVE,
    overhead_bytes: int = VLLM_OVERHEAD,
    sequences: int = SEQUENCES,
    margin_bytes: int = MARGIN,
    cap_utilization: float = 0.95,
) -> MemoryPlan:
    """vLLM's share of the card: enough for `sequences` full requests, never more than is free after `reserve`.

    Raises EngineError (with what would fit) when not even one `max_model_len` request fits.
    """
    available = free_bytes - reserve_bytes - margin_bytes
    limit = min(available, int(total_bytes * cap_utilization))
    one_sequence = llm.kv_bytes_per_token * max_model_len
    minimum = llm.weight_bytes + overhead_bytes + one_sequence
    if limit < minimum:
        room = limit - llm.weight_bytes - overhead_bytes
        fits = max(0, room // llm.kv_bytes_per_token)
        if fits >= 2048:
            advice = f"set the LLM's max_model_len to {fits // 1024 * 1024} or less"
        else:
            advice = "use quantization=fp8, a larger GPU, or serve the LLM elsewhere (--llm-url)"
        if limit < available:
            advice += f", or raise gpu_memory_utilization above {cap_utilization}"
        raise EngineError(
            f"The LLM does not fit on this GPU: {free_bytes / GIB:.1f} of {total_bytes / GIB:.1f} GiB are free "
            f"after the other models, {limit / GIB:.1f} GiB of it usable by the LLM; it needs {minimum / GIB:.1f} GiB "
            f"(weights {llm.weight_bytes / GIB:.1f}, overhead {overhead_bytes / GIB:.1f}, one {max_model_len}-token "
            f"request {one_sequence / GIB:.1f}; {(reserve_bytes + margin_bytes) / GIB:.1f} GiB stay for the other "
            f"models); {advice}."
        )
    wanted = llm.weight_bytes + overhead_bytes + one_sequence * max(1, sequences)
    budget = min(limit, wanted)
    # floored to 1e-3 so that vLLM's ceil(total x utilization) never exceeds the budget (nor the free memory)
    utilization = math.floor(budget / total_bytes * 1000) / 1000
    return MemoryPlan(
        total_bytes=total_bytes,
        free_bytes=free_bytes,
        reserve_bytes=reserve_bytes,
        weight_bytes=llm.weight_bytes,
        overhead_bytes=overhead_bytes,
        kv_bytes_per_token=llm.kv_bytes_per_token,
        max_model_len=max_model_len,
        budget_bytes=math.floor(utilization * total_bytes),
        gpu_memory_utilization=utilization,
    )
