"""GPU memory of the GPU profile, checked on CPU: the vLLM memory plan's arithmetic on 24/48/80/141 GB cards, and
checkpoints loaded straight into their final dtype (never built in fp32 and cast on the device)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from model.internvideo2 import build_chat_encoder
from model.internvideo2.chat import InternVideo2ChatEncoder
from model.internvideo2.convert import MISTRAL_7B_V03
from model.internvideo2.loading import chat_configs, empty_model
from model.internvideo2.retrieval import InternVideo2Retrieval, retrieval_preset
from model.llm import EngineError
from model.llm.memory_plan import GIB, llm_memory, plan_vllm_memory
from model.profiles import INTERNVIDEO2_CHAT_8B, VisionSpec

MIB = 1 << 20
# total memory as nvidia-smi reports it: RTX 4090 / L40S / H100 80GB / H200
CARDS = {"24GB": 24564 * MIB, "48GB": 46068 * MIB, "80GB": 81559 * MIB, "141GB": 143771 * MIB}
WHISPER_TURBO_PARAMS = 809_000_000
CUDA_CONTEXT = GIB // 2
MAX_LEN = INTERNVIDEO2_CHAT_8B.llm.max_model_len  # 16384


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def others_bytes() -> int:
    """What the GPU profile's other models hold when vLLM starts: the real 1B shapes, counted on the meta device."""
    vit, bridge = chat_configs("1b", 4096)
    encoder = empty_model(lambda: InternVideo2ChatEncoder(vit, bridge, 8))
    retrieval = empty_model(lambda: InternVideo2Retrieval(retrieval_preset("1b"), None, 4))
    params = _params(encoder) + _params(retrieval) + WHISPER_TURBO_PARAMS
    assert 2.0e9 < params < 4.0e9, params
    return 2 * params + CUDA_CONTEXT  # bf16 / fp16


def _plan(card: str | int, others: int, quantization: str | None = "fp8_per_tensor", max_len: int = MAX_LEN) -> Any:
    total = CARDS[card] if isinstance(card, str) else card
    llm = llm_memory(MISTRAL_7B_V03, quantization)
    return plan_vllm_memory(
        total, total - others, llm, max_len, cap_utilization=INTERNVIDEO2_CHAT_8B.llm.gpu_memory_utilization
    )


def test_mistral_7b_sizes() -> None:
    bf16 = llm_memory(MISTRAL_7B_V03, None)
    fp8 = llm_memory(MISTRAL_7B_V03, "fp8_per_tensor")
    assert 7.2e9 < bf16.params < 7.3e9  # Mistral-7B-v0.3: 7.25 B parameters
    assert bf16.weight_bytes == pytest.approx(2 * bf16.params, rel=1e-6)
    assert 7.0 * GIB < fp8.weight_bytes < 7.2 * GIB  # linear layers in 1 byte, embeddings and lm_head in bf16
    assert bf16.kv_bytes_per_token == 2 * 32 * 8 * 128 * 2  # 128 KiB a token: 2 GiB per 16k-token request


@pytest.mark.parametrize("card", list(CARDS))
def test_plan_starts_vllm_on_every_card_without_taking_what_it_does_not_need(card: str, others_bytes: int) -> None:
    plan = _plan(card, others_bytes)
    total, free = CARDS[card], CARDS[card] - others_bytes
    requested = math.ceil(total * plan.gpu_memory_utilization)  # vLLM's own start-up check (request_memory)
    assert requested <= free - plan.reserve_bytes, "vLLM would refuse to start, or eat the other models' room"
    assert plan.full_sequences >= 1.0  # at least one full 16k-token request in the KV cache
    assert plan.budget_bytes <= plan.weight_bytes + plan.overhead_bytes + 8 * 2 * GIB  # no more than 8 requests' worth
    assert f"{total / GIB:.1f} GiB card" in plan.summary() and f"{plan.gpu_memory_utilization:.3f}" in plan.summary()


def test_plan_figures_per_card(others_bytes: int) -> None:
    small, mid, big, h200 = (_plan(c, others_bytes) for c in CARDS)
    assert 1.5 < small.full_sequences < 4  # 24 GB: what is free, a couple of full requests
    assert small.gpu_memory_utilization > 0.5
    for plan in (mid, big, h200):  # from 48 GB on: the 8 requests' worth, the same GiB on every card
        assert plan.full_sequences == pytest.approx(8, abs=0.05)
        assert plan.budget_bytes == pytest.approx(mid.budget_bytes, abs=0.2 * GIB)  # 1e-3 steps of the card
    assert h200.budget_bytes < 30 * GIB < 0.55 * CARDS["141GB"]  # the old fixed 0.55 took 77 GiB of an H200
    assert h200.gpu_memory_utilization < 0.2


def test_plan_refuses_clearly_what_cannot_fit(others_bytes: int) -> None:
    with pytest.raises(EngineError, match=r"does not fit.*needs 18\.\d GiB.*quantization=fp8"):
        _plan("24GB", others_bytes, quantization=None)  # bf16 Mistral-7B beside the encoders on 24 GB
    with pytest.raises(EngineError, match=r"does not fit.*larger GPU, or serve the LLM elsewhere"):
        _plan(16376 * MIB, others_bytes)  # a 16 GB card
    with pytest.raises(EngineError, match=r"one 32768-token request.*max_model_len to 31744 or less"):
        _plan("24GB", others_bytes, max_len=32768)
    with pytest.raises(EngineError, match=r"raise gpu_memory_utilization above 0\.1"):
        plan_vllm_memory(80 * GIB, 70 * GIB, llm_memory(MISTRAL_7B_V03, "fp8"), MAX_LEN, cap_utilization=0.1)


FACTORIES = (torch.ops.aten.empty, torch.ops.aten.empty_strided, torch.ops.aten.zeros, torch.ops.aten.ones)


class _BigFloatTensors(TorchDispatchMode):
    """Records the dtype of every real (non-meta) floating tensor of at least `numel` elements an op fills or
    computes (random init, copies, casts). Plain factories are left out: accelerate's empty-weights context lets
    each parameter's `empty`/`zeros` storage exist on the CPU for an instant before it moves it to the meta device."""

    def __init__(self, numel: int) -> None:
        super().__init__()
        self.numel = numel
        self.dtypes: set[torch.dtype] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket in FACTORIES:
            return out
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and not t.is_meta and t.is_floating_point() and t.numel() >= self.numel:
                self.dtypes.add(t.dtype)
        return out


def test_checkpoint_loads_straight_into_its_final_dtype(tmp_path: Path) -> None:
    from tests.test_internvideo2 import LLM_HIDDEN, chat_state, write_sharded

    sd = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in chat_state().items()}
    folder = write_sharded(sd, tmp_path / "chat")
    spec = VisionSpec(source=str(folder), preset="tiny", llm_hidden=LLM_HIDDEN, frames_per_clip=4, dtype="bf16")
    biggest = max(v.numel() for v in sd.values())
    seen = _BigFloatTensors(biggest // 2)
    with seen:
        encoder = build_chat_encoder(spec, "cpu")
    assert torch.float32 not in seen.dtypes, "the weights were initialised or filled in fp32 before the cast"
    assert {p.dtype for p in encoder.parameters()} == {torch.bfloat16}
    assert not any(p.is_meta for p in encoder.parameters())
    pos = encoder.bridge.qformer.embeddings.position_ids  # a buffer no checkpoint holds: built, not left empty
    assert torch.equal(pos[0], torch.arange(pos.shape[1]))
    fp32 = build_chat_encoder(VisionSpec(**{**spec.__dict__, "dtype": "fp32"}), "cpu")
    for (name, a), (_, b) in zip(encoder.state_dict().items(), fp32.state_dict().items(), strict=True):
        assert torch.equal(a, b.to(a.dtype)), name


def test_runtime_plans_only_for_vllm_on_cuda(tmp_path: Path) -> None:
    from model.profiles import LITE
    from model.runtime import size_llm_memory

    assert size_llm_memory(LITE.llm, tmp_path, "cpu") == (LITE.llm, None)
    remote = size_llm_memory(INTERNVIDEO2_CHAT_8B.llm, tmp_path, "cuda", llm_url="http://gpu-box:8000/v1")
    assert remote == (INTERNVIDEO2_CHAT_8B.llm, None)  # a remote server sizes itself
