"""Q-Former bridge of InternVideo2-Chat: vision tokens -> 96 query embeddings -> LLM input width.

The Q-Former is transformers' `InstructBlipQFormerModel` (BERT-base with query-specific FFNs and
cross-attention every 2nd layer), which has the official Q-Former's structure; official
`qformer.bert.*` names load into it after three renames (see `loading.chat_key_map`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn
from transformers import InstructBlipQFormerConfig, InstructBlipQFormerModel

from model.internvideo2.bert import bert_kwargs


@dataclass(frozen=True)
class BridgeConfig:
    vision_width: int = 1408  # encoder_hidden_size of the cross-attention
    hidden: int = 768
    layers: int = 12
    heads: int = 12
    intermediate: int = 3072
    cross_attention_frequency: int = 2
    vocab_size: int = 30522
    max_position_embeddings: int = 512
    num_query_tokens: int = 32
    num_extra_query_tokens: int = 64
    llm_hidden: int = 4096

    @property
    def num_queries(self) -> int:
        return self.num_query_tokens + self.num_extra_query_tokens

    def replace(self, **changes: object) -> BridgeConfig:
        return dataclasses.replace(self, **changes)

    def qformer_config(self) -> InstructBlipQFormerConfig:
        cfg = InstructBlipQFormerConfig(
            **bert_kwargs(self),
            cross_attention_frequency=self.cross_attention_frequency,
            encoder_hidden_size=self.vision_width,
        )
        cfg._attn_implementation = "sdpa"
        return cfg


BRIDGE_PRESETS: dict[str, BridgeConfig] = {
    "base": BridgeConfig(),
    # test-sized: hidden 64, 2 layers (cross-attention in layer 0), 4 heads; 32 + 64 queries as the real one
    "tiny": BridgeConfig(hidden=64, layers=2, heads=4, intermediate=128, vocab_size=128, max_position_embeddings=64),
}


class QFormerBridge(nn.Module):
    """vision_layernorm -> Q-Former on the 96 learned queries -> project_up. Output `[B, 96, llm_hidden]`."""

    def __init__(self, cfg: BridgeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.vision_layernorm = nn.LayerNorm(cfg.vision_width, eps=1e-12)
        self.qformer = InstructBlipQFormerModel(cfg.qformer_config())
        self.query_tokens = nn.Parameter(torch.zeros(1, cfg.num_query_tokens, cfg.hidden))
        self.extra_query_tokens = nn.Parameter(torch.zeros(1, cfg.num_extra_query_tokens, cfg.hidden))
        self.project_up = nn.Linear(cfg.hidden, cfg.llm_hidden)
        if not self.query_tokens.is_meta:
            nn.init.normal_(self.query_tokens, std=0.02)
            nn.init.normal_(self.extra_query_tokens, std=0.02)

    def forward(self, vision_tokens: torch.Tensor) -> torch.Tensor:
        """vision_tokens `[B, N, vision_width]` (ViT output) -> `[B, 96, llm_hidden]`."""
        b = vision_tokens.shape[0]
        dtype = self.project_up.weight.dtype
        image_embeds = self.vision_layernorm(vision_tokens.to(dtype))  # [B, N, Cv]
        queries = torch.cat([self.query_tokens, self.extra_query_tokens], dim=1).expand(b, -1, -1)  # [B, 96, Hq]
        # queries alone (no text): the public forward runs the embeddings LayerNorm on them, query_length = 96
        out = self.qformer(
            input_ids=None, query_embeds=queries, encoder_hidden_states=image_embeds
        ).last_hidden_state  # [B, 96, Hq]
        return self.project_up(out)  # [B, 96, llm_hidden]
