"""Ranking clips and transcript lines for a question (video-text similarity, text embeddings, keyword overlap),
and the moments that answer a "when" question. Pure: the question arrives embedded (`QuestionVectors`)."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from model.memory.records import ClipRecord, VideoMemory
from model.speech import Segment
from model.vision.labels import labels_named

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
    video: str | None = None  # the video's name, when moments of several videos are listed together
    screen_line: str | None = None  # the clip's OCR'd line this moment was found in (on-screen moments only)

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


# ---------------------------------------------------------------------------------------------- over a memory
MOMENT_MIN_SHARE = 0.5  # a found moment must score at least this share of the best one
SUMMARY = re.compile(  # questions about the whole video: they get all of it, not the lines that match words
    r"\b(summar\w*|overview|overall|main (?:point|idea|topic)s?|describe the (?:whole )?video|"
    r"(?:video|clip|it) about|whole video|everything)\b",
    re.IGNORECASE,
)
Onset = Callable[[VideoMemory, ClipRecord, str], tuple[float, str]]
# Questions about text ("when does the word HARBOR appear?") are answered by OCR, not by what the tags saw.
ABOUT_TEXT = re.compile(r"\b(words?|written|writing|text|caption|title|spell\w*|says?|read)\b", re.IGNORECASE)
SEEN_WEIGHT = 1.5  # a clip that shows every thing the question names scores like a line that says its words


@dataclass(frozen=True)
class QuestionVectors:
    """The question embedded once per question, for each index the memory has (None where it has none)."""

    text: np.ndarray | None = None  # [d] sentence embedding
    video: np.ndarray | None = None  # [512] stage-2 text embedding


def quote(text: str, limit: int = 80) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def seen_scores(memory: VideoMemory, question: str) -> np.ndarray | None:
    """[N] in [0, 1]: the share of the things the question names ("bike", "kitty", "coffee mug") that each clip's
    visual tags show, synonyms included (`model.vision.labels`). None when the question names nothing that can
    be seen, asks about text, or the memory has no tags."""
    if ABOUT_TEXT.search(question) or not any(c.tags for c in memory.clips):
        return None
    named = labels_named(question)
    if not named:
        return None
    return np.array(
        [sum(1 for labels in named.values() if labels.intersection(c.tags)) / len(named) for c in memory.clips],
        dtype=np.float32,
    )


def first_sighting(clip: ClipRecord, question: str) -> tuple[float, str]:
    """When a clip's tags first show something the question names: (time, the tag)."""
    wanted = frozenset().union(*labels_named(question).values())
    hits = [
        (t, k, label) for k, (label, t) in enumerate(zip(clip.tags, clip.tag_times, strict=False)) if label in wanted
    ]
    if not hits:
        return clip.start, ""
    t, _, label = min(hits)  # the earliest; at one time, the tag listed first (objects before scene labels)
    return t, label


def score_clips(
    memory: VideoMemory,
    question: str,
    vectors: QuestionVectors,
    use_speech: bool = True,
    use_ocr: bool = True,
    use_tags: bool = True,
) -> ClipScores | None:
    """Relevance of every clip: stage-2 video-text similarity, text-embedding similarity, keywords, and the
    things its visual tags show ("seen")."""
    if not memory.clips:
        return None
    parts: dict[str, np.ndarray] = {}
    if vectors.video is not None and memory.retrieval_embeddings is not None:
        parts["video"] = memory.retrieval_embeddings @ vectors.video
    if vectors.text is not None and memory.text_embeddings is not None:
        parts["text"] = memory.text_embeddings @ vectors.text
    texts = [
        c.transcript + (" " + " ".join(c.ocr) if use_ocr else "") if use_speech else " ".join(c.ocr)
        for c in memory.clips
    ]
    parts["keyword"] = keyword_scores(question, texts)
    seen = seen_scores(memory, question) if use_tags else None
    if seen is not None:
        parts["seen"] = seen
    return combine_scores(parts)


def line_scores(
    memory: VideoMemory, question: str, vectors: QuestionVectors
) -> tuple[list[Segment], np.ndarray, np.ndarray]:
    """Transcript lines with text, their relevance (keywords + sentence similarity) and keyword part alone."""
    segs = [s for s in memory.transcript.segments if s.text.strip()]
    if not segs:
        return [], np.zeros(0, np.float32), np.zeros(0, np.float32)
    kw = keyword_scores(question, [s.text for s in segs])
    score = kw.copy()
    emb = memory.segment_embeddings
    if vectors.text is not None and emb is not None and len(emb) == len(memory.transcript.segments):
        keep = [i for i, s in enumerate(memory.transcript.segments) if s.text.strip()]
        score = score + emb[keep] @ vectors.text
    return segs, score, kw


def said_windows(memory: VideoMemory, question: str, vectors: QuestionVectors, k: int = 2) -> list[tuple[float, float]]:
    """The few transcript lines that share the question's words (best first); none for summary questions."""
    if SUMMARY.search(question):
        return []
    segs, score, kw = line_scores(memory, question, vectors)
    order = [int(i) for i in np.argsort(-score) if kw[int(i)] > 0][:k]
    return [(segs[i].start, segs[i].end) for i in order]


def neighbour_line(memory: VideoMemory, line: tuple[float, float], after: bool) -> list[tuple[float, float]]:
    """The transcript line right after (or before) the one spanning `line`, as a window."""
    segs = [s for s in memory.transcript.segments if s.text.strip()]
    if after:
        later = [s for s in segs if s.start >= line[1] - 0.05]
        return [(later[0].start, later[0].end)] if later else []
    earlier = [s for s in segs if s.end <= line[0] + 0.05]
    return [(earlier[-1].start, earlier[-1].end)] if earlier else []


def best_line_time(memory: VideoMemory, question: str, clip: ClipRecord) -> float:
    """Inside a clip, the start of the transcript line that matches the question best (else the clip's start)."""
    segs = [s for s in memory.transcript.segments if s.start < clip.end and s.end > clip.start and s.text.strip()]
    if not segs:
        return clip.start
    kw = keyword_scores(question, [s.text for s in segs])
    return float(max(segs[int(np.argmax(kw))].start, clip.start)) if kw.max() > 0 else clip.start


def text_run_start(memory: VideoMemory, index: int, question: str) -> int:
    """The earliest of the consecutive clips before `index` whose screen text has the same asked words."""
    target = set(words(question)) & set(words(" ".join(memory.clips[index].ocr)))
    while index > 0 and target and target <= set(words(" ".join(memory.clips[index - 1].ocr))):
        index -= 1
    return index


def coarse_onset(memory: VideoMemory, clip: ClipRecord, question: str) -> tuple[float, str]:
    """The first OCR'd frame of `clip` whose line shares most of the question's words: (its time, the line)."""
    q = set(words(question))
    best_line, best_t, best_hit = "", clip.start, 0
    for line, t in zip(clip.ocr, clip.ocr_times, strict=False):
        hit = len(q & set(words(line)))
        if hit > best_hit or (hit == best_hit and hit and t < best_t):
            best_line, best_t, best_hit = line, t, hit
    return best_t, best_line


def find_moments(
    memory: VideoMemory,
    question: str,
    scores: ClipScores | None,
    vectors: QuestionVectors,
    limit: int = 3,
    onset: Onset = coarse_onset,
) -> list[Moment]:
    """Best-matching stretches: transcript lines (speech), clips with matching on-screen text or pictures, and
    runs of clips whose visual tags show what the question names ("seen: cat", from its first sighting).

    `onset` says when a clip's matching on-screen text first shows (`qa.onset.OnsetFinder` refines it by
    decoding frames; the default reads the OCR'd frames only).
    """
    candidates: list[Moment] = []
    segs, seg_score, _ = line_scores(memory, question, vectors)
    if segs:
        for i in np.argsort(-seg_score)[: limit * 2]:
            s = segs[int(i)]
            candidates.append(Moment(s.start, s.end, float(seg_score[i]), f'speech: "{quote(s.text)}"'))
    if scores is not None:
        ocr_kw = keyword_scores(question, [" ".join(c.ocr) for c in memory.clips])
        text_sim = scores.parts.get("text", np.zeros(len(memory.clips)))
        video = scores.parts.get("video")
        clip_score = ocr_kw + text_sim * (ocr_kw > 0) + (0 if video is None else video)
        for i in np.argsort(-clip_score)[: limit * 2]:
            c = memory.clips[int(i)]
            if ocr_kw[i] > 0:
                first = memory.clips[text_run_start(memory, int(i), question)]
                start, line = onset(memory, first, question)
                reason = f"on screen: {quote(line)}"
                candidates.append(Moment(start, c.end, float(clip_score[i]), reason, first.index, screen_line=line))
            elif video is not None:
                candidates.append(Moment(c.start, c.end, float(clip_score[i]), "matching picture", c.index))
        candidates += seen_moments(memory, question, scores.parts.get("seen"))
    chosen: list[Moment] = []
    for m in sorted(candidates, key=lambda m: -m.score):
        if m.score <= 0 or (chosen and m.score < MOMENT_MIN_SHARE * chosen[0].score):
            continue  # weak matches beside a clear one only send the user to the wrong place
        if any(abs(m.start - o.start) < 5.0 or (m.start < o.end and o.start < m.end) for o in chosen):
            continue
        chosen.append(m)
        if len(chosen) == limit:
            break
    return chosen


def seen_moments(memory: VideoMemory, question: str, seen: np.ndarray | None) -> list[Moment]:
    """One moment per run of consecutive clips whose tags show what the question names, from its first sighting,
    in time order. Runs that show as much score alike, so the earliest sighting is the first moment."""
    if seen is None:
        return []
    out: list[Moment] = []
    i, n = 0, len(memory.clips)
    while i < n:
        if seen[i] <= 0:
            i += 1
            continue
        j = i
        while j + 1 < n and seen[j + 1] > 0:
            j += 1
        start, label = first_sighting(memory.clips[i], question)
        share = float(seen[i : j + 1].max())
        out.append(Moment(start, memory.clips[j].end, SEEN_WEIGHT * share, f"seen: {label}", memory.clips[i].index))
        i = j + 1
    return out
