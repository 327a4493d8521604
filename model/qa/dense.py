"""Re-sampling an asked moment: frames around it (not just the memory's 1 fps clips), encoded, its screen read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from model.llm import VideoSegment
from model.media import sample_window
from model.memory.clip_reading import SeenTags, read_screen
from model.memory.records import VideoMemory, format_tags
from model.protocols import OCR, ImageTagger
from model.qa.timeparse import TimeWindow
from model.qa.types import ClipEvidence
from model.timecode import format_time

EncodeClips = Callable[[np.ndarray], "torch.Tensor | None"]  # uint8 [B, T, H, W, 3] -> [B, 96, hidden] | None


@dataclass
class DenseSegment:
    segment: VideoSegment
    evidence: ClipEvidence


def dense_segment(
    memory: VideoMemory,
    window: TimeWindow,
    frames: int | None,
    encode: EncodeClips | None,
    ocr: OCR | None,
    tagger: ImageTagger | None = None,
) -> DenseSegment:
    """`frames` frames within ±2 s (±5 s for "around") of a moment, encoded with `encode`; the asked frame's text
    and what it shows (visual tags)."""
    t = window.start
    pad = 5.0 if window.approximate else 2.0
    a, b = max(0.0, t - pad), min(memory.duration, t + pad)
    short = int(memory.sampling.get("short_side", 224))
    embeds = None
    frame_times: list[float] = []
    if encode is not None and frames:
        sampled = sample_window(str(memory.path), a, b, n=frames, short_side=short)
        out = encode(sampled.images[None])
        embeds = None if out is None else out[0]  # [96, hidden]
        frame_times = [float(x) for x in sampled.times] if embeds is not None else []
    at = sample_window(str(memory.path), t, t, n=1, short_side=short)  # the frame shown at the asked time
    when = format_time(float(at.times[0]), memory.duration)
    parts: list[str] = []
    if ocr is not None:
        lines = read_screen(ocr, at.images[0])
        if lines:
            parts.append(f"On screen at [{when}]: " + " | ".join(lines))
    if tagger is not None:
        seen = SeenTags()
        seen.add_frame(tagger.tag(at.images[0]), float(at.times[0]))
        if seen.labels:
            parts.append(f"Seen at [{when}]: " + format_tags(seen.labels, seen.counts, seen.sources))
    text = ". ".join(parts)
    image = at.images[0]
    thumb = image[:: max(1, image.shape[0] // 120), :: max(1, image.shape[1] // 160)].copy()
    seg = VideoSegment(start=a, end=b, frame_times=frame_times, embeddings=embeds, text=text)
    ev = ClipEvidence(-1, a, b, float(at.times[0]), f"re-sampled around {window.text}", thumb)
    return DenseSegment(seg, ev)
