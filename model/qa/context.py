"""Which clips a question gets: time references first, then the best-ranked clips, then an overview; in budget."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from model.memory.records import ClipRecord
from model.qa.search import ClipScores, overview_indices
from model.qa.timeparse import TimeQuery

FOLLOW = re.compile(r"\b(after|afterwards|next|then|following|later)\b", re.IGNORECASE)
BEFORE = re.compile(r"\b(before|previous|prior|earlier)\b", re.IGNORECASE)


def asks_neighbour(question: str) -> bool:
    """ "What happens after/before X?": the answer is next to the best match, not in it."""
    return bool(FOLLOW.search(question) or BEFORE.search(question))


@dataclass
class ContextChoice:
    clips: list[int]  # chosen clip indices, chronological
    reasons: dict[int, str] = field(default_factory=dict)  # why each was chosen ("time 02:15", "rank 1", "overview")
    priority: list[int] = field(default_factory=list)  # the same clips, most wanted first
    used_tokens: int = 0


def clips_in_window(clips: Sequence[ClipRecord], start: float, end: float) -> list[int]:
    """Clips overlapping [start, end]; for a moment (start == end) the clip that holds it."""
    if end <= start:
        hits = [c.index for c in clips if c.start <= start < c.end]
        if not hits and clips:  # past the last clip's end or in a gap: the nearest clip
            hits = [min(clips, key=lambda c: min(abs(c.start - start), abs(c.end - start))).index]
        return hits
    return [c.index for c in clips if c.start < end and c.end > start]


def _spread(indices: list[int], scores: ClipScores | None) -> list[int]:
    """Order a window's clips: by score when there is one, else evenly spread first (so a cut keeps coverage)."""
    if scores is not None:
        return sorted(indices, key=lambda i: -float(scores.combined[i]))
    ordered: list[int] = []
    for k in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024):
        for j in overview_indices(len(indices), k):
            if indices[j] not in ordered:
                ordered.append(indices[j])
        if len(ordered) == len(indices):
            break
    return ordered + [i for i in indices if i not in ordered]


def select_clips(
    clips: Sequence[ClipRecord],
    tq: TimeQuery,
    scores: ClipScores | None,
    budget_tokens: int,
    clip_cost: Callable[[ClipRecord], int],
    top_k: int = 4,
    overview: int = 3,
    min_score: float | None = None,
) -> ContextChoice:
    """Pick clips in priority order while they fit in `budget_tokens`; return them in time order.

    Priority: clips inside the question's time windows; the `top_k` best-ranked clips (fewer when the question
    names times); the clip right after (or before) the best hit for "what happens after/before ..."; then
    `overview` evenly spread clips so questions about the whole video see all of it.
    """
    wanted: list[tuple[int, str]] = []
    for w in tq.windows:
        label = w.text
        for i in _spread(clips_in_window(clips, w.start, w.end), scores):
            wanted.append((i, f"asked time ({label})"))
    if scores is not None and len(clips):
        k = min(top_k, max(1, top_k // 2)) if tq.windows else top_k  # asked times come first; top_k=0: none
        ranked = scores.top(k)
        if min_score is not None:  # with asked times, weak ranks are left out; otherwise keep the best one
            ranked = [i for i in ranked if scores.combined[i] >= min_score] or ([] if tq.windows else ranked[:1])
        for rank, i in enumerate(ranked, start=1):
            wanted.append((i, f"rank {rank}"))
        if ranked and not tq.windows:
            best = ranked[0]
            if FOLLOW.search(tq.question) and best + 1 < len(clips):
                wanted.insert(1, (best + 1, "right after the best match"))
            if BEFORE.search(tq.question) and best > 0:
                wanted.insert(1, (best - 1, "right before the best match"))
    for i in overview_indices(len(clips), overview):
        wanted.append((i, "overview"))

    chosen: list[int] = []
    reasons: dict[int, str] = {}
    used = 0
    for i, why in wanted:
        if i in reasons:
            continue
        cost = clip_cost(clips[i])
        if used + cost > budget_tokens:
            continue
        chosen.append(i)
        reasons[i] = why
        used += cost
    return ContextChoice(clips=sorted(chosen), reasons=reasons, priority=chosen, used_tokens=used)
