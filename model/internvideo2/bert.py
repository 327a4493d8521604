"""What the two BERTs of InternVideo2 (the chat model's Q-Former and the stage-2 text encoder) share: our config
fields in the names transformers' BERT-style configs take."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # type names only: both configs import this module
    from model.internvideo2.bridge import BridgeConfig
    from model.internvideo2.retrieval import TextConfig


def bert_kwargs(sizes: BridgeConfig | TextConfig) -> dict[str, Any]:
    """Keyword arguments for a transformers BERT-style config (`BertConfig`, `InstructBlipQFormerConfig`)."""
    return {
        "vocab_size": sizes.vocab_size,
        "hidden_size": sizes.hidden,
        "num_hidden_layers": sizes.layers,
        "num_attention_heads": sizes.heads,
        "intermediate_size": sizes.intermediate,
        "max_position_embeddings": sizes.max_position_embeddings,
        "layer_norm_eps": 1e-12,  # both checkpoints were trained with BERT's epsilon
    }
