"""Planning a prompt: which clips, re-sampled moments and subtitle lines a question gets, within the token budget.

Pure: it takes the memory, the parsed question, scores, moments, re-sampled segments and a cost function, and
returns the prompt's inputs (no models, no decoding), so every rule here is unit-tested on hand-built memories.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from model.llm import PromptInputs, VideoSegment
from model.memory.records import ClipRecord, VideoMemory
from model.qa.chapters import chapter_context
from model.qa.context import BEFORE, ContextChoice, asks_neighbour, select_clips
from model.qa.dense import DenseSegment
from model.qa.search import ClipScores, Moment, neighbour_line
from model.qa.timeparse import TimeQuery
from model.qa.types import ClipEvidence, RetrievalSettings
from model.speech import Transcript, subtitle_lines
from model.timecode import example_time, format_time

INSTRUCTIONS = (
    "You answer questions about a video using only the context given: clips with their time ranges, "
    "text seen on screen, things seen in the pictures, and a timed transcript of what is said. "
    "When you state something from the video, "
    "cite its time in square brackets like [{example}]. A question about what is said at a time is answered by "
    "quoting the transcript line whose time range contains that time. "
    "If the context does not contain the answer, say that you cannot tell from the video. "
    "Answer briefly."
)
FOCUS_MIN_SCORE = 1.0  # standardised clip score a ranked clip needs to join a question about a moment
FOCUS_WINDOWS = 4  # a focused question's subtitles come from its first windows (asked times, moments, best clips)
SEEN_LIMIT = 8  # visual tags per clip in the prompt (first seen first)
Window = tuple[float, float]


@dataclass
class PromptPlan:
    inputs: PromptInputs
    choice: ContextChoice
    evidence: list[ClipEvidence]
    focus: list[Window] = field(default_factory=list)  # what the answer is about (said lines, neighbour)
    history_dropped: int = 0  # oldest turns left out to keep the conversation in its budget


def trim_history(
    history: Sequence[tuple[str, str]], budget_tokens: int, turn_cost: Callable[[str, str], int]
) -> list[tuple[str, str]]:
    """The latest turns that fit `budget_tokens` together, in order: the oldest are dropped first, and nothing
    older than a turn that does not fit is kept (the model sees one unbroken recent stretch of the chat)."""
    kept: list[tuple[str, str]] = []
    used = 0
    for question, answer in reversed(history):
        used += turn_cost(question, answer)
        if used > budget_tokens:
            break
        kept.append((question, answer))
    return kept[::-1]


def seen_line(clip: ClipRecord, duration: float, limit: int = SEEN_LIMIT) -> str:
    """A clip's visual tags for the prompt, grouped by when each was first seen:
    "Seen: [01:00] cat, Egyptian cat; [01:04] person x2" (the first `limit` tags; "" without tags)."""
    groups: dict[str, list[str]] = {}
    items = list(zip(clip.tags, clip.tag_times, clip.tag_counts, strict=False))[:limit]
    for label, t, n in sorted(items, key=lambda item: item[1]):
        groups.setdefault(format_time(t, duration), []).append(f"{label} x{n}" if n > 1 else label)
    return ("Seen: " + "; ".join(f"[{at}] {', '.join(labels)}" for at, labels in groups.items())) if groups else ""


def screen_line(clip: ClipRecord, duration: float, onsets: Mapping[str, float] | None = None) -> str:
    """A clip's on-screen text with the time each line was first read: "On screen: [00:22] LIBRARY | [00:30] MARKET"
    (the model cites the time the text shows, not the clip's start). `onsets`: earlier first-show times that
    search found for some lines (frames decoded between the OCR'd ones), which replace the OCR'd time."""
    if not clip.ocr:
        return ""
    if len(clip.ocr_times) != len(clip.ocr):
        return "On screen: " + clip.ocr_text
    onsets = onsets or {}
    times = [min(t, onsets.get(text, t)) for text, t in zip(clip.ocr, clip.ocr_times, strict=True)]
    lines = [f"[{format_time(t, duration)}] {text}" for text, t in zip(clip.ocr, times, strict=True)]
    return "On screen: " + " | ".join(lines)


def screen_onsets(moments: Sequence[Moment], memory: VideoMemory) -> dict[int, dict[str, float]]:
    """Per clip index, the refined first-show time of each on-screen line a "when" moment starts on. Without it
    the clip says "[01:44] MUSEUM" (the OCR'd frame) beside the moment's "[01:38]", and the model cites 01:44."""
    out: dict[int, dict[str, float]] = {}
    for m in moments:
        if m.clip_index is not None and m.screen_line is not None:
            out.setdefault(m.clip_index, {})[m.screen_line] = m.start
    return out


def moment_segment(moment: Moment, duration: float) -> VideoSegment:
    """A moment that search found for a "when" question, as a prompt line the answer can cite."""
    return VideoSegment(
        start=moment.start,
        end=max(moment.end, moment.start),
        frame_times=[],
        embeddings=None,
        text=f"Search found {moment.reason}, starting at [{format_time(moment.start, duration)}]",
    )


def clip_segment(
    clip: ClipRecord,
    use_ocr: bool,
    use_tags: bool = True,
    duration: float = 0.0,
    onsets: Mapping[str, float] | None = None,
) -> VideoSegment:
    """The prompt segment a memory clip becomes: its embeddings (when encoded), its on-screen text and what its
    frames were seen to show (visual tags, with times)."""
    parts = [screen_line(clip, duration or clip.end, onsets) if use_ocr else ""]
    parts.append(seen_line(clip, duration or clip.end) if use_tags else "")
    return VideoSegment(
        start=clip.start,
        end=clip.end,
        frame_times=clip.frame_times,
        embeddings=clip.embeddings,
        text=". ".join(p for p in parts if p),
    )


def shows_anything(segment: VideoSegment) -> bool:
    """A lite clip with no screen text has nothing to show the model: its speech is in the subtitles."""
    return segment.embeddings is not None or bool(segment.text)


def subtitle_focus(
    memory: VideoMemory,
    question: str,
    tq: TimeQuery,
    moments: Sequence[Moment],
    said: Sequence[Window],
    windows: Sequence[Window],
    choice: ContextChoice,
) -> tuple[list[Window] | None, list[Window]]:
    """(the only windows whose subtitles a focused question sees, or None for all; what the answer is about).

    Focused questions (a time, a "when", a line that says the question's words, "what happens after") see
    only the subtitles near their moments: small models otherwise answer from other lines.
    """
    if tq.windows or moments:
        return list(windows[:FOCUS_WINDOWS]), []
    if said and asks_neighbour(question):  # "what happens after X": X's line and its neighbour
        neighbour = neighbour_line(memory, said[0], after=not BEFORE.search(question))
        return [said[0], *neighbour], neighbour or list(said[:1])
    if said:
        return list(said), list(said[:1])
    if asks_neighbour(question):  # no line says X: X's clip and the next one
        return [(memory.clips[i].start, memory.clips[i].end) for i in choice.priority[:2]], []
    return None, []


def anchor_note(memory: VideoMemory, question: str, said: Sequence[Window]) -> str:
    """For "what happens after/before X": where X's line is and where the line after (before) it starts, as a
    sentence after the question. Without it a small model answers from X's own line, which it sees first."""
    if not said or not asks_neighbour(question):
        return ""
    before = bool(BEFORE.search(question))
    neighbour = neighbour_line(memory, said[0], after=not before)
    if not neighbour:
        return ""
    (a, b), (c, _) = said[0], neighbour[0]
    x, y, z = (format_time(t, memory.duration) for t in (a, b, c))
    side = "before" if before else "after"
    return f"(What the question refers to is said at [{x}-{y}]; what comes right {side} it starts at [{z}].)"


def plan_prompt(
    memory: VideoMemory,
    question: str,
    tq: TimeQuery,
    scores: ClipScores | None,
    moments: Sequence[Moment],
    dense: Sequence[DenseSegment],
    said: Sequence[Window],
    settings: RetrievalSettings,
    budget_tokens: int,
    segment_cost: Callable[[VideoSegment], int],
    count_tokens: Callable[[str], int],
    history: Sequence[tuple[str, str]] = (),
    history_budget: int | None = None,
    turn_cost: Callable[[str, str], int] | None = None,
) -> PromptPlan:
    """Clips in budget (asked times, then ranks, then an overview), then subtitles nearest what was asked; the
    conversation so far in its own budget (`history_budget` tokens, by default half the context budget), measured
    with `turn_cost(question, answer)` (by default the tokens of both)."""
    found = [moment_segment(m, memory.duration) for m in moments] if settings.moments_in_prompt else []
    onsets = screen_onsets(moments, memory)
    dense_cost = sum(segment_cost(d.segment) for d in dense) + sum(segment_cost(f) for f in found)
    chapters = chapter_context(memory, question)  # a whole-video question also gets the chapters and summary
    dense_cost += count_tokens(chapters) if chapters else 0
    has_speech = settings.use_speech and bool(memory.transcript.segments)
    reserve = int(budget_tokens * (0.5 if not memory.has_video_embeddings else 0.25)) if has_speech else 0
    use_ocr, use_tags = settings.use_ocr, settings.use_tags
    # A question about a moment gets that moment, plus only clips that clearly match its words: unrelated
    # clips (an overview, weak ranks) put other scenes' text beside it and small models answer from those.
    focused = settings.time_without_unrelated and bool(tq.windows)
    choice = select_clips(
        memory.clips,
        tq,
        scores,
        budget_tokens=max(0, budget_tokens - reserve - dense_cost),
        clip_cost=lambda c: segment_cost(clip_segment(c, use_ocr, use_tags, memory.duration)),
        top_k=0 if focused and not asks_neighbour(question) else settings.top_k,
        overview=0 if focused else settings.overview_clips,
        min_score=FOCUS_MIN_SCORE if focused else None,
    )
    # Subtitles: lines near the asked moments first, then the chosen clips (best first), then the rest.
    subtitles = chapters
    answer_focus: list[Window] = []
    if has_speech:
        windows: list[Window] = [(max(0.0, d.segment.start - 3), d.segment.end + 3) for d in dense]
        windows += [(w.start, w.end) if not w.is_moment else (w.start - 5, w.start + 5) for w in tq.windows]
        windows += [(m.start, m.end) for m in moments]
        windows += list(said)  # lines that say the question's words
        windows += [(memory.clips[i].start, memory.clips[i].end) for i in choice.priority]
        focus, answer_focus = subtitle_focus(memory, question, tq, moments, said, windows, choice)
        transcript = memory.transcript
        if focus is not None and settings.focus_subtitles:
            near = [s for s in transcript.segments if any(s.start < b and s.end > a for a, b in focus)]
            transcript = Transcript(segments=near, language=transcript.language, duration=transcript.duration)
        sub_budget = max(0, budget_tokens - choice.used_tokens - dense_cost)
        subtitles = chapters + subtitle_lines(transcript, sub_budget, count_tokens, priority_windows=windows)

    segments: list[VideoSegment] = []
    evidence: list[ClipEvidence] = []
    for i in choice.clips:
        c = memory.clips[i]
        seg = clip_segment(c, use_ocr, use_tags, memory.duration, onsets.get(i))
        if shows_anything(seg):
            segments.append(seg)
        evidence.append(
            ClipEvidence(c.index, c.start, c.end, c.mid_time, choice.reasons.get(i, ""), memory.thumbnail(c.index))
        )
    for d in dense:
        segments.append(d.segment)
        evidence.append(d.evidence)
    segments += found  # the model states and cites what search found instead of guessing a clip start
    segments.sort(key=lambda s: s.start)  # chronological
    evidence.sort(key=lambda e: e.start)
    cost = turn_cost or (lambda q, a: count_tokens(q) + count_tokens(a))
    kept = trim_history(history, budget_tokens // 2 if history_budget is None else history_budget, cost)
    note = anchor_note(memory, question, said) if has_speech and settings.anchor_note else ""
    inputs = PromptInputs(
        question=f"{question}\n{note}" if note else question,
        segments=segments,
        subtitles=subtitles,
        history=kept,
        instructions=INSTRUCTIONS.format(example=example_time(memory.duration)),
        duration=memory.duration,
    )
    return PromptPlan(inputs, choice, evidence, answer_focus, history_dropped=len(history) - len(kept))
