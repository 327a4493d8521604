"""Skip a model call on a frame that shows what the last frame it read showed (slides, talks, static shots).

`FrameGate.reuse(image)` gives the last result when the frame looks the same as the last frame read, else None;
`remember(image, result)` records a new read. "The same" is decided on a small grey thumbnail split in tiles:
every tile's mean absolute difference must stay under `threshold` (so a new caption in one corner counts as a
change even though the picture as a whole barely moved). Compared with the last frame *read*, not the last frame
seen, so a slow drift adds up until it is read again.
"""

from __future__ import annotations

from typing import Any

import numpy as np

THUMB = 64  # thumbnail side (pixels)
TILES = 8  # tiles per side: 8x8 tiles of 8x8 thumbnail pixels


def signature(image: np.ndarray, size: int = THUMB) -> np.ndarray:
    """uint8 [H, W, 3] RGB -> float32 [size, size] grey in [0, 1]."""
    import cv2

    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def tile_difference(a: np.ndarray, b: np.ndarray, tiles: int = TILES) -> float:
    """The largest per-tile mean absolute difference of two signatures (0: identical, 1: black vs white)."""
    n = a.shape[0] // tiles
    diff = np.abs(a - b)[: n * tiles, : n * tiles].reshape(tiles, n, tiles, n)
    return float(diff.mean(axis=(1, 3)).max())


class FrameGate:
    """Remembers the last frame a model read and its result; counts reads and reuses."""

    def __init__(self, threshold: float = 0.03) -> None:
        self.threshold = float(threshold)
        self._last: np.ndarray | None = None
        self._result: Any = None
        self.reads = 0
        self.reused = 0

    def reuse(self, image: np.ndarray) -> Any:
        """The last result when `image` looks like the last frame read; None when it must be read."""
        if self._last is None or tile_difference(signature(image), self._last) > self.threshold:
            return None
        self.reused += 1
        return self._result

    def remember(self, image: np.ndarray, result: Any) -> None:
        self._last = signature(image)
        self._result = result
        self.reads += 1

    def reset(self) -> None:
        """Forget the last frame (each chunk starts fresh, so a resumed ingest reads what a fresh one reads)."""
        self._last = None
        self._result = None
