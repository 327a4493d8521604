"""Text models: the sentence embedder for transcript and on-screen text search."""

from model.text.embed import TextEmbedder

__all__ = ["TextEmbedder"]
