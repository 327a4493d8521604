"""Build the InternVideo2 models from the public checkpoints (hub id or local path) or at random.

The name maps and the weight loader are `weights`, the configs read off tensor shapes are `shapes`; this module
finds the files (hub, local, converted vision folder) and builds the chat encoder and the retrieval model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from model.errors import ModelAccessError
from model.internvideo2.bridge import BridgeConfig
from model.internvideo2.chat import InternVideo2ChatEncoder
from model.internvideo2.retrieval import (
    InternVideo2Retrieval,
    RetrievalConfig,
    build_offline_tokenizer,
    retrieval_preset,
)
from model.internvideo2.shapes import chat_configs, infer_bridge_config, infer_text_config, infer_vit_config
from model.internvideo2.vit import VisionTransformerConfig
from model.internvideo2.weights import (
    M,
    apply_state_dict,
    chat_key_map,
    empty_model,
    load_torch_checkpoint,
    stage2_key_map,
)
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
