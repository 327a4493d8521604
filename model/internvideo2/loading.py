"""Build the InternVideo2 models from the public checkpoints (hub id or local path) or at random.

One explicit name map per source: `chat_key_map` (InternVideo2-Chat-8B safetensors and our converted
vision folder, same names) and `stage2_key_map` (stage-2 `.pt`). Required weights that are missing raise
`CheckpointError` naming them; weights the map does not know are logged as unexpected.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from model.errors import ModelAccessError
from model.internvideo2.bridge import BRIDGE_PRESETS, BridgeConfig
from model.internvideo2.chat import InternVideo2ChatEncoder
from model.internvideo2.retrieval import (
    InternVideo2Retrieval,
    RetrievalConfig,
    TextConfig,
    build_offline_tokenizer,
    retrieval_preset,
)
from model.internvideo2.vit import PRESETS, VisionTransformerConfig, vit_preset
from model.profiles import RetrievalSpec, VisionSpec
from model.sources import (
    CheckpointError,
    SafetensorsSet,
    is_hub_id,
    resolve_dtype,
    resolve_model_dir,
    resolve_model_file,
)

log = logging.getLogger(__name__)

VISION_CONFIG = "internvideo2_vision.json"  # marks a converted vision folder
STAGE2_DEFAULT_FILE = "InternVideo2-stage2_1b-224p-f4.pt"
BERT_TOKENIZER = "google-bert/bert-base-uncased"


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


# ---------------------------------------------------------------------------------------------- config inference


def _count_indices(keys: Iterable[str], pattern: str) -> int:
    found = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def _heads_for(width: int, preset: VisionTransformerConfig) -> int:
    if preset.width == width:
        return preset.heads
    for p in PRESETS.values():
        if p.width == width:
            return p.heads
    raise CheckpointError(f"Cannot tell the head count of a ViT of width {width}; pass a matching preset")


def infer_vit_config(
    shape: Callable[[str], list[int]], keys: list[str], preset: VisionTransformerConfig, built_blocks_offset: int
) -> VisionTransformerConfig:
    """ViT sizes from tensor shapes (`built_blocks_offset` = 1 for the chat checkpoint, stored without its last block)."""
    if "vision_encoder.cls_token" not in keys:
        raise CheckpointError("Not an InternVideo2 checkpoint: no vision_encoder.cls_token")
    width = shape("vision_encoder.cls_token")[-1]
    ps = shape("vision_encoder.patch_embed.proj.weight")  # [C, 3, 1, p, p]
    patch = ps[-1]
    grid = preset.img_size // patch
    tokens = shape("vision_encoder.pos_embed")[1] - 1
    frames = tokens // (grid * grid)
    depth = _count_indices(keys, r"vision_encoder\.blocks\.(\d+)\.") + built_blocks_offset
    cfg = preset.replace(
        width=width,
        depth=depth,
        heads=_heads_for(width, preset),
        mlp_hidden=shape("vision_encoder.blocks.0.mlp.fc1.weight")[0],
        patch_size=patch,
        num_frames=frames,
        sep_image_video_pos_embed="vision_encoder.img_pos_embed" in keys,
        qk_norm="vision_encoder.blocks.0.attn.q_norm.weight" in keys,
    )
    if "vision_encoder.clip_projector.cross_attn.proj.weight" in keys:
        cfg = cfg.replace(clip_embed_dim=shape("vision_encoder.clip_projector.cross_attn.proj.weight")[0])
    return cfg


def infer_bridge_config(shape: Callable[[str], list[int]], keys: list[str], preset: BridgeConfig) -> BridgeConfig:
    p = "qformer.bert."
    hidden = shape("query_tokens")[-1]
    layers = _count_indices(keys, r"qformer\.bert\.encoder\.layer\.(\d+)\.")
    cross = sorted(
        {int(m.group(1)) for k in keys if (m := re.match(r"qformer\.bert\.encoder\.layer\.(\d+)\.crossattention\.", k))}
    )
    freq = cross[1] - cross[0] if len(cross) > 1 else preset.cross_attention_frequency
    heads = next((b.heads for b in BRIDGE_PRESETS.values() if b.hidden == hidden), max(1, hidden // 64))
    return preset.replace(
        vision_width=shape(p + "encoder.layer.0.crossattention.self.key.weight")[1],
        hidden=hidden,
        layers=layers,
        heads=heads,
        intermediate=shape(p + "encoder.layer.0.intermediate_query.dense.weight")[0],
        cross_attention_frequency=freq,
        vocab_size=shape(p + "embeddings.word_embeddings.weight")[0],
        max_position_embeddings=shape(p + "embeddings.position_embeddings.weight")[0],
        num_query_tokens=shape("query_tokens")[1],
        num_extra_query_tokens=shape("extra_query_tokens")[1] if "extra_query_tokens" in keys else 0,
        llm_hidden=shape("project_up.weight")[0],
    )


def chat_configs(preset_name: str, llm_hidden: int) -> tuple[VisionTransformerConfig, BridgeConfig]:
    vit = vit_preset(preset_name)
    bridge = BRIDGE_PRESETS["tiny" if preset_name == "tiny" else "base"]
    return vit, bridge.replace(vision_width=vit.width, llm_hidden=llm_hidden)


# ---------------------------------------------------------------------------------------------- chat encoder


CHAT_PREFIXES = (
    "vision_encoder.",
    "vision_layernorm.",
    "qformer.",
    "query_tokens",
    "extra_query_tokens",
    "project_up.",
)


def _finish(model: M, device: str, dtype: torch.dtype) -> M:
    """Cast where the model is built (the CPU), then move: building in fp32 on CUDA and casting there left about
    5 GB in torch's cache that vLLM, starting last, could not have."""
    return model.to(dtype=dtype).to(device=device).eval().requires_grad_(False)


def _chat_from_safetensors(
    st: SafetensorsSet,
    spec: VisionSpec,
    device: str,
    what: str,
    vit: VisionTransformerConfig | None = None,
    bridge: BridgeConfig | None = None,
    frames_per_clip: int | None = None,
) -> InternVideo2ChatEncoder:
    keys = st.keys()
    if vit is None or bridge is None:
        base_vit, base_bridge = chat_configs(spec.preset, spec.llm_hidden)
        vit = infer_vit_config(st.shape, keys, base_vit, built_blocks_offset=1)
        bridge = infer_bridge_config(st.shape, keys, base_bridge)
    dtype = resolve_dtype(spec.dtype, device)
    model = empty_model(lambda: InternVideo2ChatEncoder(vit, bridge, frames_per_clip or spec.frames_per_clip))
    blocks = model.vision_encoder.num_blocks
    apply_state_dict(model, keys, st.get, lambda k: chat_key_map(k, blocks), what, device=device, dtype=dtype)
    st.close()
    return _finish(model, device, dtype)


def save_vision_folder(
    st: SafetensorsSet, out: Path, vit: VisionTransformerConfig, bridge: BridgeConfig, frames_per_clip: int
) -> None:
    """Write the encoder + bridge weights (official names, source dtype) and a config json."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: st.get(k).contiguous()
        for k in st.weight_map
        if k.startswith(CHAT_PREFIXES) and not k.endswith("position_ids")
    }
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    cfg = {
        "vit": vit.__dict__,
        "bridge": bridge.__dict__,
        "frames_per_clip": frames_per_clip,
        "format": "internvideo2-chat-vision/1",
    }
    (out / VISION_CONFIG).write_text(json.dumps(cfg, indent=2))


def _load_vision_folder(folder: Path, spec: VisionSpec, device: str) -> InternVideo2ChatEncoder:
    cfg = json.loads((folder / VISION_CONFIG).read_text())
    vit = VisionTransformerConfig(**cfg["vit"])
    bridge = BridgeConfig(**cfg["bridge"])
    st = SafetensorsSet.from_folder(folder)
    return _chat_from_safetensors(
        st, spec, device, f"converted vision folder {folder}", vit, bridge, spec.frames_per_clip
    )


def _chat_hub_files(repo_id: str) -> Path:
    """Download only the index and the shards that hold encoder weights (never the LLM-only shards)."""
    from huggingface_hub.errors import RemoteEntryNotFoundError

    what = "InternVideo2-Chat checkpoint"
    try:
        index = resolve_model_file(repo_id, "model.safetensors.index.json", what=what)
    except ModelAccessError as err:
        if isinstance(err.__cause__, RemoteEntryNotFoundError):  # one unsharded file: take the whole repo
            return resolve_model_dir(repo_id, allow_patterns=["*.safetensors", "*.json"], what=what)
        raise
    weight_map = json.loads(index.read_text())["weight_map"]
    shards = sorted({f for k, f in weight_map.items() if k.startswith(CHAT_PREFIXES)})
    for shard in shards:
        resolve_model_file(repo_id, shard, what=what)
    return index.parent


def random_chat_encoder(spec: VisionSpec, device: str) -> InternVideo2ChatEncoder:
    vit, bridge = chat_configs(spec.preset, spec.llm_hidden)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the same "random" encoder in every process
        model = InternVideo2ChatEncoder(vit, bridge, spec.frames_per_clip)
    return _finish(model, device, resolve_dtype(spec.dtype, device))


def build_chat_encoder(spec: VisionSpec, device: str = "cpu") -> InternVideo2ChatEncoder:
    """InternVideo2 chat encoder from "random", a converted vision folder (or its root), a local official
    checkpoint folder/safetensors file, or a hub id (only the shards holding encoder weights are fetched)."""
    if spec.source == "random":
        return random_chat_encoder(spec, device)
    if is_hub_id(spec.source):
        from model.internvideo2.convert import default_converted_dir

        converted = default_converted_dir(spec) / "vision"
        if (converted / VISION_CONFIG).exists():
            return _load_vision_folder(converted, spec, device)
        path = _chat_hub_files(spec.source)
    else:
        path = resolve_model_dir(spec.source, what="vision model")
    if path.is_dir() and (path / "vision" / VISION_CONFIG).exists():
        path = path / "vision"
    if path.is_dir() and (path / VISION_CONFIG).exists():
        return _load_vision_folder(path, spec, device)
    st = SafetensorsSet.from_folder(path) if path.is_dir() else SafetensorsSet.from_files([path])
    return _chat_from_safetensors(st, spec, device, f"InternVideo2-Chat checkpoint {spec.source}")


# ---------------------------------------------------------------------------------------------- stage-2 retrieval


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


def infer_text_config(sd: dict[str, torch.Tensor], preset: TextConfig) -> TextConfig:
    p = "text_encoder.bert."
    keys = list(sd)
    hidden = sd[p + "embeddings.word_embeddings.weight"].shape[1]
    cross = sorted(
        {
            int(m.group(1))
            for k in keys
            if (m := re.match(r"text_encoder\.bert\.encoder\.layer\.(\d+)\.crossattention\.", k))
        }
    )
    layers = cross[0] if cross else _count_indices(keys, r"text_encoder\.bert\.encoder\.layer\.(\d+)\.")
    heads = {1024: 16, 768: 12}.get(hidden, preset.heads if preset.hidden == hidden else max(1, hidden // 64))
    return TextConfig(
        hidden=hidden,
        layers=layers,
        heads=heads,
        intermediate=sd[p + "encoder.layer.0.intermediate.dense.weight"].shape[0],
        vocab_size=sd[p + "embeddings.word_embeddings.weight"].shape[0],
        max_position_embeddings=sd[p + "embeddings.position_embeddings.weight"].shape[0],
        type_vocab_size=sd[p + "embeddings.token_type_embeddings.weight"].shape[0],
    )


def load_tokenizer(preset: str, folder: Path | None, vocab_size: int):
    """Tiny models: an offline WordPiece tokenizer; real ones: the bert-base-uncased vocab (local or hub cache)."""
    if preset == "tiny":
        return build_offline_tokenizer(vocab_size)
    from transformers import AutoTokenizer

    if folder is not None and (folder / "vocab.txt").exists():
        return AutoTokenizer.from_pretrained(str(folder))
    try:
        return AutoTokenizer.from_pretrained(BERT_TOKENIZER)
    except OSError as err:
        raise ModelAccessError(
            f"The BERT tokenizer {BERT_TOKENIZER} is not cached and the hub cannot be reached; "
            f"run once with a network connection or put vocab.txt beside the checkpoint."
        ) from err


def build_retrieval(spec: RetrievalSpec, device: str = "cpu") -> InternVideo2Retrieval:
    """Stage-2 model from "random", a local `.pt`/`.safetensors` file or folder, or a hub id (+ spec.filename)."""
    dtype = resolve_dtype(spec.dtype, device)
    preset = retrieval_preset(spec.preset)
    if spec.source == "random":
        tokenizer = load_tokenizer(spec.preset, None, preset.text.vocab_size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = InternVideo2Retrieval(preset, tokenizer, spec.frames_per_clip)
        return _finish(model, device, dtype)
    if is_hub_id(spec.source):
        path = resolve_model_file(spec.source, spec.filename or STAGE2_DEFAULT_FILE, what="retrieval model")
    else:
        path = resolve_model_dir(spec.source, what="retrieval model")
    if path.is_dir():
        candidates = [path / spec.filename] if spec.filename else sorted([*path.glob("*.pt"), *path.glob("*.pth")])
        if not candidates or not candidates[0].exists():
            raise CheckpointError(f"No stage-2 checkpoint (.pt) in {path}")
        path = candidates[0]
    sd = load_torch_checkpoint(path)
    keys = list(sd)
    vit = infer_vit_config(lambda k: list(sd[k].shape), keys, preset.vit, built_blocks_offset=0)
    if "vision_encoder.clip_projector.cross_attn.q.weight" not in sd:
        raise CheckpointError(f"{path} is missing required weights: vision_encoder.clip_projector.* (pooling head)")
    text = infer_text_config(sd, preset.text)
    cfg = RetrievalConfig(
        vit=vit,
        text=text,
        embed_dim=sd["vision_proj.weight"].shape[0] if "vision_proj.weight" in sd else preset.embed_dim,
    )
    tokenizer = load_tokenizer(spec.preset, path.parent, text.vocab_size)
    model = empty_model(lambda: InternVideo2Retrieval(cfg, tokenizer, spec.frames_per_clip))
    what = f"stage-2 checkpoint {path.name}"
    apply_state_dict(
        model, keys, sd.__getitem__, lambda k: stage2_key_map(k, text.layers), what, device=device, dtype=dtype
    )
    return _finish(model, device, dtype)
