"""Questions across several videos: one index over all their clips, one prompt naming each clip's video, and
citations that carry their video (`[lecture2.mp4 03:10]`), each checked against its own video's length.

Ranking pools every clip of every video into one index (`pool_scores`): the same signals `search.score_clips`
uses (video-text and text-embedding similarity, keywords), with keyword idf over the pool and each signal
standardised over the pool, so a clip of one video and a clip of another are on one scale. "Which of my videos
talks about X" (`videos_about`) finds moments per video with `search.find_moments` and keeps the videos whose
best match is a real one (words or meaning shared) and close to the best video's.

`MultiVideoQA(assistant)` reuses the process's Assistant (its models, question embeddings, token counter,
engine), so it works with every profile: lite prompts carry on-screen text and subtitles, the GPU profile's
clips carry their InternVideo2 embeddings, each introduced with its video's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath

import numpy as np

from model.llm import GenerationParams, PromptInputs, VideoSegment
from model.memory.records import VideoMemory
from model.qa.assistant import Assistant
from model.qa.citations import Citation, check_video_citations
from model.qa.plan import clip_segment, shows_anything
from model.qa.search import (
    MOMENT_MIN_SHARE,
    SUMMARY,
    ClipScores,
    Moment,
    QuestionVectors,
    combine_scores,
    find_moments,
    keyword_scores,
    line_scores,
    overview_indices,
    said_windows,
)
from model.qa.timeparse import TimeQuery, parse_time_refs
from model.qa.types import (
    Answer,
    AnswerDelta,
    AnswerDone,
    ChatSettings,
    ClipEvidence,
    QuestionError,
    RetrievalSettings,
)
from model.timecode import citation_name, example_time, format_range, format_time

MULTI_INSTRUCTIONS = (
    "You answer questions about several videos using only the context given: clips and timed subtitles, each "
    "named by its video. When you state something from a video, cite the video and the time in square brackets "
    "like [{example}]. If the context does not contain the answer, say that you cannot tell from the videos. "
    "Answer briefly."
)
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
FOCUS_LINES = 6  # a focused question's subtitles: the lines near its best windows across the videos
HISTORY_SHARE = 0.25  # of the context budget, for the conversation so far


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


def _really_matches(memory: VideoMemory, question: str, vectors: QuestionVectors) -> bool:
    """The video shares a word of the question (speech or screen) or has a line close in meaning."""
    _segs, score, kw = line_scores(memory, question, vectors)
    if kw.size and float(kw.max()) > 0:
        return True
    if memory.clips and float(keyword_scores(question, [" ".join(c.ocr) for c in memory.clips]).max()) > 0:
        return True
    return bool(score.size) and float((score - kw).max()) >= MIN_SIMILARITY


Onset = Callable[..., tuple[float, str]]


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
        if not _really_matches(r.memory, question, vectors):
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


# ---------------------------------------------------------------------------------------------- the prompt
@dataclass
class MultiPrepared:
    """Everything decided before generation for a question across several videos."""

    inputs: PromptInputs
    refs: list[VideoRef]
    evidence: list[ClipEvidence]
    moments: list[Moment]  # each with its video's name
    matches: list[VideoMatches]  # "which of my videos ...": the matching videos and their moments
    notes: list[str]
    timings: dict[str, float]
    focus: list[tuple[int, float, float]] = field(default_factory=list)  # (video, start, end) the answer is about

    @property
    def durations(self) -> dict[str, float]:
        return {r.name: r.duration for r in self.refs}


Window = tuple[int, float, float]  # (video, start, end)


def _overlaps(start: float, end: float, w: Window) -> bool:
    return start < w[2] and end > w[1] if w[2] > w[1] else start <= w[1] <= end


def _trim_history(history: Sequence[tuple[str, str]], budget: int, cost: Callable[[str], int]) -> list[tuple[str, str]]:
    """The latest turns that fit in `budget` tokens, in order."""
    kept: list[tuple[str, str]] = []
    used = 0
    for q, a in reversed(history):
        c = cost(q) + cost(a) + 8
        if used + c > budget:
            break
        kept.insert(0, (q, a))
        used += c
    return kept


def plan_multi(
    refs: Sequence[VideoRef],
    question: str,
    time_queries: Sequence[TimeQuery | None],
    pooled: PooledScores | None,
    moments: Sequence[Moment],
    said: Sequence[Window],
    settings: RetrievalSettings,
    budget_tokens: int,
    segment_cost: Callable[[VideoSegment, float], int],
    count_tokens: Callable[[str], int],
    history: Sequence[tuple[str, str]] = (),
) -> tuple[PromptInputs, list[ClipEvidence], list[Window]]:
    """Clips and subtitle lines of several videos in one budget: asked times, found moments and lines that say the
    question's words first, then the best clips of the pool, then (for summaries) an overview of every video.
    Pure; returns (the prompt's inputs, the evidence, the windows the answer is about)."""
    index = {r.name: v for v, r in enumerate(refs)}
    windows: list[Window] = []
    for v, tq in enumerate(time_queries):
        for w in tq.windows if tq is not None else []:
            windows.append((v, w.start - 5, w.start + 5) if w.is_moment else (v, w.start, w.end))
    windows += [(index[m.video], m.start, m.end) for m in moments if m.video in index]
    windows += list(said)
    focused = bool(windows)
    ranked = pooled.top(settings.top_k + len(refs)) if pooled is not None else []
    wanted: list[tuple[int, int, str]] = []
    for v, a, b in windows:
        clip = refs[v].memory.clip_at((a + b) / 2) if refs[v].memory.clips else None
        if clip is not None:
            wanted.append((v, clip.index, "asked"))
    wanted += [(v, i, f"rank {k}") for k, (v, i) in enumerate(ranked, start=1)]
    if SUMMARY.search(question) or not focused:  # each video gets an overview, round robin
        spreads = [overview_indices(len(r.memory.clips), settings.overview_clips) for r in refs]
        for k in range(max((len(s) for s in spreads), default=0)):
            wanted += [(v, s[k], "overview") for v, s in enumerate(spreads) if k < len(s)]

    has_speech = settings.use_speech and any(r.memory.transcript.segments for r in refs)
    lite = not all(r.memory.has_video_embeddings for r in refs)
    reserve = int(budget_tokens * (0.5 if lite else 0.25)) if has_speech else 0
    chosen: list[tuple[int, int, str]] = []
    seen: set[tuple[int, int]] = set()
    used = 0
    for v, i, why in wanted:
        if (v, i) in seen:
            continue
        seen.add((v, i))
        clip = refs[v].memory.clips[i]
        seg = clip_segment(clip, settings.use_ocr, settings.use_tags, refs[v].duration)
        seg.video = refs[v].name
        cost = segment_cost(seg, refs[v].duration) if shows_anything(seg) else 0
        if used + cost > budget_tokens - reserve:
            continue
        chosen.append((v, i, why))
        used += cost

    subtitles = ""
    if has_speech:
        lines: list[tuple[int, int, float, float, str]] = []  # (rank, video, start, end, text)
        priority = windows + [(v, refs[v].memory.clips[i].start, refs[v].memory.clips[i].end) for v, i, _ in chosen]
        for v, r in enumerate(refs):
            for s in r.memory.transcript.segments:
                text = " ".join(s.text.split())
                if not text:
                    continue
                hits = [k for k, w in enumerate(priority) if w[0] == v and _overlaps(s.start, s.end, w)]
                rank = hits[0] if hits else len(priority)
                if focused and settings.focus_subtitles and (not hits or rank >= len(windows) + FOCUS_LINES):
                    continue  # a focused question sees only the lines near what it asks (small models drift)
                lines.append((rank, v, s.start, s.end, f"[{r.name} {format_range(s.start, s.end, r.duration)}] {text}"))
        # the wanted lines first; then, round robin over the videos in time order, the rest while budget lasts
        order = sorted(range(len(lines)), key=lambda j: (lines[j][0], lines[j][2], lines[j][1]))
        keep: list[int] = []
        sub_used = 0
        sub_budget = max(0, budget_tokens - used)
        for j in order:
            cost = count_tokens(lines[j][4]) + 1
            if sub_used + cost <= sub_budget:
                keep.append(j)
                sub_used += cost
        keep.sort(key=lambda j: (lines[j][1], lines[j][2]))  # grouped by video, in time order
        subtitles = "\n".join(lines[j][4] for j in keep)

    segments: list[VideoSegment] = []
    evidence: list[ClipEvidence] = []
    for v, i, why in sorted(chosen, key=lambda x: (x[0], refs[x[0]].memory.clips[x[1]].start)):
        r = refs[v]
        c = r.memory.clips[i]
        seg = clip_segment(c, settings.use_ocr, settings.use_tags, r.duration)
        seg.video = r.name
        if shows_anything(seg):
            segments.append(seg)
        evidence.append(ClipEvidence(c.index, c.start, c.end, c.mid_time, why, r.memory.thumbnail(c.index), r.name))
    example = f"{refs[0].name} {example_time(refs[0].duration)}" if refs else "video.mp4 02:15"
    inputs = PromptInputs(
        question=question,
        segments=segments,
        subtitles=subtitles,
        history=list(history),
        instructions=MULTI_INSTRUCTIONS.format(example=example),
        duration=0.0,  # several videos: no one length line
    )
    return inputs, evidence, windows


# ---------------------------------------------------------------------------------------------- the facade
class MultiVideoQA:
    """Cross-video questions with the process's Assistant (its models, engine and question embeddings)."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant

    def refs(self, videos: Sequence[tuple[str, VideoMemory]]) -> list[VideoRef]:
        if not videos:
            raise QuestionError("Pick at least one video to ask about.")
        return label_videos(videos)

    def videos_about(
        self, videos: Sequence[tuple[str, VideoMemory]], query: str, limit: int = 3, refine: bool = True
    ) -> list[VideoMatches]:
        """Which of `videos` talk about `query`, with their matching moments (best video first)."""
        query = (query or "").strip()
        if not query:
            raise QuestionError("Please type what to look for.")
        refs = self.refs(videos)
        topic = topic_of(query)
        vectors = self.assistant.question_vectors(topic)
        pooled = pool_scores(refs, topic, vectors)
        return videos_about(refs, query, vectors, pooled, limit, self.assistant.onset if refine else None)

    def prepare(
        self,
        videos: Sequence[tuple[str, VideoMemory]],
        question: str,
        history: Sequence[tuple[str, str]] | None = None,
        settings: ChatSettings | None = None,
    ) -> MultiPrepared:
        settings = settings or ChatSettings()
        r = settings.retrieval
        question = (question or "").strip()
        if not question:
            raise QuestionError("Please type a question about the videos.")
        a = self.assistant
        refs = self.refs(videos)
        timings: dict[str, float] = {}
        t = time.perf_counter()
        topic = topic_of(question)  # "which of my videos talks about X": search for X
        vectors = a.question_vectors(topic)
        named = mentioned_videos(question, refs)
        pool_refs = [refs[v] for v in named] if named else list(refs)
        pooled = pool_scores(pool_refs, topic, vectors, r.use_speech, r.use_ocr)
        timings["retrieval_s"] = time.perf_counter() - t

        t = time.perf_counter()
        tqs = [parse_time_refs(question, ref.duration) for ref in pool_refs]
        notes = sorted({n for tq in tqs for n in tq.notes}) if len(pool_refs) == 1 else []
        when = any(tq.is_when_question and not tq.windows for tq in tqs)
        which = bool(WHICH.search(question))
        matches: list[VideoMatches] = []
        moments: list[Moment] = []
        if which or when:
            matches = videos_about(pool_refs, topic, vectors, pooled, r.max_moments, a.onset)
            moments = sorted((m for vm in matches for m in vm.moments), key=lambda m: -m.score)
            if not which:
                moments = moments[: r.max_moments]
        said: list[Window] = []
        if r.use_speech and not moments and not any(tq.windows for tq in tqs):
            for v, ref in enumerate(pool_refs):
                if ref.memory.transcript.segments and _really_matches(ref.memory, topic, vectors):
                    said += [(v, s, e) for s, e in said_windows(ref.memory, topic, vectors, k=1)]
        timings["moments_s"] = time.perf_counter() - t

        t = time.perf_counter()
        budget = a.config.context_budget_tokens
        hist = _trim_history(history or [], int(budget * HISTORY_SHARE), a.count_tokens)
        inputs, evidence, focus = plan_multi(
            pool_refs,
            question,
            tqs,
            pooled,
            moments,
            said,
            r,
            budget_tokens=budget,
            segment_cost=a.prompt_builder.segment_cost,
            count_tokens=a.count_tokens,
            history=hist,
        )
        timings["context_s"] = time.perf_counter() - t
        return MultiPrepared(inputs, list(pool_refs), evidence, moments, matches, notes, timings, focus)

    async def ask(
        self,
        videos: Sequence[tuple[str, VideoMemory]],
        question: str,
        history: Sequence[tuple[str, str]] | None = None,
        settings: ChatSettings | None = None,
        request_id: str | None = None,
    ) -> AsyncIterator[AnswerDelta | AnswerDone]:
        """Stream the answer; the last event is `AnswerDone` whose citations each name their video."""
        settings = settings or ChatSettings()
        request_id = request_id or f"multi-{time.monotonic_ns()}"
        t = time.perf_counter()
        prepared = await asyncio.to_thread(self.prepare, videos, question, history, settings)
        prepared.timings["prepare_s"] = time.perf_counter() - t
        a = self.assistant
        a._aborted.discard(request_id)
        params = a.generation_params(settings)
        async for event in stream_multi_answer(a, prepared, params, request_id):
            yield event

    async def answer(self, videos: Sequence[tuple[str, VideoMemory]], question: str, **kwargs: object) -> Answer:
        """The final Answer of `ask` (API, bench)."""
        answer = None
        async for event in self.ask(videos, question, **kwargs):  # type: ignore[arg-type]
            if isinstance(event, AnswerDone):
                answer = event.answer
        if answer is None:
            raise RuntimeError("the answer stream ended without its final event")
        return answer


def _moment_cite(m: Moment, refs: Sequence[VideoRef]) -> Citation:
    duration = next((r.duration for r in refs if r.name == m.video), None)
    label = f"{m.video} {format_time(m.start, duration)}" if m.video else format_time(m.start, duration)
    return Citation(m.start, label, m.end, source="search", video=m.video)


async def stream_multi_answer(
    assistant: Assistant, prepared: MultiPrepared, params: GenerationParams, request_id: str
) -> AsyncIterator[AnswerDelta | AnswerDone]:
    """The prompt -> engine deltas -> citations checked per video, the matching moments, fallbacks."""
    engine, builder, aborted = assistant.engine, assistant.prompt_builder, assistant._aborted
    t_start = time.perf_counter()
    t = time.perf_counter()
    embeds = await asyncio.to_thread(builder.build, prepared.inputs, params.max_tokens)
    timings = dict(prepared.timings)
    timings["prompt_s"] = time.perf_counter() - t
    timings["prompt_tokens"] = float(embeds.shape[0])
    header = "".join(f"Note: {n}\n\n" for n in prepared.notes)
    if header:
        yield AnswerDelta(header)
    pieces: list[str] = []
    t = time.perf_counter()
    first = None
    stream = engine.stream(embeds, params, request_id)
    try:
        async for delta in stream:
            if first is None:
                first = time.perf_counter() - t
            pieces.append(delta)
            yield AnswerDelta(delta)
            if request_id in aborted:
                break
    finally:
        with contextlib.suppress(Exception):
            await stream.aclose()
    timings["first_token_s"] = first if first is not None else time.perf_counter() - t
    timings["generate_s"] = time.perf_counter() - t
    refs = prepared.refs
    default = prepared.evidence[0].video if prepared.evidence else (refs[0].name if len(refs) == 1 else None)
    text, citations, cite_notes = check_video_citations("".join(pieces).strip(), prepared.durations, default)

    tail = ""
    if prepared.matches:
        rows = []
        for vm in prepared.matches:
            items = ", ".join(f"[{_moment_cite(m, refs).label}] {m.reason}" for m in vm.moments)
            rows.append(f"{vm.name}: {items}")
        tail = "\n\nVideos that match: " + "; ".join(rows)
    elif prepared.moments:
        tail = "\n\nMoments that match: " + "; ".join(
            f"[{_moment_cite(m, refs).label}] {m.reason}" for m in prepared.moments
        )
    if tail:
        yield AnswerDelta(tail)
        citations += [_moment_cite(m, refs) for m in prepared.moments]
    if not citations:  # the model cited nothing: point at what it was shown for the question
        for v, a, _b in prepared.focus[:1]:
            r = refs[v]
            citations.append(Citation(a, f"{r.name} {format_time(a, r.duration)}", None, "evidence", r.name))
        if not citations and prepared.evidence:
            ev = prepared.evidence[0]
            dur = next((r.duration for r in refs if r.name == ev.video), None)
            citations.append(Citation(ev.start, f"{ev.video} {format_time(ev.start, dur)}", None, "evidence", ev.video))
    if cite_notes:
        yield AnswerDelta("\n\n" + "\n".join(f"Note: {n}" for n in cite_notes))
    timings["total_s"] = timings.get("prepare_s", 0.0) + time.perf_counter() - t_start
    yield AnswerDone(
        Answer(
            text=(header + text + tail).strip(),
            citations=citations,
            evidence=prepared.evidence,
            moments=list(prepared.moments),
            notes=prepared.notes + cite_notes,
            timings=timings,
        )
    )
