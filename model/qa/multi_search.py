"""Ranking across several videos: one index over every clip of every video, and "which of my videos talks about X".

`pool_scores` pools every clip into one index with the signals `search.score_clips` uses (video-text and
text-embedding similarity, keywords), keyword idf over the pool and each signal standardised over the pool, so a
clip of one video and a clip of another are on one scale. `videos_about` finds moments per video with
`search.find_moments` and keeps the videos whose best match is a real one (words or meaning shared) and close to
the best video's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

from model.memory.records import VideoMemory
from model.qa.search import (
    MOMENT_MIN_SHARE,
    ClipScores,
    Moment,
    Onset,
    QuestionVectors,
    combine_scores,
    find_moments,
    keyword_scores,
    line_scores,
)
from model.timecode import citation_name

WHICH = re.compile(
    r"\b(?:which|what) (?:of (?:my|the|these|those) )?(?:videos?|clips?|recordings?|lectures?|files?|episodes?)\b"
    r"|\bin which (?:videos?|clips?|recordings?|lectures?|files?|episodes?)\b",
    re.IGNORECASE,
)
_FRAMING = re.compile(
    r"^(?:\s*(?:talks?|speaks?|mentions?|says?|said|shows?|showed|covers?|discuss(?:es)?|explains?|is|are|was|were|"
    r"has|have|had|contains?|features?|do|does|did|about|of|on|in|with|the|a|an|me|my|there|anything|something)\b)*",
    re.IGNORECASE,
)
MIN_SIMILARITY = 0.45  # a video "talks about X" with no shared word only when a line is this close in meaning


@dataclass(frozen=True)
class VideoRef:
    """One video of a cross-video question: its name as citations write it, and its memory."""

    name: str
    memory: VideoMemory

    @property
    def key(self) -> str:
        return self.memory.key

    @property
    def duration(self) -> float:
        return self.memory.duration


def label_videos(videos: Sequence[tuple[str, VideoMemory]]) -> list[VideoRef]:
    """Each (display name, memory) with a name the citation grammar reads, unique among them."""
    refs: list[VideoRef] = []
    taken: set[str] = set()
    for name, memory in videos:
        label = citation_name(name, taken)
        taken.add(label)
        refs.append(VideoRef(label, memory))
    return refs


@dataclass
class PooledScores:
    """Clip relevance over the clips of several videos, in one index."""

    scores: ClipScores  # [M] over the pool
    owner: np.ndarray  # [M] the video (index into the refs) each pooled clip belongs to
    clip: np.ndarray  # [M] the clip's index within its video

    def top(self, k: int) -> list[tuple[int, int]]:
        return [(int(self.owner[j]), int(self.clip[j])) for j in self.scores.top(k)]

    def for_video(self, v: int) -> ClipScores:
        """The pooled scores of video `v`'s clips (still on the pool's scale)."""
        sel = self.owner == v
        return ClipScores(self.scores.combined[sel], {k: p[sel] for k, p in self.scores.parts.items()})


def _pooled_part(refs: Sequence[VideoRef], vector: np.ndarray | None, attr: str) -> np.ndarray | None:
    """Similarity of every pooled clip to `vector` through the memories' index `attr` (None unless all have it)."""
    if vector is None:
        return None
    blocks = []
    for r in refs:
        emb = getattr(r.memory, attr)
        if emb is None or emb.shape[-1] != vector.shape[-1] or len(emb) != len(r.memory.clips):
            return None  # memories of different models are not on one scale: keywords only then
        blocks.append(emb @ vector)
    return np.concatenate(blocks).astype(np.float32) if blocks else None


def pool_scores(
    refs: Sequence[VideoRef], question: str, vectors: QuestionVectors, use_speech: bool = True, use_ocr: bool = True
) -> PooledScores | None:
    """One ranking of every clip of every video for `question`."""
    owner = [v for v, r in enumerate(refs) for _ in r.memory.clips]
    if not owner:
        return None
    clip = [c.index for r in refs for c in r.memory.clips]
    parts: dict[str, np.ndarray] = {}
    video = _pooled_part(refs, vectors.video, "retrieval_embeddings")
    if video is not None:
        parts["video"] = video
    text = _pooled_part(refs, vectors.text, "text_embeddings")
    if text is not None:
        parts["text"] = text
    texts = [
        c.transcript + (" " + " ".join(c.ocr) if use_ocr else "") if use_speech else " ".join(c.ocr)
        for r in refs
        for c in r.memory.clips
    ]
    parts["keyword"] = keyword_scores(question, texts)
    return PooledScores(combine_scores(parts), np.asarray(owner), np.asarray(clip))


def topic_of(question: str) -> str:
    """What "which of my videos talks about X?" looks for: X (the question itself when it is not such a question)."""
    m = WHICH.search(question)
    if m is None:
        return question
    rest = _FRAMING.sub("", question[m.end() :]).strip(" ?.!")
    return rest or question


def mentioned_videos(question: str, refs: Sequence[VideoRef]) -> list[int]:
    """The videos the question names ("... in lecture2.mp4", "in lecture2"): by full name or a distinctive stem."""
    q = question.lower()
    hits = []
    for v, r in enumerate(refs):
        name = r.name.lower()
        stem = PurePath(name).stem
        if name in q or (len(stem) >= 3 and re.search(rf"(?<![\w]){re.escape(stem)}(?![\w])", q)):
            hits.append(v)
    return hits if len(hits) < len(refs) else []


# ---------------------------------------------------------------------------------------------- which videos
@dataclass
class VideoMatches:
    """The moments of one video that match a query (best first)."""

    name: str
    key: str
    score: float
    moments: list[Moment]

    def to_dict(self) -> dict[str, object]:
        return {
            "video": self.name,
            "key": self.key,
            "score": round(self.score, 4),
            "moments": [
                {"start": round(m.start, 3), "end": round(m.end, 3), "score": round(m.score, 4), "reason": m.reason}
                for m in self.moments
            ],
        }


def really_matches(memory: VideoMemory, question: str, vectors: QuestionVectors) -> bool:
    """The video shares a word of the question (speech or screen) or has a line close in meaning."""
    _segs, score, kw = line_scores(memory, question, vectors)
    if kw.size and float(kw.max()) > 0:
        return True
    if memory.clips and float(keyword_scores(question, [" ".join(c.ocr) for c in memory.clips]).max()) > 0:
        return True
    return bool(score.size) and float((score - kw).max()) >= MIN_SIMILARITY


def videos_about(
    refs: Sequence[VideoRef],
    question: str,
    vectors: QuestionVectors,
    pooled: PooledScores | None,
    limit: int = 3,
    onset: Onset | None = None,
) -> list[VideoMatches]:
    """Per video, the moments matching `question` (its topic, for "which videos talk about X"); only videos that
    really match, best video first."""
    question = topic_of(question)
    found: list[VideoMatches] = []
    for v, r in enumerate(refs):
        if not really_matches(r.memory, question, vectors):
            continue
        scores = pooled.for_video(v) if pooled is not None else None
        if onset is None:
            moments = find_moments(r.memory, question, scores, vectors, limit)
        else:
            moments = find_moments(r.memory, question, scores, vectors, limit, onset=onset)
        for m in moments:
            m.video = r.name
        if moments:
            found.append(VideoMatches(r.name, r.key, moments[0].score, moments))
    if not found:
        return []
    best = max(f.score for f in found)
    return sorted((f for f in found if f.score >= MOMENT_MIN_SHARE * best), key=lambda f: -f.score)
