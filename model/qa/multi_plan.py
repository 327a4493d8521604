"""The prompt of a question across several videos (pure): clips and subtitle lines of every video in one budget,
each introduced with its video's name so citations can carry it (`[lecture2.mp4 03:10]`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from model.llm import PromptInputs, VideoSegment
from model.qa.multi_search import PooledScores, VideoRef
from model.qa.plan import clip_segment, shows_anything
from model.qa.search import SUMMARY, Moment, overview_indices
from model.qa.timeparse import TimeQuery
from model.qa.types import ClipEvidence, RetrievalSettings
from model.timecode import example_time, format_range

MULTI_INSTRUCTIONS = (
    "You answer questions about several videos using only the context given: clips and timed subtitles, each "
    "named by its video. When you state something from a video, cite the video and the time in square brackets "
    "like [{example}]. If the context does not contain the answer, say that you cannot tell from the videos. "
    "Answer briefly."
)
FOCUS_LINES = 6  # a focused question's subtitles: the lines near its best windows across the videos

Window = tuple[int, float, float]  # (video, start, end)


def _overlaps(start: float, end: float, w: Window) -> bool:
    return start < w[2] and end > w[1] if w[2] > w[1] else start <= w[1] <= end


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
