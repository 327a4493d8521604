"""Model configs read off a checkpoint's tensor shapes (widths, depths, heads, token counts), starting from a
preset for what shapes cannot tell; and the presets of the chat encoder."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import torch

from model.internvideo2.bridge import BRIDGE_PRESETS, BridgeConfig
from model.internvideo2.retrieval import (
    TextConfig,
)
from model.internvideo2.vit import PRESETS, VisionTransformerConfig, vit_preset
from model.sources import (
    CheckpointError,
)


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
