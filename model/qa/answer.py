"""The streaming answer: prompt embeddings -> engine deltas -> checked citations, moments and fallbacks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Container, Sequence
from dataclasses import dataclass, field

from model.llm import Engine, GenerationParams, PromptBuilder, PromptInputs
from model.memory.records import VideoMemory
from model.qa.citations import Citation, check_citations
from model.qa.search import Moment, best_line_time
from model.qa.types import Answer, AnswerDelta, AnswerDone, ClipEvidence, PreparedQuestion
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


@dataclass
class Generation:
    """What `generate` streamed: the notes header, the model's whole text (stripped) and the timings so far."""

    timings: dict[str, float]
    header: str = ""
    text: str = ""
    started: float = field(default_factory=time.perf_counter)


async def generate(
    engine: Engine,
    prompt_builder: PromptBuilder,
    inputs: PromptInputs,
    notes: Sequence[str],
    params: GenerationParams,
    request_id: str,
    aborted: Container[str],
    out: Generation,
) -> AsyncIterator[AnswerDelta]:
    """Build the prompt, yield the notes header and then the engine's deltas; `out` holds the text and timings.

    `aborted` is checked after each delta (Stop from the UI), besides the engine's own abort. One home for the
    single-video and the cross-video answer, so their timings, window and stop handling cannot drift apart.
    """
    window = int(getattr(engine, "max_model_len", 0)) or None  # the engine's may be shorter than the model's
    t = time.perf_counter()
    embeds = await asyncio.to_thread(prompt_builder.build, inputs, params.max_tokens, window)
    out.timings["prompt_s"] = time.perf_counter() - t
    out.timings["prompt_tokens"] = float(embeds.shape[0])
    out.header = "".join(f"Note: {n}\n\n" for n in notes)
    if out.header:
        yield AnswerDelta(out.header)
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
    out.timings["first_token_s"] = first if first is not None else time.perf_counter() - t
    out.timings["generate_s"] = time.perf_counter() - t
    out.text = "".join(pieces).strip()


def finish(
    out: Generation,
    text: str,
    tail: str,
    citations: list[Citation],
    cite_notes: list[str],
    notes: list[str],
    evidence: list[ClipEvidence],
    moments: list[Moment],
) -> list[AnswerDelta | AnswerDone]:
    """The closing events: the citation notes, then `AnswerDone` with the whole answer and its timings."""
    events: list[AnswerDelta | AnswerDone] = []
    if cite_notes:
        events.append(AnswerDelta("\n\n" + "\n".join(f"Note: {n}" for n in cite_notes)))
    timings = out.timings
    timings["total_s"] = timings.get("prepare_s", 0.0) + time.perf_counter() - out.started
    answer = Answer(
        text=(out.header + text + tail).strip(),
        citations=citations,
        evidence=evidence,
        moments=moments,
        notes=notes + cite_notes,
        timings=timings,
    )
    events.append(AnswerDone(answer))
    return events


async def final_answer(events: AsyncIterator[AnswerDelta | AnswerDone]) -> Answer:
    """The `Answer` of an answer stream's last event (CLI, API, eval: callers that do not stream)."""
    answer = None
    async for event in events:
        if isinstance(event, AnswerDone):
            answer = event.answer
    if answer is None:
        raise RuntimeError("the answer stream ended without its final event")
    return answer


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
    out = Generation(dict(prepared.timings))
    async for delta in generate(
        engine, prompt_builder, prepared.inputs, prepared.notes, params, request_id, aborted, out
    ):
        yield delta
    text, citations, cite_notes = check_citations(out.text, memory.duration)

    tail = ""
    if prepared.moments:
        items = [f"[{format_time(m.start, memory.duration)}] {m.reason}" for m in prepared.moments]
        tail = "\n\nMoments that match: " + "; ".join(items)
        yield AnswerDelta(tail)
        for m in prepared.moments:
            citations.append(Citation(m.start, format_time(m.start, memory.duration), m.end, source="search"))
    if not citations:
        citations = fallback_citations(memory, question, prepared)
    for event in finish(out, text, tail, citations, cite_notes, prepared.notes, prepared.evidence, prepared.moments):
        yield event
