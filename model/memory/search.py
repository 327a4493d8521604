"""Ranking clips and transcript lines for a question: video-text similarity, text embeddings, keyword overlap."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
STOPWORDS = frozenset(
    ["a", "an", "the", "and", "or", "but", "if", "of", "at", "by", "for", "with", "about", "against", "between", "into", "through", "during", "before", "after", "above", "below", "to", "from", "up", "down", "in", "out", "on", "off", "over", "under", "again", "further", "then", "once", "here", "there", "when", "where", "why", "how", "all", "any", "both", "each", "few", "more", "most", "other", "some", "such", "no", "nor", "not", "only", "own", "same", "so", "than", "too", "very", "s", "t", "can", "will", "just", "don", "should", "now", "is", "are", "was", "were", "be", "been", "being", "have", "has", "had", "having", "do", "does", "did", "doing", "i", "me", "my", "we", "our", "you", "your", "he", "him", "his", "she", "her", "it", "its", "they", "them", "their", "what", "which", "who", "whom", "this", "that", "these", "those", "am", "would", "could", "video", "clip", "happen", "happens", "happened", "appear", "appears", "appeared", "say", "says", "said", "tell", "show", "shows", "shown", "time", "moment", "minute", "second", "seconds", "minutes", "part", "scene", "screen", "written", "write", "see", "seen", "there's", "what's", "mm", "ss"]
)  # fmt: skip


def words(text: str) -> list[str]:
    """Lower-case content words with a light plural strip ("balls" ~ "ball")."""
    out = []
    for w in _WORD.findall(text.lower()):
        if w in STOPWORDS or len(w) < 2:
            continue
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        out.append(w)
    return out


def keyword_scores(question: str, texts: Sequence[str]) -> np.ndarray:
    """[N] in [0, 1]: idf-weighted share of the question's content words found in each text."""
    q = set(words(question))
    if not q or not texts:
        return np.zeros(len(texts), dtype=np.float32)
    docs = [set(words(t)) for t in texts]
    df = Counter(w for d in docs for w in d if w in q)
    n = len(docs)
    idf = {w: math.log(1 + n / (1 + df.get(w, 0))) for w in q}
    total = sum(idf.values())
    return np.array([sum(idf[w] for w in q if w in d) / total for d in docs], dtype=np.float32)


@dataclass
class Moment:
    """A stretch of the video that matches a "when" question."""

    start: float
    end: float
    score: float
    reason: str  # what matched: 'speech: "..."', 'on screen: ...', 'video'
    clip_index: int | None = None

    @property
    def text(self) -> str:  # what the UI shows beside the seek link
        return self.reason


@dataclass
class ClipScores:
    """Per-clip relevance for one question; `combined` is what ranking uses."""

    combined: np.ndarray  # [N]
    parts: dict[str, np.ndarray] = field(default_factory=dict)  # "video" | "text" | "keyword" -> [N]

    def top(self, k: int) -> list[int]:
        order = np.argsort(-self.combined, kind="stable")
        return [int(i) for i in order[:k]]


def _standardise(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit spread over the clips, so signals on different scales can be added."""
    if x.size < 2:
        return np.zeros_like(x)
    std = float(x.std())
    return (x - x.mean()) / std if std > 1e-6 else np.zeros_like(x)


def combine_scores(parts: dict[str, np.ndarray], weights: dict[str, float] | None = None) -> ClipScores:
    weights = weights or {}
    n = len(next(iter(parts.values()))) if parts else 0
    combined = np.zeros(n, dtype=np.float32)
    for name, value in parts.items():
        combined += weights.get(name, 1.0) * _standardise(value.astype(np.float32))
    return ClipScores(combined=combined, parts=parts)


def overview_indices(n_clips: int, k: int) -> list[int]:
    """`k` evenly spread clip indices (segment midpoints) for a coarse look at the whole video."""
    if n_clips <= 0 or k <= 0:
        return []
    k = min(k, n_clips)
    step = n_clips / k
    return sorted({min(n_clips - 1, int(step * i + step / 2)) for i in range(k)})
