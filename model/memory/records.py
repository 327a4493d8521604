"""What the memory keeps about one video: a record per clip plus video-level transcript and search indexes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.media import LostStretch
from model.media import damage_note as describe_damage
from model.speech import Transcript


def format_tags(labels: Sequence[str], counts: Sequence[int], sources: Sequence[str]) -> str:
    """ "person x3, bicycle; mountain bike": objects (x N when N were seen at once), "; ", then scene labels."""
    objects, scenes = [], []
    for label, n, source in zip(labels, counts, sources, strict=False):
        if source == "object":
            objects.append(f"{label} x{n}" if n > 1 else label)
        else:
            scenes.append(label)
    return "; ".join(part for part in (", ".join(objects), ", ".join(scenes)) if part)


@dataclass
class ClipRecord:
    """One clip of the memory's clip plan and everything ingestion learned about it."""

    index: int
    start: float  # seconds
    end: float
    frame_times: list[float]  # container timestamps of the frames the encoder saw
    transcript: str = ""  # speech overlapping [start, end]
    ocr: list[str] = field(default_factory=list)  # distinct on-screen text lines
    ocr_times: list[float] = field(default_factory=list)  # frame times OCR looked at
    embeddings: torch.Tensor | None = None  # [96, llm_hidden] fp16 from the chat encoder (None in lite)
    # Visual tags (COCO objects, ImageNet labels), distinct, in the order first seen; parallel lists.
    tags: list[str] = field(default_factory=list)
    tag_times: list[float] = field(default_factory=list)  # the frame time each tag was first seen at
    tag_counts: list[int] = field(default_factory=list)  # most instances in one frame (1 for scene labels)
    tag_sources: list[str] = field(default_factory=list)  # "object" | "scene"

    @property
    def ocr_text(self) -> str:
        return " | ".join(self.ocr)

    @property
    def tag_text(self) -> str:
        """Objects (with counts), then scene labels: "person x3, bicycle; mountain bike, street sign"."""
        return format_tags(self.tags, self.tag_counts, self.tag_sources)

    @property
    def search_text(self) -> str:
        """What lite search and the text embedder see for this clip."""
        parts = [self.transcript.strip()]
        if self.ocr:
            parts.append("On screen: " + self.ocr_text)
        if self.tags:
            parts.append("Seen: " + self.tag_text)
        return " ".join(p for p in parts if p)

    @property
    def mid_time(self) -> float:
        return self.frame_times[len(self.frame_times) // 2] if self.frame_times else (self.start + self.end) / 2

    def meta(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "start": self.start,
            "end": self.end,
            "frame_times": list(self.frame_times),
            "transcript": self.transcript,
            "ocr": list(self.ocr),
            "ocr_times": list(self.ocr_times),
            "tags": list(self.tags),
            "tag_times": list(self.tag_times),
            "tag_counts": list(self.tag_counts),
            "tag_sources": list(self.tag_sources),
        }


@dataclass
class VideoMemory:
    """Everything needed to answer questions about one video without touching the models again."""

    key: str  # cache key (content hash + profile + sampling)
    path: Path
    profile: str
    info: Any  # model.media.VideoInfo
    transcript: Transcript
    clips: list[ClipRecord]
    sampling: dict[str, Any]  # fps, frames_per_clip, max_frames, short_side
    retrieval_embeddings: np.ndarray | None = None  # [N, 512] float32, L2-normalised (stage-2 model)
    text_embeddings: np.ndarray | None = None  # [N, d] float32, L2-normalised (transcript + OCR per clip)
    segment_embeddings: np.ndarray | None = None  # [S, d] float32, one per transcript segment
    thumbnails: list[bytes] = field(default_factory=list)  # one small JPEG per clip
    timings: dict[str, float] = field(default_factory=dict)
    damage: list[LostStretch] = field(default_factory=list)  # stretches of a damaged file that did not decode
    from_cache: bool = False
    cache_note: str = ""  # why this memory could not be saved in the cache ("" when it was); not stored
    # Streaming ingest: the memory holds the video up to this time (seconds); None when it holds all of it.
    ingested_until: float | None = None
    chapters: Any = None  # model.qa.chapters.Chapters, once built for a complete memory

    @property
    def duration(self) -> float:
        return float(self.info.duration)

    @property
    def complete(self) -> bool:
        return self.ingested_until is None

    @property
    def seen_until(self) -> float:
        """How far the memory has seen the video (its duration when complete)."""
        return self.duration if self.ingested_until is None else float(self.ingested_until)

    @property
    def damage_note(self) -> str:
        """What the UI and CLI tell about a damaged file ('' when nothing was lost)."""
        return describe_damage(self.damage, self.duration)

    @property
    def has_video_embeddings(self) -> bool:
        return bool(self.clips) and all(c.embeddings is not None for c in self.clips)

    def clip_at(self, t: float) -> ClipRecord:
        """The clip whose range holds `t` (the nearest one for times between clips)."""
        if not self.clips:
            raise IndexError("memory has no clips")
        for c in self.clips:
            if c.start <= t < c.end:
                return c
        return min(self.clips, key=lambda c: min(abs(c.start - t), abs(c.end - t)))

    def thumbnail(self, clip_index: int) -> np.ndarray | None:
        """The clip's thumbnail as uint8 [H, W, 3] RGB (None when there is none)."""
        if not 0 <= clip_index < len(self.thumbnails) or not self.thumbnails[clip_index]:
            return None
        import cv2

        img = cv2.imdecode(np.frombuffer(self.thumbnails[clip_index], np.uint8), cv2.IMREAD_COLOR)
        return None if img is None else np.ascontiguousarray(img[:, :, ::-1])

    def summary(self) -> dict[str, Any]:
        """JSON-safe overview (for `launch.py ingest --full --json`)."""
        info = self.info.to_dict() if hasattr(self.info, "to_dict") else dict(vars(self.info))
        return {
            "key": self.key,
            "profile": self.profile,
            "from_cache": self.from_cache,
            "info": {k: (str(v) if isinstance(v, Path) else v) for k, v in info.items()},
            "sampling": self.sampling,
            "transcript": [
                {"start": round(s.start, 2), "end": round(s.end, 2), "text": s.text} for s in self.transcript.segments
            ],
            "language": self.transcript.language,
            "clips": [
                {
                    "index": c.index,
                    "start": round(c.start, 3),
                    "end": round(c.end, 3),
                    "frames": len(c.frame_times),
                    "transcript": c.transcript,
                    "ocr": c.ocr,
                    "tags": c.tag_text,
                    "embeddings": None if c.embeddings is None else list(c.embeddings.shape),
                }
                for c in self.clips
            ],
            "ingested_until": self.ingested_until,
            "damage": [d.to_dict(digits=3) for d in self.damage],
            "damage_note": self.damage_note,
            "retrieval_index": self.retrieval_embeddings is not None,
            "text_index": self.text_embeddings is not None,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }
