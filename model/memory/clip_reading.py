"""What ingest reads from a clip's frames: which frames each model sees, the on-screen lines (OCR), the visual tags
with the time each was first seen, and the clip's thumbnail. Used by the build loop and by the dense re-sampling
of an asked moment (`model.qa.dense`), so both read a frame the same way."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model.media import segment_indices
from model.memory.gate import FrameGate
from model.protocols import OCR, ImageTagger, VisualTag


def pick_frames(clip_images: np.ndarray, n: int) -> np.ndarray:
    """[B, T, ...] -> [B, n, ...]: the frames a model that sees `n` per clip gets (InternVideo2's midpoints)."""
    have = clip_images.shape[1]
    if have == n:
        return clip_images
    return clip_images[:, [min(have - 1, i) for i in segment_indices(have, n)]]


def ocr_frames(n_have: int, n_want: int) -> list[int]:
    """Frames of a clip that OCR reads: evenly spaced and ending on the last frame, so text that appears
    anywhere in the clip and stays is seen in this clip (not first in the next one)."""
    if n_want >= n_have:
        return list(range(n_have))
    return sorted({round(x) for x in np.linspace(0, n_have - 1, n_want + 1)[1:]})


def tag_frames(n_have: int, n_want: int) -> list[int]:
    """Frames of a clip the tagger sees: every (n_have / n_want)-th from the first, so the gaps between tagged
    frames stay even across clips and a thing is first seen at most one gap after it shows."""
    if n_want >= n_have:
        return list(range(n_have))
    return sorted({int(i * n_have / n_want) for i in range(max(0, n_want))})


@dataclass
class SeenTags:
    """A clip's tags: distinct labels in first-seen order (the ClipRecord's parallel lists)."""

    labels: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    @classmethod
    def from_frames(cls, frames: Sequence[tuple[float, Sequence[VisualTag]]], sure: float = 0.0) -> SeenTags:
        """The tags of a clip's tagged frames (in time order). A detection below `sure` counts only when the same
        label is also found in a neighbouring tagged frame: a thing really there stays a while, while a one-frame
        guess (a cartoon taken for a cat) does not, and would otherwise be its first sighting."""
        seen = cls()
        labels = [{tag.label for tag in tags} for _, tags in frames]
        for k, (t, tags) in enumerate(frames):
            near = (labels[k - 1] if k > 0 else set()) | (labels[k + 1] if k + 1 < len(frames) else set())
            seen.add_frame([tag for tag in tags if tag.score >= sure or tag.label in near], t)
        return seen

    def add_frame(self, tags: Sequence[VisualTag], t: float) -> None:
        per_frame = Counter(tag.label for tag in tags)
        for tag in tags:
            if tag.label in self.labels:
                j = self.labels.index(tag.label)
                self.counts[j] = max(self.counts[j], per_frame[tag.label])
                continue
            self.labels.append(tag.label)
            self.times.append(float(t))
            self.counts.append(per_frame[tag.label])
            self.sources.append(tag.source)


def read_screen(ocr: OCR, image: np.ndarray) -> list[str]:
    """Distinct on-screen lines of one frame, in reading order."""
    lines: list[str] = []
    for text, _conf in ocr.read(image):
        if text not in lines:
            lines.append(text)
    return lines


def thumbnail_jpeg(image: np.ndarray, width: int) -> bytes:
    """One RGB frame as a JPEG at most `width` wide (the clip thumbnails the UI and the library show)."""
    import cv2

    h, w = image.shape[:2]
    if w > width:
        image = cv2.resize(image, (width, max(2, round(h * width / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return buf.tobytes() if ok else b""


def tag_clip(
    tagger: ImageTagger | None,
    images: np.ndarray,
    times: list[float],
    frames_per_clip: int,
    sure: float,
    gate: FrameGate | None = None,
) -> SeenTags:
    """Objects and scene labels of a few frames of a clip, each with the first time it was seen. With a `gate`,
    a frame that looks like the last one tagged keeps that frame's tags instead of being tagged again."""
    if tagger is None or frames_per_clip <= 0:
        return SeenTags()

    def tag(image: np.ndarray) -> Any:
        got = gate.reuse(image) if gate is not None else None
        if got is None:
            got = tagger.tag(image)
            if gate is not None:
                gate.remember(image, got)
        return got

    frames = [(times[j], tag(images[j])) for j in tag_frames(len(images), frames_per_clip)]
    return SeenTags.from_frames(frames, sure)


def read_clip_screen(
    ocr: OCR | None, images: np.ndarray, times: list[float], frames_per_clip: int, gate: FrameGate | None = None
) -> tuple[list[str], list[float]]:
    """Distinct on-screen lines of a few frames of a clip, each with the first time it was seen. With a `gate`,
    a frame that looks like the last one read keeps that frame's lines instead of being read again."""
    if ocr is None or frames_per_clip <= 0:
        return [], []
    lines: list[str] = []
    seen_at: list[float] = []
    for j in ocr_frames(len(images), frames_per_clip):
        read = gate.reuse(images[j]) if gate is not None else None
        if read is None:
            read = read_screen(ocr, images[j])
            if gate is not None:
                gate.remember(images[j], read)
        for text in read:
            if text not in lines:
                lines.append(text)
                seen_at.append(float(times[j]))
    return lines, seen_at
