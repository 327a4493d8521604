"""Chapters and a summary of a whole video: where its talk, screen text and tags change, titled by the LLM.

Boundaries are change points of the memory's per-clip text embeddings (speech + on-screen text + visual tags, the
rows ingest already made for search): the cosine distance between the mean embedding of the clips before and after
each clip edge, peaks kept greedily (strongest first, a minimum chapter length apart, above a threshold set by the
video's own spread). Each boundary is then moved to the transcript line where the lines themselves change most
(segment embeddings), or to the first sighting of the new screen text, so it lands within seconds of the change.
The LLM writes a short title per chapter and a 2-3 sentence summary from the titles (one short prompt each,
submitted together so vLLM batches them). Chapters are cached beside the memory per LLM (`ChapterStore`) and are
made again only when the models change. Exports: WebVTT chapters, a YouTube-style "00:00 Title" list, Markdown.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model.llm import Engine, GenerationParams, PromptBuilder, PromptInputs
from model.memory.records import ClipRecord, VideoMemory
from model.qa.search import SUMMARY
from model.timecode import format_time

log = logging.getLogger(__name__)

CHAPTERS_VERSION = 1  # bump when boundaries or prompts change: cached chapters are made again
TITLE_INSTRUCTIONS = (
    "You write chapter titles for a video. Reply with the title only: two to six words, "
    "no quotes, no times, no full stop."
)
TITLE_QUESTION = "Write a short title for this part of the video."
SUMMARY_INSTRUCTIONS = (
    "You summarize videos from their chapter list. Write two or three sentences about what the whole video "
    "covers, in order. Use only what the list says."
)
SUMMARY_QUESTION = "Summarize the video."
CHAPTER_TEXT_CHARS = 700  # what a title prompt sees of its chapter
CHANGE_FLOOR = 0.3  # text change (1 - cos) below this is talk going on (MiniLM: 0.05-0.26 within a topic)
Embed = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class Chapter:
    start: float
    end: float
    title: str


@dataclass
class Chapters:
    chapters: list[Chapter]
    summary: str = ""
    writer: str = ""  # the LLM (and prompt version) that wrote the titles
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "chapters": [asdict(c) for c in self.chapters],
            "summary": self.summary,
            "writer": self.writer,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Chapters:
        return cls(
            chapters=[Chapter(float(c["start"]), float(c["end"]), str(c["title"])) for c in d["chapters"]],
            summary=str(d.get("summary", "")),
            writer=str(d.get("writer", "")),
            timings={str(k): float(v) for k, v in d.get("timings", {}).items()},
        )

    @property
    def starts(self) -> list[float]:
        return [c.start for c in self.chapters]


# ------------------------------------------------------------------------------------------------- boundaries
def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def novelty(rows: np.ndarray, valid: np.ndarray, k: int) -> np.ndarray:
    """[N] change score at each row edge i (between rows i-1 and i; 0 for i=0): 1 - cos of the mean of the `k`
    valid rows before and the `k` after."""
    n = len(rows)
    out = np.zeros(n, dtype=np.float64)
    for i in range(1, n):
        left = [j for j in range(max(0, i - k), i) if valid[j]]
        right = [j for j in range(i, min(n, i + k)) if valid[j]]
        if not left or not right:
            continue
        a, b = _unit(rows[left].mean(axis=0)), _unit(rows[right].mean(axis=0))
        out[i] = 1.0 - float(np.dot(a, b))
    return out


def pick_peaks(scores: np.ndarray, times: Sequence[float], min_gap: float, limit: int, floor: float) -> list[int]:
    """Indices of the strongest scores, at least `min_gap` seconds apart (and from time 0), above a threshold from
    the scores' own spread: median + 3 MAD (a long video: changes are rare), or half the strongest change when that
    is lower (a short one, where most edges lie near a change); never under `floor`. At most `limit`, in time order."""
    if len(scores) < 2:
        return []
    inner = scores[1:]
    med = float(np.median(inner))
    mad = float(np.median(np.abs(inner - med)))
    threshold = max(floor, min(med + 3.0 * mad, 0.5 * float(inner.max())))
    chosen: list[int] = []
    for i in sorted(range(1, len(scores)), key=lambda i: -scores[i]):
        if scores[i] < threshold or len(chosen) >= limit:
            break
        if times[i] < min_gap or any(abs(times[i] - times[j]) < min_gap for j in chosen):
            continue
        chosen.append(i)
    return sorted(chosen)


def line_change(rows: np.ndarray, j: int, k: int) -> float:
    """1 - cos of the mean of the `k` rows before row `j` and the `k` from it (0 at the ends)."""
    if j <= 0 or j >= len(rows):
        return 0.0
    a, b = _unit(rows[max(0, j - k) : j].mean(axis=0)), _unit(rows[j : j + k].mean(axis=0))
    return 1.0 - float(np.dot(a, b))


def refine(memory: VideoMemory, i: int, k: int = 3) -> float:
    """Where the change at the edge before clip `i` really is: the transcript line around it where the lines change
    most, else the first sighting of screen text that is new in clip `i`, else the clip's start."""
    clips = memory.clips
    lo, hi = clips[i - 1].start, clips[i].end
    segs = memory.transcript.segments
    emb = memory.segment_embeddings
    cands = [j for j, s in enumerate(segs) if lo <= s.start < hi]
    if cands and emb is not None and len(emb) == len(segs):
        best = max(cands, key=lambda j: line_change(emb, j, k))
        return float(segs[best].start)
    new = [t for line, t in zip(clips[i].ocr, clips[i].ocr_times, strict=False) if line not in clips[i - 1].ocr]
    if new:
        return float(min(new))
    return float(clips[i].start)


def chapter_bounds(memory: VideoMemory, min_len: float | None = None, limit: int | None = None) -> list[float]:
    """Chapter start times (the first is 0.0) from where the clips' text changes."""
    d = memory.duration
    clips = memory.clips
    if not clips:
        return [0.0]
    min_len = min_len if min_len is not None else max(30.0, d / 60.0)
    limit = limit if limit is not None else int(min(30, max(1, d // 45)))
    rows = memory.text_embeddings
    if rows is None or len(rows) != len(clips) or len(clips) < 3:
        return [0.0]
    valid = np.array([bool(c.search_text.strip()) for c in clips])
    clip_s = max(1e-3, float(np.median([c.end - c.start for c in clips])))
    k = max(2, round(25.0 / clip_s))  # about 25 s of clips each side
    scores = novelty(rows, valid, k)
    peaks = pick_peaks(scores, [c.start for c in clips], min_len, limit, floor=CHANGE_FLOOR)
    starts = [0.0]
    for i in peaks:
        t = refine(memory, i)
        if t - starts[-1] >= min_len / 2 and d - t >= min_len / 2:
            starts.append(t)
    return starts


def _inside(memory: VideoMemory, start: float, end: float) -> list[ClipRecord]:
    """The clips whose middle lies in [start, end) (a clip across a boundary belongs to one chapter only)."""
    return [c for c in memory.clips if start <= (c.start + c.end) / 2 < end]


def _screen_lines(clips: Sequence[ClipRecord], start: float, end: float) -> list[str]:
    """Screen text first seen inside [start, end) (a clip's last frame may already show the next slide)."""
    return [
        line
        for c in clips
        for line, t in zip(c.ocr, c.ocr_times or [c.start] * len(c.ocr), strict=False)
        if start <= t < end
    ]


def chapter_text(memory: VideoMemory, start: float, end: float, limit: int = CHAPTER_TEXT_CHARS) -> str:
    """What a title is written from: the chapter's first lines, its most shown screen text and tags."""
    lines = [s.text.strip() for s in memory.transcript.segments if start <= s.start < end and s.text.strip()]
    clips = _inside(memory, start, end)
    screen = Counter(_screen_lines(clips, start, end))
    tags = Counter(t for c in clips for t in c.tags)
    parts = []
    said = ""
    for line in lines:
        if len(said) + len(line) > limit:
            break
        said += line + " "
    if said:
        parts.append("Said: " + said.strip())
    if screen:
        parts.append("On screen: " + " | ".join(t for t, _ in screen.most_common(5)))
    if tags:
        parts.append("Seen: " + ", ".join(t for t, _ in tags.most_common(5)))
    return "\n".join(parts)


def fallback_title(memory: VideoMemory, start: float, end: float) -> str:
    """A title without the LLM: the chapter's most shown screen text, else its first words."""
    clips = _inside(memory, start, end)
    screen = Counter(line for line in _screen_lines(clips, start, end) if len(line) > 2)
    if screen:
        return screen.most_common(1)[0][0][:60]
    lines = [s.text.strip() for s in memory.transcript.segments if start <= s.start < end and s.text.strip()]
    if lines:
        words = lines[0].split()
        return " ".join(words[:6]).rstrip(".,;:") + ("…" if len(words) > 6 else "")
    return f"Part from {format_time(start, memory.duration)}"


_TITLE_JUNK = re.compile(r"^(?:title|chapter(?:\s+\d+)?)\s*[:\-–]\s*", re.IGNORECASE)


def clean_title(text: str) -> str:
    """The model's reply as a title: first line, no label, quotes, times or full stop; at most 8 words."""
    line = next((x.strip() for x in text.strip().splitlines() if x.strip()), "")
    line = re.sub(r"\[?\b\d{1,2}(?::\d{2}){1,2}\b\]?", "", line).strip(" \"'*`“”‘’")
    line = _TITLE_JUNK.sub("", line)
    line = line.strip(" \"'*`“”‘’").rstrip(".").strip()
    words = line.split()
    return " ".join(words[:8])


# ------------------------------------------------------------------------------------------------- writing
def writer_id(builder: PromptBuilder) -> str:
    """Which LLM writes the titles (its folder and template) and how: part of the cache file's name."""
    blob = json.dumps([str(builder.model_dir.resolve()), builder.template.name, CHAPTERS_VERSION])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


async def _generate(engine: Engine, builder: PromptBuilder, inputs: PromptInputs, max_tokens: int, rid: str) -> str:
    params = GenerationParams(max_tokens=max_tokens, temperature=0.0)
    embeds = await asyncio.to_thread(builder.build, inputs, max_tokens)
    pieces = []
    async for delta in engine.stream(embeds, params, rid):
        pieces.append(delta)
    return "".join(pieces)


async def write_chapters(
    memory: VideoMemory, engine: Engine, builder: PromptBuilder, starts: Sequence[float] | None = None
) -> Chapters:
    """Chapters (boundaries, LLM titles) and a summary for a complete memory."""
    import time

    t0 = time.perf_counter()
    starts = list(starts) if starts is not None else chapter_bounds(memory)
    d = memory.duration
    spans = [(a, b) for a, b in zip(starts, [*starts[1:], d], strict=True)]
    bounds_s = time.perf_counter() - t0
    tag = f"chapters-{memory.key[:8]}-{time.monotonic_ns()}"

    async def title(i: int, a: float, b: float) -> str:
        text = chapter_text(memory, a, b)
        if not text:
            return fallback_title(memory, a, b)
        inputs = PromptInputs(question=TITLE_QUESTION, subtitles=text, instructions=TITLE_INSTRUCTIONS)
        try:
            return clean_title(await _generate(engine, builder, inputs, 16, f"{tag}-t{i}")) or fallback_title(
                memory, a, b
            )
        except Exception as err:  # a title the engine cannot write is not worth losing the chapters for
            log.warning("chapter title %d failed: %s", i, err)
            return fallback_title(memory, a, b)

    titles = await asyncio.gather(*(title(i, a, b) for i, (a, b) in enumerate(spans)))
    chapters = [Chapter(a, b, t) for (a, b), t in zip(spans, titles, strict=True)]
    t1 = time.perf_counter()
    listing = "\n".join(f"[{format_time(c.start, d)}] {c.title}" for c in chapters)
    summary = ""
    try:
        inputs = PromptInputs(question=SUMMARY_QUESTION, subtitles=listing, instructions=SUMMARY_INSTRUCTIONS)
        summary = (await _generate(engine, builder, inputs, 120, f"{tag}-summary")).strip()
    except Exception as err:
        log.warning("video summary failed: %s", err)
    return Chapters(
        chapters,
        summary,
        writer_id(builder),
        {"bounds_s": bounds_s, "titles_s": t1 - t0 - bounds_s, "summary_s": time.perf_counter() - t1},
    )


class ChapterStore:
    """Chapters cached beside the memory's cache entry, one file per writer: `chapters-<writer>.json`."""

    def __init__(self, entry_dir: Path, writer: str) -> None:
        self.path = Path(entry_dir) / f"chapters-{writer}.json"

    def load(self) -> Chapters | None:
        try:
            return Chapters.from_dict(json.loads(self.path.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, chapters: Chapters) -> bool:
        """Write atomically; False when the entry is gone or the disk refuses (the chapters still serve)."""
        if not self.path.parent.is_dir():
            return False
        try:
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.path.parent)
            with os.fdopen(fd, "w") as f:
                json.dump(chapters.to_dict(), f)
            os.replace(tmp, self.path)
        except OSError as err:
            log.warning("chapters not cached: %s", err)
            return False
        return True


# ------------------------------------------------------------------------------------------------- uses
def chapter_context(memory: VideoMemory, question: str) -> str:
    """For a question about the whole video: its summary and chapter list, as prompt text ('' otherwise)."""
    ch = memory.chapters
    if not isinstance(ch, Chapters) or not ch.chapters or not SUMMARY.search(question):
        return ""
    d = memory.duration
    lines = ["Chapters of the whole video:"]
    lines += [f"[{format_time(c.start, d)}] {c.title}" for c in ch.chapters]
    if ch.summary:
        lines.append("Summary: " + ch.summary)
    return "\n".join(lines) + "\n"


def _vtt_time(t: float) -> str:
    ms = round(max(0.0, t) * 1000)
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def to_webvtt(chapters: Chapters) -> str:
    """WebVTT chapters (`<track kind="chapters">`): one cue per chapter, its title as the text."""
    out = ["WEBVTT", ""]
    for i, c in enumerate(chapters.chapters, start=1):
        out += [f"Chapter {i}", f"{_vtt_time(c.start)} --> {_vtt_time(c.end)}", c.title.replace("-->", "->"), ""]
    return "\n".join(out)


def to_youtube(chapters: Chapters, duration: float) -> str:
    """A YouTube-style description list: one "00:00 Title" line per chapter, the first at 00:00."""
    return "\n".join(f"{format_time(c.start, duration)} {c.title}" for c in chapters.chapters) + "\n"


def to_markdown(chapters: Chapters, duration: float) -> str:
    lines = ["## Chapters", ""]
    lines += [f"- [{format_time(c.start, duration)}] {c.title}" for c in chapters.chapters]
    if chapters.summary:
        lines += ["", "## Summary", "", chapters.summary]
    return "\n".join(lines) + "\n"
