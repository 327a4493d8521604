"""What the pipeline needs from its models, as small Protocols: memory and qa receive these, never a Runtime."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch


class ClipEncoder(Protocol):
    """Clips to LLM embeddings (InternVideo2 chat encoder + Q-Former bridge)."""

    frames_per_clip: int

    def encode(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [B, T, H, W, 3] RGB -> [B, queries, llm_hidden]."""
        ...


class VideoTextRanker(Protocol):
    """A video-text model that ranks clips for a question (InternVideo2 stage 2)."""

    frames_per_clip: int

    def encode_video(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [B, T, H, W, 3] RGB -> [B, d], L2-normalised."""
        ...

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """[B] strings -> [B, d], L2-normalised."""
        ...


class TextEmbedder(Protocol):
    """Sentence embeddings for transcript and on-screen text search."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """[N] strings -> float32 [N, d], L2-normalised rows."""
        ...


class OCR(Protocol):
    """On-screen text of one frame."""

    def read(self, image: np.ndarray) -> list[tuple[str, float]]:
        """uint8 [H, W, 3] RGB -> [(text, confidence), ...] in reading order."""
        ...


class VisualTag(Protocol):
    """One thing a tagger saw in a frame."""

    @property
    def label(self) -> str: ...  # "cat", "Egyptian cat"

    @property
    def score(self) -> float: ...  # 0..1

    @property
    def source(self) -> str: ...  # "object" (detector) | "scene" (classifier)


class ImageTagger(Protocol):
    """Objects and scene labels of one frame (COCO detector + ImageNet classifier in lite)."""

    def tag(self, image: np.ndarray) -> Sequence[VisualTag]:
        """uint8 [H, W, 3] RGB -> tags, objects first (an object seen twice is listed twice)."""
        ...
