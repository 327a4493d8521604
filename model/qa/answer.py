"""The streaming answer: prompt embeddings -> engine deltas -> checked citations, moments and fallbacks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Container

from model.llm import Engine, GenerationParams, PromptBuilder
from model.memory.records import VideoMemory
from model.qa.citations import Citation, check_citations
from model.qa.search import best_line_time
from model.qa.types import Answer, AnswerDelta, AnswerDone, PreparedQuestion
from model.timecode import format_time


def fallback_citations(memory: VideoMemory, question: str, prepared: PreparedQuestion) -> list[Citation]:
    """When the model cited nothing: point at what it was shown for the question."""
    cites: list[Citation] = []
    for w in prepared.time_query.windows:
        end = w.end if w.end > w.start else None
        cites.append(Citation(w.start, format_time(w.start, memory.duration), end, "evidence"))
    for a, b in prepared.focus[:1]:  # the line that says what was asked (or the one after it)
        cites.append(Citation(a, format_time(a, memory.duration), b, "evidence"))
    if not cites and prepared.scores is not None:
        best = memory.clips[prepared.scores.top(1)[0]]
        when = best_line_time(memory, question, best)
        cites.append(Citation(when, format_time(when, memory.duration), None, "evidence"))
    return cites


async def stream_answer(
    engine: Engine,
    prompt_builder: PromptBuilder,
    memory: VideoMemory,
    question: str,
    prepared: PreparedQuestion,
    params: GenerationParams,
    request_id: str,
    aborted: Container[str] = (),
) -> AsyncIterator[AnswerDelta | AnswerDone]:
    """Stream the answer's text; the last event is `AnswerDone` with the checked `Answer`.

    `aborted` is checked after each delta (Stop from the UI), besides the engine's own abort.
    """
    t_start = time.perf_counter()
    t = time.perf_counter()
    window = int(getattr(engine, "max_model_len", 0)) or None  # the engine's window may be shorter than the model's
    embeds = await asyncio.to_thread(prompt_builder.build, prepared.inputs, params.max_tokens, window)
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
    text, citations, cite_notes = check_citations("".join(pieces).strip(), memory.duration)

    tail = ""
    if prepared.moments:
        items = [f"[{format_time(m.start, memory.duration)}] {m.reason}" for m in prepared.moments]
        tail = "\n\nMoments that match: " + "; ".join(items)
        yield AnswerDelta(tail)
        for m in prepared.moments:
            citations.append(Citation(m.start, format_time(m.start, memory.duration), m.end, source="search"))
    if not citations:
        citations = fallback_citations(memory, question, prepared)
    if cite_notes:
        yield AnswerDelta("\n\n" + "\n".join(f"Note: {n}" for n in cite_notes))
    timings["total_s"] = timings.get("prepare_s", 0.0) + time.perf_counter() - t_start
    yield AnswerDone(
        Answer(
            text=(header + text + tail).strip(),
            citations=citations,
            evidence=prepared.evidence,
            moments=prepared.moments,
            notes=prepared.notes + cite_notes,
            timings=timings,
        )
    )
