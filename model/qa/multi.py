"""Questions across several videos: one index over all their clips, one prompt naming each clip's video, and
citations that carry their video (`[lecture2.mp4 03:10]`), each checked against its own video's length.

The ranking across videos is `multi_search` (`pool_scores`, `videos_about`), the prompt is `multi_plan`
(`plan_multi`, pure); this module is the facade and the answer with its per-video citations.

`MultiVideoQA(assistant)` reuses the process's Assistant (its models, question embeddings, token counter,
engine), so it works with every profile: lite prompts carry on-screen text and subtitles, the GPU profile's
clips carry their InternVideo2 embeddings, each introduced with its video's name.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from model.llm import GenerationParams, PromptInputs
from model.memory.records import VideoMemory
from model.qa.answer import Generation, final_answer, finish, generate
from model.qa.assistant import Assistant
from model.qa.citations import Citation, check_video_citations
from model.qa.multi_plan import Window, plan_multi
from model.qa.multi_search import (
    WHICH,
    VideoMatches,
    VideoRef,
    label_videos,
    mentioned_videos,
    pool_scores,
    really_matches,
    topic_of,
    videos_about,
)
from model.qa.plan import trim_history
from model.qa.search import Moment, said_windows
from model.qa.timeparse import parse_time_refs
from model.qa.types import (
    Answer,
    AnswerDelta,
    AnswerDone,
    ChatSettings,
    ClipEvidence,
    QuestionError,
)
from model.timecode import format_time

# the names tests and the app import from here (their homes are multi_search and multi_plan)
__all__ = [
    "WHICH",
    "MultiPrepared",
    "MultiVideoQA",
    "VideoMatches",
    "VideoRef",
    "label_videos",
    "mentioned_videos",
    "plan_multi",
    "pool_scores",
    "stream_multi_answer",
    "videos_about",
]

HISTORY_SHARE = 0.25  # of the context budget, for the conversation so far


# ---------------------------------------------------------------------------------------------- the question
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
    focus: list[Window] = field(default_factory=list)  # (video, start, end) the answer is about

    @property
    def durations(self) -> dict[str, float]:
        return {r.name: r.duration for r in self.refs}


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
                if ref.memory.transcript.segments and really_matches(ref.memory, topic, vectors):
                    said += [(v, s, e) for s, e in said_windows(ref.memory, topic, vectors, k=1)]
        timings["moments_s"] = time.perf_counter() - t

        t = time.perf_counter()
        budget = a.config.context_budget_tokens
        cost = a.count_tokens
        hist = trim_history(history or [], int(budget * HISTORY_SHARE), lambda q, ans: cost(q) + cost(ans) + 8)
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
        return await final_answer(self.ask(videos, question, **kwargs))  # type: ignore[arg-type]


def _moment_cite(m: Moment, refs: Sequence[VideoRef]) -> Citation:
    duration = next((r.duration for r in refs if r.name == m.video), None)
    label = f"{m.video} {format_time(m.start, duration)}" if m.video else format_time(m.start, duration)
    return Citation(m.start, label, m.end, source="search", video=m.video)


async def stream_multi_answer(
    assistant: Assistant, prepared: MultiPrepared, params: GenerationParams, request_id: str
) -> AsyncIterator[AnswerDelta | AnswerDone]:
    """The prompt -> engine deltas -> citations checked per video, the matching moments, fallbacks."""
    out = Generation(dict(prepared.timings))
    async for delta in generate(
        assistant.engine,
        assistant.prompt_builder,
        prepared.inputs,
        prepared.notes,
        params,
        request_id,
        assistant._aborted,
        out,
    ):
        yield delta
    refs = prepared.refs
    default = prepared.evidence[0].video if prepared.evidence else (refs[0].name if len(refs) == 1 else None)
    text, citations, cite_notes = check_video_citations(out.text, prepared.durations, default)

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
    for event in finish(
        out, text, tail, citations, cite_notes, prepared.notes, prepared.evidence, list(prepared.moments)
    ):
        yield event
