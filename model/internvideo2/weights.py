"""Checkpoint weights into our modules: one explicit name map per source (`chat_key_map` for InternVideo2-Chat-8B
safetensors and our converted vision folder, same names; `stage2_key_map` for the stage-2 `.pt`), and the loader
that applies them. Required weights that are missing raise `CheckpointError` naming them; weights the map does not
know are logged as unexpected. Models can be built empty (meta device) and filled in their final dtype.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from model.sources import (
    CheckpointError,
)

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------- name maps


def chat_key_map(name: str, num_blocks: int) -> str | None:
    """Official InternVideo2-Chat name -> InternVideo2ChatEncoder name; None for weights the encoder never uses."""
    if name.startswith(("lm.", "project_down.")) or name.endswith("position_ids"):
        return None
    if name.startswith("vision_encoder."):
        m = re.match(r"vision_encoder\.blocks\.(\d+)\.", name)
        if m and int(m.group(1)) >= num_blocks:
            return None  # blocks past the cut are not built
        return re.sub(r"\.(ls[12])\.gamma$", r".\1", name)
    if name.startswith("qformer.bert."):
        new = "bridge.qformer." + name.removeprefix("qformer.bert.")
        new = new.replace(".crossattention.self.", ".crossattention.attention.")
        new = new.replace(".attention.self.", ".attention.attention.")
        return new.replace("embeddings.LayerNorm.", "embeddings.layernorm.")
    if name.startswith("qformer.cls."):
        return None  # MLM head of the Q-Former, unused
    if name in ("query_tokens", "extra_query_tokens") or name.startswith(("vision_layernorm.", "project_up.")):
        return "bridge." + name
    return name  # unknown: reported as unexpected


STAGE2_UNUSED = ("clip_decoder.", "final_clip_decoder.", "clip_pos_embed", "clip_img_pos_embed", "itm_head.", "temp")


def stage2_key_map(name: str, text_layers: int) -> str | None:
    """Official stage-2 name -> InternVideo2Retrieval name; None for weights retrieval never uses."""
    if name.endswith(("position_ids", "token_type_ids")):
        return None
    if name.startswith("vision_encoder."):
        rest = name.removeprefix("vision_encoder.")
        if rest.startswith(STAGE2_UNUSED):
            return None  # distillation heads
        return re.sub(r"\.(ls[12])\.gamma$", r".\1", name)
    if name.startswith(STAGE2_UNUSED):
        return None
    if name.startswith("text_encoder.cls."):
        return None  # MLM head
    if name.startswith("text_encoder.bert."):
        rest = name.removeprefix("text_encoder.bert.")
        m = re.match(r"encoder\.layer\.(\d+)\.", rest)
        if m and int(m.group(1)) >= text_layers:
            return None  # fusion layers (cross-attention to video) serve re-ranking only
        if rest.startswith("pooler."):
            return None
        return "text_encoder." + rest
    return name


def apply_state_dict(
    model: nn.Module,
    names: Iterable[str],
    get: Callable[[str], torch.Tensor],
    key_map: Callable[[str], str | None],
    what: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> None:
    """Load mapped tensors into `model`; raise on missing required weights or wrong shapes, log the unexpected.

    Parameters still on the meta device (`empty_model`) are created from the checkpoint tensor, cast to `dtype` on
    the CPU and then moved to `device`: the accelerator only ever holds the final dtype."""
    own = model.state_dict()
    mapped: dict[str, str] = {}
    unexpected: list[str] = []
    for name in names:
        new = key_map(name)
        if new is None:
            continue
        if new in own:
            mapped[new] = name
        else:
            unexpected.append(name)
    missing = sorted(set(own) - set(mapped))
    if missing:
        shown = ", ".join(missing[:20]) + (f" ... ({len(missing)} in all)" if len(missing) > 20 else "")
        raise CheckpointError(f"{what} is missing required weights: {shown}")
    if unexpected:
        log.warning("%s: %d unexpected weights ignored: %s", what, len(unexpected), ", ".join(unexpected[:20]))
    bad = []
    with torch.no_grad():
        for new, name in mapped.items():
            t = get(name)
            if tuple(t.shape) != tuple(own[new].shape):
                bad.append(f"{name} {tuple(t.shape)} vs model {tuple(own[new].shape)}")
                continue
            if own[new].is_meta:
                _materialize(model, new, t, device, dtype)
            else:
                own[new].copy_(t)
    if bad:
        raise CheckpointError(f"{what} has weights of the wrong shape: " + "; ".join(bad[:10]))
    for m in model.modules():
        if hasattr(m, "clear_cache"):
            m.clear_cache()


def _materialize(
    model: nn.Module, name: str, value: torch.Tensor, device: str | torch.device, dtype: torch.dtype | None
) -> None:
    module_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_name)
    if value.is_floating_point() and dtype is not None:
        value = value.to(dtype=dtype, copy=True)  # on the CPU, so only final-dtype bytes cross to the device
    else:
        value = value.clone()
    value = value.to(device)
    if leaf in module._parameters:
        module._parameters[leaf] = nn.Parameter(value, requires_grad=False)
    else:
        module._buffers[leaf] = value


M = TypeVar("M", bound=nn.Module)


def empty_model(factory: Callable[[], M]) -> M:
    """Build a model with its parameters on the meta device (no memory, no random init) and its buffers real on
    the CPU (position ids); `apply_state_dict` then creates each parameter from the checkpoint in its final dtype."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        return factory()


def load_torch_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A stage-2 `.pt` (weights only); unwraps `model` / `module` / `state_dict` wrappers."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise CheckpointError(f"Could not read the checkpoint {path}: {err}") from err
    for wrapper in ("model", "module", "state_dict"):
        if isinstance(obj, dict) and wrapper in obj and isinstance(obj[wrapper], dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return obj
