"""Sentence embeddings for transcript/OCR search: all-MiniLM-L6-v2 with plain transformers (mean pooling)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from model.errors import ModelAccessError

log = logging.getLogger(__name__)


class TextEmbedder:
    """`embed(texts) -> float32 [N, d]`, rows L2-normalised (cosine similarity is a dot product)."""

    def __init__(self, model: torch.nn.Module, tokenizer, max_length: int = 256, batch_size: int = 64) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.dim = int(model.config.hidden_size)

    @classmethod
    def load(cls, source: str | Path = "packaged:all-minilm-l6-v2", device: str = "cpu") -> TextEmbedder:
        """`packaged:NAME` (see model.assets), a local sentence-transformers folder, or a hub id."""
        from transformers import AutoModel, AutoTokenizer

        from model.assets import resolve_packaged

        src = str(source)
        path: str | Path = resolve_packaged(src) if src.startswith("packaged:") else src
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModel.from_pretrained(path, dtype=torch.float32).to(device)
        except OSError as err:
            raise ModelAccessError(f"Could not load the text embedder {src!r}: {err}") from err
        max_length = 256
        cfg = Path(path) / "sentence_bert_config.json"
        if cfg.exists():
            import json

            max_length = int(json.loads(cfg.read_text()).get("max_seq_length", max_length))
        return cls(model, tokenizer, max_length=max_length)

    @torch.inference_mode()
    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        device = next(self.model.parameters()).device
        out = []
        for i in range(0, len(texts), self.batch_size):
            batch = [t if t.strip() else " " for t in texts[i : i + self.batch_size]]
            enc = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            enc = {k: v.to(device) for k, v in enc.items()}
            hidden = self.model(**enc).last_hidden_state  # [B, L, d]
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)  # [B, d] mean over real tokens
            out.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy())
        return np.concatenate(out, axis=0)
