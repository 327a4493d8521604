"""Convert InternVideo2-Chat-8B into (1) a plain merged Mistral folder vLLM can serve and (2) a vision folder.

The LLM in the checkpoint is Mistral-7B-Instruct-v0.3 wrapped by PEFT LoRA (`lm.base_model.model.*`,
r=16, alpha=32 on q/k/v/o/gate/up/down and lm_head). Each adapted weight is merged as
W + (alpha / r) * B @ A and written as bf16 safetensors shards, streamed tensor by tensor.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from model.internvideo2.loading import CHAT_PREFIXES, save_vision_folder
from model.internvideo2.shapes import chat_configs, infer_bridge_config, infer_vit_config
from model.profiles import VisionSpec
from model.sources import CheckpointError, SafetensorsSet, resolve_model_dir

log = logging.getLogger(__name__)

LM_PREFIX = "lm.base_model.model."
DONE_MARKER = ".converted"

# Mistral-7B-Instruct-v0.3 (public values; written here so no gated Mistral download is needed)
MISTRAL_7B_V03: dict[str, Any] = {
    "architectures": ["MistralForCausalLM"],
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "hidden_act": "silu",
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-5,
    "rope_theta": 1000000.0,
    "sliding_window": None,
    "tie_word_embeddings": False,
    "vocab_size": 32768,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
}
TOKENIZER_FILES = (
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "generation_config.json",
)


def merge_lora(weight: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor, alpha: float, r: int) -> torch.Tensor:
    """PEFT merge in float32: W + (alpha / r) * B @ A; W [out, in], A [r, in], B [out, r]."""
    return weight.float() + (alpha / r) * (lora_b.float() @ lora_a.float())


def _find_lora_hparams(folder: Path, default_r: int) -> tuple[float, int]:
    """alpha and r from an adapter config (adapter_config.json, or lora_* keys anywhere in config.json)."""
    found: dict[str, float] = {}

    def walk(obj: Any) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                if k in ("lora_alpha", "lora_r", "r") and isinstance(v, (int, float)) and k not in found:
                    found[k] = v
                walk(v)

    for name in ("adapter_config.json", "config.json"):
        f = folder / name
        if f.exists():
            try:
                walk(json.loads(f.read_text()))
            except json.JSONDecodeError:
                log.warning("could not parse %s", f)
    r = int(found.get("lora_r", found.get("r", default_r)))
    alpha = float(found.get("lora_alpha", 32.0))
    return alpha, r


def _mistral_config(st: SafetensorsSet, overrides: dict[str, Any] | None):
    """MistralConfig from the Mistral-7B-v0.3 values, sizes checked against (and inferred from) tensor shapes."""
    from transformers import MistralConfig

    values = dict(MISTRAL_7B_V03)
    values.update(overrides or {})
    keys = st.keys()
    emb = st.shape(LM_PREFIX + "model.embed_tokens.weight")
    values["vocab_size"], values["hidden_size"] = emb
    values["num_hidden_layers"] = len(
        {m.group(1) for k in keys if (m := re.match(re.escape(LM_PREFIX) + r"model\.layers\.(\d+)\.", k))}
    )
    values["intermediate_size"] = st.shape(LM_PREFIX + "model.layers.0.mlp.gate_proj.weight")[0]
    head_dim = values["head_dim"]
    values["num_attention_heads"] = st.shape(LM_PREFIX + "model.layers.0.self_attn.q_proj.weight")[0] // head_dim
    values["num_key_value_heads"] = st.shape(LM_PREFIX + "model.layers.0.self_attn.k_proj.weight")[0] // head_dim
    values["dtype"] = "bfloat16"
    return MistralConfig(**values)


def _write_llm(
    st: SafetensorsSet, src: Path, out: Path, llm_overrides: dict[str, Any] | None, max_shard_bytes: int, progress: bool
) -> None:
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    out.mkdir(parents=True, exist_ok=True)
    keys = st.keys()
    base = [k for k in keys if k.startswith(LM_PREFIX) and ".lora_" not in k]
    if not base:
        raise CheckpointError("The checkpoint has no LLM weights (lm.base_model.model.*)")
    lora_r = next((st.shape(k)[0] for k in keys if k.endswith(".lora_A.default.weight")), 16)
    alpha, r = _find_lora_hparams(src, lora_r)
    if r != lora_r:
        log.warning("adapter config says r=%d but lora_A has rank %d; using the tensor rank", r, lora_r)
        r = lora_r
    log.info("merging LoRA: alpha=%s r=%d", alpha, r)

    weight_map: dict[str, str] = {}
    shard: dict[str, torch.Tensor] = {}
    shard_bytes, shard_idx, merged = 0, 0, 0
    names: list[list[str]] = []

    def flush() -> None:
        nonlocal shard, shard_bytes, shard_idx
        if not shard:
            return
        shard_idx += 1
        fname = f"model-{shard_idx:05d}.safetensors"
        save_file(shard, str(out / fname), metadata={"format": "pt"})
        names.append(list(shard))
        weight_map.update(dict.fromkeys(shard, fname))
        shard, shard_bytes = {}, 0

    for key in tqdm(base, desc="merging LoRA into Mistral", unit="tensor", disable=not progress):
        w = st.get(key)
        stem = key.removesuffix(".weight")
        a_key, b_key = stem + ".lora_A.default.weight", stem + ".lora_B.default.weight"
        if a_key in st.weight_map:
            if b_key not in st.weight_map:
                raise CheckpointError(f"LoRA weight {b_key} is missing (its lora_A is present)")
            w = merge_lora(w, st.get(a_key), st.get(b_key), alpha, r)
            merged += 1
        t = w.to(torch.bfloat16).contiguous()
        new_name = key.removeprefix(LM_PREFIX)
        if shard_bytes + t.numel() * 2 > max_shard_bytes:
            flush()
        shard[new_name] = t
        shard_bytes += t.numel() * 2
    flush()
    total = sum(torch.Size(st.shape(k)).numel() * 2 for k in base)  # bytes in bf16
    # rename shards to the usual "-of-N" names once N is known
    final_map: dict[str, str] = {}
    for i in range(1, shard_idx + 1):
        old, new = f"model-{i:05d}.safetensors", f"model-{i:05d}-of-{shard_idx:05d}.safetensors"
        (out / old).rename(out / new)
        for n in names[i - 1]:
            final_map[n] = new
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(final_map.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    log.info("merged LoRA into %d weights", merged)

    config = _mistral_config(st, llm_overrides)
    config.save_pretrained(out)
    write_legacy_config_keys(out / "config.json")
    copied = [f for f in TOKENIZER_FILES if (src / f).exists()]
    for f in copied:
        shutil.copy2(src / f, out / f)
    if not any(f in copied for f in ("tokenizer.model", "tokenizer.json")):
        log.warning("no tokenizer files in %s: add Mistral-7B-Instruct-v0.3 tokenizer files to %s", src, out)


def write_legacy_config_keys(path: Path) -> None:
    """Add the transformers-4 names beside the transformers-5 ones: `rope_theta` (next to `rope_parameters`) and
    `torch_dtype` (next to `dtype`). A server on transformers 4 (an older vLLM) reads only the legacy names and
    would otherwise run Mistral v0.3 at the default rope_theta 10000 instead of 1e6; transformers 5 reads both."""
    cfg = json.loads(path.read_text())
    rope = cfg.get("rope_parameters") or {}
    if "rope_theta" not in cfg and "rope_theta" in rope:
        cfg["rope_theta"] = rope["rope_theta"]
    if "torch_dtype" not in cfg and cfg.get("dtype"):
        cfg["torch_dtype"] = cfg["dtype"]
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def convert_chat_checkpoint(
    source: str | Path,
    out_dir: str | Path,
    progress: bool = True,
    preset: str = "1b",
    frames_per_clip: int = 8,
    llm_config: dict[str, Any] | None = None,
    max_shard_bytes: int = 2 << 30,
) -> Path:
    """Write `out_dir/llm` (merged Mistral, bf16) and `out_dir/vision` (encoder + bridge); returns out_dir.

    `llm_config` overrides Mistral config values (e.g. `head_dim` for a test-sized checkpoint); the other
    sizes are inferred from tensor shapes.
    """
    src = resolve_model_dir(
        str(source),
        allow_patterns=["*.safetensors", "*.json", "tokenizer*", "*.model", "*.jinja"],
        what="InternVideo2-Chat checkpoint",
    )
    out = Path(out_dir).expanduser()
    st = SafetensorsSet.from_folder(src) if src.is_dir() else SafetensorsSet.from_files([src])
    folder = src if src.is_dir() else src.parent
    keys = st.keys()
    if not any(k.startswith(CHAT_PREFIXES) for k in keys):
        raise CheckpointError(f"{source} is not an InternVideo2-Chat checkpoint (no vision_encoder/qformer weights)")
    (out / DONE_MARKER).unlink(missing_ok=True)
    _write_llm(st, folder, out / "llm", llm_config, max_shard_bytes, progress)

    base_vit, base_bridge = chat_configs(preset, st.shape("project_up.weight")[0])
    vit = infer_vit_config(st.shape, keys, base_vit, built_blocks_offset=1)
    bridge = infer_bridge_config(st.shape, keys, base_bridge)
    save_vision_folder(st, out / "vision", vit, bridge, frames_per_clip)
    st.close()
    (out / DONE_MARKER).write_text(json.dumps({"source": str(source)}))
    return out


def default_converted_dir(spec: VisionSpec) -> Path:
    from model.assets import data_dir

    if spec.converted_dir:
        return Path(spec.converted_dir).expanduser()
    name = re.sub(r"[^\w.-]+", "--", spec.source.strip("/"))
    return data_dir() / "converted" / name


def ensure_converted(spec: VisionSpec) -> Path:
    """The converted root (`llm/` + `vision/`) for this vision source, converting once on first use."""
    root = default_converted_dir(spec)
    if (root / DONE_MARKER).exists():
        return root
    log.warning("Converting %s into %s (once; merges LoRA and writes ~15 GB)", spec.source, root)
    return convert_chat_checkpoint(
        spec.source, root, progress=True, preset=spec.preset, frames_per_clip=spec.frames_per_clip
    )
