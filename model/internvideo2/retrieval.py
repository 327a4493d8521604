"""InternVideo2 stage-2 video-text model (dual encoder) used to rank clips for a question.

Vision: the full ViT + attention-pooling head (`vision_encoder.clip_projector`) -> `vision_proj` -> L2 norm.
Text: BERT (transformers `BertModel`) cut before the cross-attention fusion layers, CLS -> `text_proj` -> L2 norm.
"""

from __future__ import annotations

import dataclasses
import string
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertModel

from model.internvideo2.bert import bert_kwargs
from model.internvideo2.chat import FramesError, preprocess_frames
from model.internvideo2.vit import VisionTransformer, VisionTransformerConfig, vit_preset


@dataclass(frozen=True)
class TextConfig:
    hidden: int = 1024  # BERT-large
    layers: int = 19  # text-only layers; the last 5 of 24 are fusion layers (re-ranking only)
    heads: int = 16
    intermediate: int = 4096
    vocab_size: int = 30522
    max_position_embeddings: int = 512
    type_vocab_size: int = 2

    def bert_config(self) -> BertConfig:
        cfg = BertConfig(**bert_kwargs(self), type_vocab_size=self.type_vocab_size)
        cfg._attn_implementation = "sdpa"
        return cfg


@dataclass(frozen=True)
class RetrievalConfig:
    vit: VisionTransformerConfig
    text: TextConfig = field(default_factory=TextConfig)
    embed_dim: int = 512
    max_text_len: int = 40

    def replace(self, **changes: object) -> RetrievalConfig:
        return dataclasses.replace(self, **changes)


def retrieval_preset(name: str) -> RetrievalConfig:
    if name == "tiny":
        return RetrievalConfig(
            vit=vit_preset("tiny"),
            text=TextConfig(hidden=32, layers=2, heads=2, intermediate=64, vocab_size=256, max_position_embeddings=64),
            embed_dim=32,
        )
    vit = vit_preset(name)
    return RetrievalConfig(vit=vit.replace(num_frames=4) if name == "1b" else vit)


class PoolingCrossAttention(nn.Module):
    """q/k/v Linear without bias plus separate q_bias/k_bias/v_bias vectors; `proj` to the pooled width."""

    def __init__(self, dim: int, heads: int, out_dim: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        inner = self.head_dim * heads
        self.q = nn.Linear(dim, inner, bias=False)
        self.k = nn.Linear(dim, inner, bias=False)
        self.v = nn.Linear(dim, inner, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(inner))
        self.k_bias = nn.Parameter(torch.zeros(inner))
        self.v_bias = nn.Parameter(torch.zeros(inner))
        self.proj = nn.Linear(inner, out_dim)

    def forward(self, xq: torch.Tensor, xk: torch.Tensor, xv: torch.Tensor) -> torch.Tensor:
        b, nq, _ = xq.shape
        nk = xk.shape[1]
        q = F.linear(xq, self.q.weight, self.q_bias).reshape(b, nq, self.heads, self.head_dim).transpose(1, 2)
        k = F.linear(xk, self.k.weight, self.k_bias).reshape(b, nk, self.heads, self.head_dim).transpose(1, 2)
        v = F.linear(xv, self.v.weight, self.v_bias).reshape(b, nk, self.heads, self.head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)  # [B, H, Nq, D]
        return self.proj(out.transpose(1, 2).reshape(b, nq, -1))


class AttentionPoolingHead(nn.Module):
    """Query = mean of all tokens; separate LayerNorms (eps 1e-5) for q, k and v inputs; one output token."""

    def __init__(self, dim: int, heads: int, out_dim: int) -> None:
        super().__init__()
        self.norm1_q = nn.LayerNorm(dim, eps=1e-5)
        self.norm1_k = nn.LayerNorm(dim, eps=1e-5)
        self.norm1_v = nn.LayerNorm(dim, eps=1e-5)
        self.cross_attn = PoolingCrossAttention(dim, heads, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x `[B, N, C]` -> `[B, out_dim]`."""
        xq = self.norm1_q(x.mean(1, keepdim=True))  # [B, 1, C]
        return self.cross_attn(xq, self.norm1_k(x), self.norm1_v(x)).squeeze(1)


class PooledVisionTransformer(VisionTransformer):
    """The full ViT with the stage-2 `clip_projector` (so checkpoint names stay `vision_encoder.clip_projector.*`)."""

    def __init__(self, cfg: VisionTransformerConfig) -> None:
        super().__init__(cfg)
        self.clip_projector = AttentionPoolingHead(cfg.width, cfg.attn_pool_heads, cfg.clip_embed_dim)

    def forward_pooled(self, frames: torch.Tensor) -> torch.Tensor:
        return self.clip_projector(self(frames))  # [B, clip_embed_dim]


def build_offline_tokenizer(vocab_size: int | None = None):  # -> transformers BertTokenizer
    """A small lowercase WordPiece tokenizer built without network (characters, digits, common words).

    For test-sized models only; real models use the bert-base-uncased vocab.
    """
    from transformers import BertTokenizer

    words = [
        "the",
        "a",
        "an",
        "of",
        "to",
        "in",
        "on",
        "at",
        "and",
        "or",
        "is",
        "are",
        "was",
        "were",
        "be",
        "it",
        "this",
        "that",
        "with",
        "for",
        "from",
        "by",
        "as",
        "what",
        "when",
        "where",
        "who",
        "how",
        "why",
        "which",
        "video",
        "clip",
        "man",
        "woman",
        "person",
        "people",
        "dog",
        "cat",
        "car",
        "ball",
        "red",
        "green",
        "blue",
        "white",
        "black",
        "running",
        "walking",
        "talking",
        "cooking",
        "playing",
        "music",
        "room",
        "street",
        "water",
        "sky",
        "tree",
        "house",
        "door",
        "table",
        "hand",
        "face",
    ]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    tokens = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *chars,
        *("##" + c for c in string.ascii_lowercase + string.digits),
    ]
    tokens += [w for w in words if w not in tokens]
    if vocab_size is not None:
        tokens = tokens[:vocab_size]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    return BertTokenizer(vocab=vocab, do_lower_case=True)


class InternVideo2Retrieval(nn.Module):
    def __init__(self, cfg: RetrievalConfig, tokenizer=None, frames_per_clip: int = 4) -> None:
        super().__init__()
        self.cfg = cfg
        self.frames_per_clip = frames_per_clip
        self.batch_size = 8
        self.vision_encoder = PooledVisionTransformer(cfg.vit)
        self.vision_proj = nn.Linear(cfg.vit.clip_embed_dim, cfg.embed_dim)
        self.text_encoder = BertModel(cfg.text.bert_config(), add_pooling_layer=False)
        self.text_proj = nn.Linear(cfg.text.hidden, cfg.embed_dim)
        self.tokenizer = tokenizer

    @property
    def device(self) -> torch.device:
        return self.vision_proj.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.vision_proj.weight.dtype

    def forward_video(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels `[B, T, 3, H, W]` normalised -> L2-normalised `[B, embed_dim]`."""
        pooled = self.vision_encoder.forward_pooled(pixels.to(self.device, self.dtype))
        return F.normalize(self.vision_proj(pooled).float(), dim=-1)

    def forward_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """token ids `[B, L]` -> L2-normalised `[B, embed_dim]` from the CLS token."""
        hidden = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B, L, H]
        return F.normalize(self.text_proj(hidden[:, 0]).float(), dim=-1)

    @torch.inference_mode()
    def encode_video(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 `[B, T, H, W, 3]` -> float32 CPU `[B, embed_dim]`, L2-normalised."""
        if not hasattr(frames, "shape") or len(frames.shape) != 5:
            raise FramesError("Expected uint8 frames shaped [clips, frames, height, width, 3]")
        outs = []
        for i in range(0, frames.shape[0], self.batch_size):
            pixels = preprocess_frames(frames[i : i + self.batch_size], self.cfg.vit.img_size, self.device)
            outs.append(self.forward_video(pixels).cpu())
        return torch.cat(outs, dim=0)

    @torch.inference_mode()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """list of strings -> float32 CPU `[B, embed_dim]`, L2-normalised (at most `max_text_len` tokens each)."""
        if isinstance(texts, str):
            texts = [texts]
        if self.tokenizer is None:
            raise FramesError("This retrieval model has no tokenizer; it cannot encode text")
        if not texts:
            return torch.zeros(0, self.cfg.embed_dim)
        tok = self.tokenizer(
            list(texts), padding="longest", truncation=True, max_length=self.cfg.max_text_len, return_tensors="pt"
        )
        return self.forward_text(tok["input_ids"].to(self.device), tok["attention_mask"].to(self.device)).cpu()

    @staticmethod
    def similarity(video_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        """Cosine similarity `[Bv, Bt]` of L2-normalised embeddings (the demo ranks softmax(100 * this))."""
        return video_emb.float() @ text_emb.float().T
