"""The question path's front door: ingest a video into its memory, prepare a question, stream a cited answer.

`Assistant(models, config)` is built once per process by `model.runtime.Runtime.assistant()` and shared by
every session; it receives models through small Protocols (`model.protocols`), never a Runtime.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model.errors import VideoChatError
from model.llm import Engine, GenerationParams, PromptBuilder
from model.memory.cache import MemoryCache
from model.memory.ingest import IngestConfig, IngestModels, Ingestor
from model.memory.job import IngestJob
from model.memory.records import VideoMemory
from model.memory.stream import StreamConfig, StreamIngestor
from model.qa.answer import final_answer, stream_answer
from model.qa.chapters import Chapters, ChapterStore, write_chapters, writer_id
from model.qa.dense import DenseSegment, dense_segment
from model.qa.onset import OnsetFinder
from model.qa.partial import needed_until, seen_note, split_unseen, unseen_note, waited_note
from model.qa.plan import INSTRUCTIONS, plan_prompt
from model.qa.search import SUMMARY, ClipScores, Moment, QuestionVectors, find_moments, said_windows, score_clips
from model.qa.timeparse import parse_time_refs
from model.qa.types import (
    MAX_QUESTION_CHARS,
    Answer,
    AnswerDelta,
    AnswerDone,
    ChatSettings,
    PreparedQuestion,
    QuestionError,
    check_question,
)

Progress = Callable[[str, float], None]
log = logging.getLogger(__name__)
PROMPT_FRAME_TOKENS = 128  # the template's own text around context, history and question (an upper bound)


@dataclass
class QAModels(IngestModels):
    """Ingest's models plus the LLM side."""

    engine: Engine | None = None
    prompt_builder: PromptBuilder | None = None


@dataclass(frozen=True)
class AnswerConfig:
    """The profile's answer defaults."""

    context_budget_tokens: int = 6000
    history_budget_tokens: int | None = None  # the conversation so far; None: half the context budget
    max_question_chars: int = MAX_QUESTION_CHARS
    max_new_tokens: int = 256
    temperature: float = 0.0
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    stop: tuple[str, ...] = ()
    ingest: IngestConfig = field(default_factory=IngestConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)  # chunked, resumable ingest
    wait_for_ingest_s: float = 60.0  # a question about a time not ingested yet waits this long at most


class Assistant:
    """Per-process front door: one set of models and one MemoryCache shared by all sessions."""

    def __init__(
        self,
        models: QAModels,
        config: AnswerConfig | None = None,
        cache: MemoryCache | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        if models.engine is None or models.prompt_builder is None:
            raise ValueError("Assistant needs an LLM engine and its prompt builder")
        self.models = models
        self.engine: Engine = models.engine
        self.prompt_builder: PromptBuilder = models.prompt_builder
        self.config = config or AnswerConfig()
        self.cache = cache or MemoryCache(cache_dir)
        self.ingestor = Ingestor(models, self.config.ingest, self.cache)
        self.onset = OnsetFinder(models.ocr)
        # Ingest is the memory layer's: chunk by chunk, resumable, from the cache when these models made it before.
        # `ingest` returns the complete memory; `start_ingest` returns the shared job, usable after its first chunk.
        self.streams = StreamIngestor(self.ingestor, self.config.stream)
        self.ingest = self.streams.memory_for
        self.start_ingest: Callable[..., IngestJob] = self.streams.start
        self.sampling_for = self.ingestor.sampling_for
        self.key_for = self.streams.key_for
        self._aborted: set[str] = set()
        self._chapter_tasks: dict[str, asyncio.Future[Chapters]] = {}
        self._dense_encodes = 0

    # ------------------------------------------------------------------------------------------ ingest
    @property
    def encoder_calls(self) -> int:
        """Clips encoded by this assistant (ingest + re-sampled moments): tests count recomputation with it."""
        return self.ingestor.encoder_calls

    # ------------------------------------------------------------------------------------------ search
    @functools.lru_cache(maxsize=256)  # noqa: B019  (lives as long as the process-wide Assistant)
    def question_vectors(self, question: str) -> QuestionVectors:
        """The question embedded once for every index: clip ranking, line ranking and moments share it."""
        m = self.models
        text = None if m.text_embedder is None else np.asarray(m.text_embedder.embed([question])[0])
        video = None if m.retrieval is None else m.retrieval.encode_text([question]).float().numpy()[0]
        return QuestionVectors(text=text, video=video)

    def score_clips(
        self, memory: VideoMemory, question: str, settings: ChatSettings | None = None
    ) -> ClipScores | None:
        r = (settings or ChatSettings()).retrieval
        return score_clips(memory, question, self.question_vectors(question), r.use_speech, r.use_ocr, r.use_tags)

    def find_moments(
        self, memory: VideoMemory, question: str, scores: ClipScores | None, limit: int = 3, refine: bool = True
    ) -> list[Moment]:
        vectors = self.question_vectors(question)
        if refine:
            return find_moments(memory, question, scores, vectors, limit, onset=self.onset)
        return find_moments(memory, question, scores, vectors, limit)

    # ------------------------------------------------------------------------------------------ prepare
    @functools.lru_cache(maxsize=1 << 16)  # noqa: B019  (the same lines are counted for every question)
    def count_tokens(self, text: str) -> int:
        return self.prompt_builder.count_tokens(text)

    def prepare(
        self,
        memory: VideoMemory,
        question: str,
        history: list[tuple[str, str]] | None = None,
        settings: ChatSettings | None = None,
    ) -> PreparedQuestion:
        """Decide the prompt: time references, ranking, moments, dense re-sampling, then the plan in budget."""
        settings = settings or ChatSettings()
        r = settings.retrieval
        question = check_question(question, self.config.max_question_chars)
        history_budget = self.history_budget(question, settings)
        timings: dict[str, float] = {}
        t = time.perf_counter()
        tq = parse_time_refs(question, memory.duration)
        partial_notes: list[str] = []
        if not memory.complete:  # ingest still running: answer over what is seen, say how far that is
            tq, unseen = split_unseen(tq, memory.seen_until)
            partial_notes = [n for n in (seen_note(memory), unseen_note(unseen, memory)) if n]
        timings["timeparse_s"] = time.perf_counter() - t

        t = time.perf_counter()
        scores = self.score_clips(memory, question, settings)
        timings["retrieval_s"] = time.perf_counter() - t
        moments: list[Moment] = []
        if tq.is_when_question and not tq.windows:
            t = time.perf_counter()
            moments = self.find_moments(memory, question, scores, limit=r.max_moments)
            timings["moments_s"] = time.perf_counter() - t

        t = time.perf_counter()
        dense = [self._dense(memory, w, settings) for w in [w for w in tq.windows if w.is_moment][:3]]
        timings["dense_s"] = time.perf_counter() - t

        t = time.perf_counter()
        speech = r.use_speech and bool(memory.transcript.segments)
        said = (
            said_windows(memory, question, self.question_vectors(question))
            if speech and not (tq.windows or moments)
            else []
        )
        plan = plan_prompt(
            memory,
            question,
            tq,
            scores,
            moments,
            dense,
            said,
            r,
            budget_tokens=self.config.context_budget_tokens,
            segment_cost=lambda seg: self.prompt_builder.segment_cost(seg, memory.duration),
            count_tokens=self.count_tokens,
            history=history or [],
            history_budget=history_budget,
            turn_cost=self.prompt_builder.history_cost,
        )
        timings["context_s"] = time.perf_counter() - t
        return PreparedQuestion(
            plan.inputs, tq, plan.choice, plan.evidence, moments, partial_notes + tq.notes, timings, scores, plan.focus
        )

    def history_budget(self, question: str, settings: ChatSettings) -> int:
        """Tokens the conversation so far may take: the configured share, within what the engine's window leaves
        after the video context, the question, the instructions and the answer. A question that leaves no room
        for the video context is refused."""
        c = self.config
        window = min(self.prompt_builder.max_model_len, int(getattr(self.engine, "max_model_len", 0)) or 1 << 30)
        question_tokens = self.count_tokens(question)
        if question_tokens > c.context_budget_tokens // 2:
            raise QuestionError(
                f"The question is {question_tokens} tokens long; this model takes questions of up to "
                f"{c.context_budget_tokens // 2} tokens. Ask a shorter question."
            )
        reserve = self.count_tokens(INSTRUCTIONS) + PROMPT_FRAME_TOKENS
        answer = self.generation_params(settings).max_tokens
        room = window - answer - c.context_budget_tokens - question_tokens - reserve
        wanted = c.context_budget_tokens // 2 if c.history_budget_tokens is None else c.history_budget_tokens
        return max(0, min(wanted, room))

    def _dense(self, memory: VideoMemory, window: Any, settings: ChatSettings) -> DenseSegment:
        r = settings.retrieval
        enc = self.models.encoder
        frames = r.dense_frames or (enc.frames_per_clip if enc is not None else None)
        encode = self.ingestor.encode_clips if enc is not None else None
        tagger = self.models.tagger if r.use_tags else None
        return dense_segment(memory, window, frames, encode, self.models.ocr if r.use_ocr else None, tagger)

    # ------------------------------------------------------------------------------------------ ask
    def generation_params(self, settings: ChatSettings) -> GenerationParams:
        g = settings.generation
        return GenerationParams(
            max_tokens=int(g.max_tokens or self.config.max_new_tokens),
            temperature=float(self.config.temperature if g.temperature is None else g.temperature),
            top_p=g.top_p,
            seed=g.seed,
            stop=list(self.config.stop) or None,
            repetition_penalty=self.config.repetition_penalty,
            frequency_penalty=self.config.frequency_penalty,
        )

    async def ask(
        self,
        memory: VideoMemory,
        question: str,
        history: list[tuple[str, str]] | None = None,
        settings: ChatSettings | None = None,
        request_id: str | None = None,
    ) -> AsyncIterator[AnswerDelta | AnswerDone]:
        """Stream the answer; the last event is `AnswerDone` with the checked `Answer`."""
        settings = settings or ChatSettings()
        request_id = request_id or f"ask-{time.monotonic_ns()}"
        t = time.perf_counter()
        waited: list[str] = []
        if not memory.complete:  # a question about a stretch not ingested yet waits for it, or is told so
            memory, waited, refusal = await self.wait_for_asked(memory, question)
            if refusal is not None:
                yield AnswerDelta(refusal.text)
                yield AnswerDone(refusal)
                return
        if memory.complete and SUMMARY.search(question):  # whole-video questions see the chapters and summary
            try:
                await self.chapters(memory)
            except VideoChatError as err:
                log.warning("no chapters for %s: %s", memory.key[:8], err)
        prepared = await asyncio.to_thread(self.prepare, memory, question, history, settings)
        prepared.notes[:0] = waited
        prepared.timings["prepare_s"] = time.perf_counter() - t
        self._aborted.discard(request_id)
        stream = stream_answer(
            self.engine,
            self.prompt_builder,
            memory,
            prepared.inputs.question,
            prepared,
            self.generation_params(settings),
            request_id,
            self._aborted,
        )
        async for event in stream:
            yield event

    async def chapters(self, memory: VideoMemory) -> Chapters | None:
        """The video's chapters and summary (a complete memory only): kept on the memory and beside its cache entry,
        else written now by the LLM, once per video and LLM (concurrent callers share the work)."""
        if not memory.complete or not memory.clips:
            return None
        writer = writer_id(self.prompt_builder)
        if isinstance(memory.chapters, Chapters) and memory.chapters.writer == writer:
            return memory.chapters
        store = ChapterStore(self.cache.entry_dir(memory.key), writer)
        made = store.load()
        if made is None:
            task = self._chapter_tasks.get(memory.key)
            if task is None:
                task = asyncio.ensure_future(write_chapters(memory, self.engine, self.prompt_builder))
                self._chapter_tasks[memory.key] = task
                key = memory.key

                def forget(_task: asyncio.Future[Chapters]) -> None:
                    self._chapter_tasks.pop(key, None)

                task.add_done_callback(forget)
            made = await asyncio.shield(task)  # a stopped answer does not stop the chapters others wait for
            store.save(made)
        memory.chapters = made
        return made

    async def wait_for_asked(self, memory: VideoMemory, question: str) -> tuple[VideoMemory, list[str], Answer | None]:
        """For a memory still being ingested: wait (up to `wait_for_ingest_s`) until the times the question asks
        about are ingested. Returns (the newest memory, notes about the wait, an answer saying the asked times are
        not ingested yet when the question is only about them and they do not come in time; else None)."""
        tq = parse_time_refs(question, memory.duration)
        _, unseen = split_unseen(tq, memory.seen_until)
        job = self.streams.job(memory.key)
        if not unseen:
            return memory, [], None
        need = max(needed_until(w, memory.duration) for w in unseen)
        notes: list[str] = []
        if job is not None and job.running:
            eta = job.eta_for(need)
            limit = self.config.wait_for_ingest_s
            if eta is None or eta <= limit:
                t = time.perf_counter()
                newer = await asyncio.to_thread(job.wait_for, need, limit)
                if newer is not None:
                    memory = newer
                if memory.seen_until >= need or memory.complete:
                    notes.append(waited_note(unseen[0], time.perf_counter() - t, memory))
        kept, unseen = split_unseen(tq, memory.seen_until)
        if unseen and not kept.windows:
            eta = None if job is None else job.eta_for(max(needed_until(w, memory.duration) for w in unseen))
            text = unseen_note(unseen, memory, eta)
            return memory, notes, Answer(text=text, notes=[text])
        return memory, notes, None

    async def abort(self, request_id: str) -> None:
        self._aborted.add(request_id)
        await self.engine.abort(request_id)

    async def answer(self, memory: VideoMemory, question: str, **kwargs: Any) -> Answer:
        """Convenience: the final Answer of `ask` (CLI, eval)."""
        return await final_answer(self.ask(memory, question, **kwargs))
