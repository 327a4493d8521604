"""Long-video memory: clip records, their identity, the on-disk cache, and the ingest loop that builds them."""

from model.memory.cache import MemoryCache
from model.memory.ingest import IngestConfig, IngestModels, Ingestor
from model.memory.keys import content_hash, memory_key
from model.memory.records import ClipRecord, VideoMemory

__all__ = [
    "ClipRecord",
    "IngestConfig",
    "IngestModels",
    "Ingestor",
    "MemoryCache",
    "VideoMemory",
    "content_hash",
    "memory_key",
]
