"""The pipeline that ties everything together: ingest a video into a cached clip memory, answer questions.

`Assistant(runtime).ingest(path)` builds (or loads) a `VideoMemory`; `ask(...)` streams `AnswerDelta`s and
ends with an `AnswerDone` whose `Answer` carries citations checked against the video, the clips the model
was given (evidence), found moments for "when" questions, and notes for the user.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from model.errors import VideoChatError
from model.memory.cache import MemoryCache, content_hash, memory_key
from model.memory.citations import Citation, check_citations
from model.memory.context import BEFORE, ContextChoice, asks_neighbour, select_clips
from model.memory.records import ClipRecord, VideoMemory
from model.memory.search import ClipScores, Moment, combine_scores, keyword_scores, words
from model.memory.timeparse import TimeQuery, TimeWindow, format_time, parse_time_refs
from model.profiles import SamplingSpec
from model.speech import Transcript

if TYPE_CHECKING:
    from model.llm import PromptInputs
    from model.runtime import Runtime

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]

INSTRUCTIONS = (
    "You answer questions about a video using only the context given: clips with their time ranges, "
    "text seen on screen, and timed subtitles of what is said. When you state something from the video, "
    "cite its time in square brackets like [{example}]. If the context does not contain the answer, say that "
    "you cannot tell from the video. Answer briefly."
)


MOMENT_MIN_SHARE = 0.5  # a found moment must score at least this share of the best one
FOCUS_MIN_SCORE = 1.0  # standardised clip score a ranked clip needs to join a question about a moment
FOCUS_WINDOWS = 4  # a focused question's subtitles come from its first windows (asked times, moments, best clips)
_SUMMARY = re.compile(  # questions about the whole video: they get all of it, not the lines that match words
    r"\b(summar\w*|overview|overall|main (?:point|idea|topic)s?|describe the (?:whole )?video|"
    r"(?:video|clip|it) about|whole video|everything)\b",
    re.IGNORECASE,
)
_SCREEN = re.compile(r"\b(sign|written|writing|on screen|shown|caption|title|label|board|text)\b", re.IGNORECASE)


class QuestionError(VideoChatError):
    """The question cannot be asked (empty, too long...)."""


# ---------------------------------------------------------------------------------------------- data
@dataclass
class ChatSettings:
    temperature: float | None = None  # None: the profile's
    max_tokens: int | None = None  # None: the profile's max_new_tokens
    top_p: float = 1.0
    seed: int = 0
    use_speech: bool = True  # put subtitles in the prompt
    use_ocr: bool = True  # on-screen text in the prompt and in search
    top_k: int = 4  # best-ranked clips per question
    overview_clips: int = 3  # evenly spread clips for whole-video questions
    dense_frames: int | None = None  # frames re-sampled around an asked moment (None: the encoder's clip length)
    max_moments: int = 3


@dataclass
class ClipEvidence:
    index: int  # clip index (-1 for a densely re-sampled moment)
    start: float
    end: float
    frame_time: float  # the representative (thumbnail) frame's time
    reason: str = ""
    thumbnail: np.ndarray | None = None  # uint8 [H, W, 3] RGB


@dataclass
class Answer:
    text: str
    citations: list[Citation] = field(default_factory=list)
    evidence: list[ClipEvidence] = field(default_factory=list)
    moments: list[Moment] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "text": self.text,
            "citations": [asdict(c) for c in self.citations],
            "evidence": [{k: v for k, v in asdict(e).items() if k != "thumbnail"} for e in self.evidence],
            "moments": [asdict(m) for m in self.moments],
            "notes": list(self.notes),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }
        return out


@dataclass
class AnswerDelta:
    text: str


@dataclass
class AnswerDone:
    answer: Answer


@dataclass
class IngestConfig:
    ocr_frames_per_clip: int = 2  # frames of each clip read by OCR (first, middle, ...)
    decode_batch_clips: int = 16  # clips decoded per call (bounded memory for long videos)
    encode_batch_clips: int = 8
    thumb_width: int = 160


@dataclass
class PreparedQuestion:
    """Everything decided before generation (sync; testable without an LLM)."""

    inputs: PromptInputs
    time_query: TimeQuery
    choice: ContextChoice
    evidence: list[ClipEvidence]
    moments: list[Moment]
    notes: list[str]
    timings: dict[str, float]
    scores: ClipScores | None = None
    focus: list[tuple[float, float]] = field(default_factory=list)  # what the answer is about (said lines, neighbour)


# ---------------------------------------------------------------------------------------------- helpers
def _pick(n_have: int, n_want: int) -> list[int]:
    """Segment midpoints: `n_want` of `n_have` items (InternVideo2's formula)."""
    if n_have == n_want:
        return list(range(n_have))
    seg = (n_have - 1) / n_want
    return [min(n_have - 1, int(seg / 2) + round(seg * i)) for i in range(n_want)]


def _ocr_frames(n_have: int, n_want: int) -> list[int]:
    """Frames of a clip that OCR reads: evenly spaced and ending on the last frame, so text that appears
    anywhere in the clip and stays is seen in this clip (not first in the next one)."""
    if n_want >= n_have:
        return list(range(n_have))
    return sorted({round(x) for x in np.linspace(0, n_have - 1, n_want + 1)[1:]})


def _jpeg(image: np.ndarray, width: int) -> bytes:
    import cv2

    h, w = image.shape[:2]
    if w > width:
        image = cv2.resize(image, (width, max(2, round(h * width / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return buf.tobytes() if ok else b""


def _segments_in(transcript: Transcript, start: float, end: float) -> str:
    return " ".join(s.text.strip() for s in transcript.segments if s.start < end and s.end > start and s.text.strip())


def _quote(text: str, limit: int = 80) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------- assistant
class Assistant:
    """Per-process front door: shares one Runtime and one MemoryCache between all sessions."""

    def __init__(
        self,
        runtime: Runtime,
        cache: MemoryCache | None = None,
        cache_dir: str | Path | None = None,
        config: IngestConfig | None = None,
    ) -> None:
        self.runtime = runtime
        self.cache = cache or MemoryCache(cache_dir)
        self.config = config or IngestConfig()
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._aborted: set[str] = set()
        self.encoder_calls = 0  # clips encoded (tests count recomputation with it)
        # The same subtitle lines and clip intros are counted for every question: remember their lengths.
        self.count_tokens = functools.lru_cache(maxsize=1 << 16)(runtime.prompt_builder.count_tokens)

    @functools.lru_cache(maxsize=256)  # noqa: B019  (lives as long as the process-wide Assistant)
    def embed_question(self, question: str) -> np.ndarray:
        """The question's sentence embedding [d]; clip ranking, line ranking and moments all use it."""
        return self.runtime.text_embedder.embed([question])[0]

    @property
    def profile(self):
        return self.runtime.profile

    # ------------------------------------------------------------------------------------------ ingest
    def sampling_for(self, fps: float | None = None, frames_per_clip: int | None = None) -> SamplingSpec:
        base = self.profile.sampling
        spec = SamplingSpec(
            fps=float(fps or base.fps),
            frames_per_clip=int(frames_per_clip or base.frames_per_clip),
            max_frames=base.max_frames,
            short_side=base.short_side,
        )
        if spec.fps <= 0 or spec.frames_per_clip <= 0:
            raise VideoChatError("Sampling rate and frames per clip must be positive.")
        return spec

    def key_for(self, path: str | Path, sampling: SamplingSpec) -> str:
        # The models that produce a memory are part of its identity: a profile that changes its Whisper or its
        # encoder must not reopen memories the old models made.
        p = self.profile
        models = {
            "speech": None if p.speech is None else asdict(p.speech),
            "vision": None if p.vision is None else {k: v for k, v in asdict(p.vision).items() if k != "compile"},
            "retrieval": None if p.retrieval is None else asdict(p.retrieval),
            "text_embedder": p.text_embedder,
        }
        extra = {
            "ocr_frames": self.config.ocr_frames_per_clip if self.runtime.ocr else 0,
            "ocr_pick": "to-last",
            "models": models,
        }
        return memory_key(content_hash(path), self.profile.name, {**asdict(sampling), **extra})

    def ingest(
        self,
        path: str | Path,
        progress: Progress | None = None,
        fps: float | None = None,
        frames_per_clip: int | None = None,
    ) -> VideoMemory:
        """The video's memory: from the cache when this content was ingested with these settings, else built."""
        from model.media import probe

        path = Path(path)
        info = probe(path)  # typed MediaError for anything that is not a usable video
        sampling = self.sampling_for(fps, frames_per_clip)
        t0 = time.perf_counter()
        key = self.key_for(path, sampling)
        hash_s = time.perf_counter() - t0
        with self._lock(key):
            cached = self.cache.get(key)
            if cached is not None:
                cached.path = path  # the same bytes may live elsewhere now
                cached.timings = {**cached.timings, "hash_s": hash_s, "reopen_s": time.perf_counter() - t0}
                if progress:
                    progress("indexing", 1.0)
                return cached
            memory = self._build(path, info, sampling, key, progress)
            memory.timings["hash_s"] = hash_s
            self.cache.put(memory)
            return memory

    def _lock(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def _build(self, path: Path, info: Any, sampling: SamplingSpec, key: str, progress: Progress | None) -> VideoMemory:
        from model.media import load_audio, plan_clips, sample_indices

        rt = self.runtime
        timings: dict[str, float] = {}
        report = progress or (lambda stage, fraction: None)

        # Speech first: it is the longest single step on CPU and independent of frames.
        t = time.perf_counter()
        transcript = Transcript(segments=[], language=None, duration=0.0)
        if rt.transcriber is not None and info.has_audio:
            report("transcribing", 0.0)
            audio = load_audio(path)
            if audio is not None:
                transcript = rt.transcriber.transcribe(audio, progress=report)
        report("transcribing", 1.0)
        timings["transcribe_s"] = time.perf_counter() - t

        plans = plan_clips(
            info, fps=sampling.fps, frames_per_clip=sampling.frames_per_clip, max_frames=sampling.max_frames
        )
        clips: list[ClipRecord] = []
        thumbs: list[bytes] = []
        retrieval: list[torch.Tensor] = []
        timings.update(decode_s=0.0, encode_s=0.0, retrieval_s=0.0, ocr_s=0.0)
        batch = max(1, self.config.decode_batch_clips)
        for b0 in range(0, len(plans), batch):
            group = plans[b0 : b0 + batch]
            report("decoding", b0 / len(plans))
            t = time.perf_counter()
            wanted = sorted({i for p in group for i in p.frame_indices})
            frames = sample_indices(str(path), wanted, short_side=sampling.short_side)  # decode once per batch
            row = {int(idx): r for r, idx in enumerate(frames.indices)}
            clip_images = np.stack([frames.images[[row[i] for i in p.frame_indices]] for p in group])  # [B, T, H, W, 3]
            timings["decode_s"] += time.perf_counter() - t

            report("encoding", b0 / len(plans))
            embeds = self._encode_clips(clip_images, timings)  # [B, 96, hidden] fp16 | None
            if rt.retrieval is not None:
                t = time.perf_counter()
                n = getattr(rt.retrieval, "frames_per_clip", None) or (self.profile.retrieval.frames_per_clip)
                sub = clip_images[:, _pick(clip_images.shape[1], n)]
                retrieval.append(rt.retrieval.encode_video(sub).float())  # [B, 512]
                timings["retrieval_s"] += time.perf_counter() - t
            for j, plan in enumerate(group):
                ocr_lines, ocr_times = self._ocr_clip(clip_images[j], plan.frame_times, timings)
                clips.append(
                    ClipRecord(
                        index=plan.index,
                        start=float(plan.start),
                        end=float(plan.end),
                        frame_times=[float(x) for x in plan.frame_times],
                        transcript=_segments_in(transcript, plan.start, plan.end),
                        ocr=ocr_lines,
                        ocr_times=ocr_times,
                        embeddings=None if embeds is None else embeds[j],
                    )
                )
                thumbs.append(_jpeg(clip_images[j][len(plan.frame_times) // 2], self.config.thumb_width))
        report("encoding", 1.0)

        report("indexing", 0.0)
        t = time.perf_counter()
        text_emb = seg_emb = None
        if rt.text_embedder is not None:
            text_emb = rt.text_embedder.embed([c.search_text for c in clips])  # [N, d]
            seg_emb = rt.text_embedder.embed([s.text for s in transcript.segments])  # [S, d]
        timings["index_s"] = time.perf_counter() - t
        report("indexing", 1.0)
        return VideoMemory(
            key=key,
            path=path,
            profile=self.profile.name,
            info=info,
            transcript=transcript,
            clips=clips,
            sampling=asdict(sampling),
            retrieval_embeddings=torch.cat(retrieval).numpy() if retrieval else None,
            text_embeddings=text_emb,
            segment_embeddings=seg_emb,
            thumbnails=thumbs,
            timings=timings,
        )

    def _encode_clips(self, clip_images: np.ndarray, timings: dict[str, float]) -> torch.Tensor | None:
        """uint8 [B, T, H, W, 3] -> fp16 [B, 96, hidden] with the chat encoder (None without one)."""
        enc = self.runtime.encoder
        if enc is None:
            return None
        t = time.perf_counter()
        n = getattr(enc, "frames_per_clip", None) or self.profile.vision.frames_per_clip
        images = clip_images[:, _pick(clip_images.shape[1], n)]
        out = []
        step = max(1, self.config.encode_batch_clips)
        for i in range(0, len(images), step):
            out.append(enc.encode(images[i : i + step]).to(torch.float16))
            self.encoder_calls += len(images[i : i + step])
        timings["encode_s"] = timings.get("encode_s", 0.0) + time.perf_counter() - t
        return torch.cat(out)

    def _ocr_clip(
        self, images: np.ndarray, times: list[float], timings: dict[str, float]
    ) -> tuple[list[str], list[float]]:
        """Distinct on-screen lines of a few frames of a clip, each with the first time it was seen."""
        ocr = self.runtime.ocr
        k = self.config.ocr_frames_per_clip
        if ocr is None or k <= 0:
            return [], []
        t = time.perf_counter()
        lines: list[str] = []
        seen_at: list[float] = []
        for j in _ocr_frames(len(images), k):
            for text, _conf in ocr.read(images[j]):
                if text not in lines:
                    lines.append(text)
                    seen_at.append(float(times[j]))
        timings["ocr_s"] = timings.get("ocr_s", 0.0) + time.perf_counter() - t
        return lines, seen_at

    # ------------------------------------------------------------------------------------------ search
    def score_clips(
        self, memory: VideoMemory, question: str, settings: ChatSettings | None = None
    ) -> ClipScores | None:
        """Relevance of every clip: stage-2 video-text similarity, text-embedding similarity, keywords."""
        settings = settings or ChatSettings()
        if not memory.clips:
            return None
        rt = self.runtime
        parts: dict[str, np.ndarray] = {}
        if rt.retrieval is not None and memory.retrieval_embeddings is not None:
            q = rt.retrieval.encode_text([question]).float().numpy()[0]  # [512]
            parts["video"] = memory.retrieval_embeddings @ q
        if rt.text_embedder is not None and memory.text_embeddings is not None:
            q = self.embed_question(question)  # [d]
            parts["text"] = memory.text_embeddings @ q
        texts = [
            c.transcript + (" " + " ".join(c.ocr) if settings.use_ocr else "")
            if settings.use_speech
            else " ".join(c.ocr)
            for c in memory.clips
        ]
        parts["keyword"] = keyword_scores(question, texts)
        return combine_scores(parts)

    def line_scores(self, memory: VideoMemory, question: str) -> tuple[list[Any], np.ndarray, np.ndarray]:
        """Transcript lines with text, their relevance (keywords + sentence similarity) and keyword part alone."""
        segs = [s for s in memory.transcript.segments if s.text.strip()]
        if not segs:
            return [], np.zeros(0, np.float32), np.zeros(0, np.float32)
        kw = keyword_scores(question, [s.text for s in segs])
        score = kw.copy()
        rt = self.runtime
        if (
            rt.text_embedder is not None
            and memory.segment_embeddings is not None
            and len(memory.segment_embeddings) == len(memory.transcript.segments)
        ):
            keep = [i for i, s in enumerate(memory.transcript.segments) if s.text.strip()]
            score = score + memory.segment_embeddings[keep] @ self.embed_question(question)
        return segs, score, kw

    def _said_windows(self, memory: VideoMemory, question: str, k: int = 2) -> list[tuple[float, float]]:
        """The few transcript lines that share the question's words (best first); none for summary questions."""
        if _SUMMARY.search(question):
            return []
        segs, score, kw = self.line_scores(memory, question)
        order = [int(i) for i in np.argsort(-score) if kw[int(i)] > 0][:k]
        return [(segs[i].start, segs[i].end) for i in order]

    def _subtitle_focus(
        self,
        memory: VideoMemory,
        question: str,
        tq: TimeQuery,
        moments: list[Moment],
        said: list[tuple[float, float]],
        windows: list[tuple[float, float]],
        choice: ContextChoice,
    ) -> tuple[list[tuple[float, float]] | None, list[tuple[float, float]]]:
        """(the only windows whose subtitles a focused question sees, or None for all; what the answer is about).

        Focused questions (a time, a "when", a line that says the question's words, "what happens after") see
        only the subtitles near their moments: small models otherwise answer from other lines.
        """
        if tq.windows or moments:
            return windows[:FOCUS_WINDOWS], []
        if said and asks_neighbour(question):  # "what happens after X": X's line and its neighbour
            neighbour = self._neighbour_line(memory, said[0], after=not BEFORE.search(question))
            return [said[0], *neighbour], neighbour or said[:1]
        if said:
            return said, said[:1]
        if asks_neighbour(question):  # no line says X: X's clip and the next one
            return [(memory.clips[i].start, memory.clips[i].end) for i in choice.priority[:2]], []
        return None, []

    @staticmethod
    def _neighbour_line(memory: VideoMemory, line: tuple[float, float], after: bool) -> list[tuple[float, float]]:
        """The transcript line right after (or before) the one spanning `line`, as a window."""
        segs = [s for s in memory.transcript.segments if s.text.strip()]
        if after:
            later = [s for s in segs if s.start >= line[1] - 0.05]
            return [(later[0].start, later[0].end)] if later else []
        earlier = [s for s in segs if s.end <= line[0] + 0.05]
        return [(earlier[-1].start, earlier[-1].end)] if earlier else []

    def find_moments(
        self, memory: VideoMemory, question: str, scores: ClipScores | None, limit: int = 3, refine: bool = True
    ) -> list[Moment]:
        """Best-matching stretches: transcript lines (speech), clips with matching on-screen text or pictures."""
        candidates: list[Moment] = []
        segs, seg_score, _ = self.line_scores(memory, question)
        if segs:
            for i in np.argsort(-seg_score)[: limit * 2]:
                s = segs[int(i)]
                candidates.append(Moment(s.start, s.end, float(seg_score[i]), f'speech: "{_quote(s.text)}"'))
        if scores is not None:
            ocr_kw = keyword_scores(question, [" ".join(c.ocr) for c in memory.clips])
            text_sim = scores.parts.get("text", np.zeros(len(memory.clips)))
            video = scores.parts.get("video")
            clip_score = ocr_kw + text_sim * (ocr_kw > 0) + (0 if video is None else video)
            for i in np.argsort(-clip_score)[: limit * 2]:
                c = memory.clips[int(i)]
                if ocr_kw[i] > 0:
                    first = memory.clips[self._text_run_start(memory, int(i), question)]
                    start, line = self._ocr_onset(memory, first, question, refine)
                    candidates.append(
                        Moment(start, c.end, float(clip_score[i]), f"on screen: {_quote(line)}", first.index)
                    )
                elif video is not None:
                    candidates.append(Moment(c.start, c.end, float(clip_score[i]), "matching picture", c.index))
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

    @staticmethod
    def _text_run_start(memory: VideoMemory, index: int, question: str) -> int:
        """The earliest of the consecutive clips before `index` whose screen text has the same asked words."""
        target = set(words(question)) & set(words(" ".join(memory.clips[index].ocr)))
        while index > 0 and target and target <= set(words(" ".join(memory.clips[index - 1].ocr))):
            index -= 1
        return index

    def _ocr_onset(self, memory: VideoMemory, clip: ClipRecord, question: str, refine: bool) -> tuple[float, str]:
        """When the matching on-screen text first shows: the first OCR'd frame with it, then (when `refine`) a
        binary search on single decoded frames between the previous OCR'd frame and that one (to ~1 s)."""
        q = set(words(question))
        best_line, best_t, best_hit = "", clip.start, 0
        for line, t in zip(clip.ocr, clip.ocr_times, strict=False):
            hit = len(q & set(words(line)))
            if hit > best_hit or (hit == best_hit and hit and t < best_t):
                best_line, best_t, best_hit = line, t, hit
        if not refine or self.runtime.ocr is None or best_hit == 0:
            return best_t, best_line
        target = q & set(words(best_line))
        # The previous moment OCR looked at: an earlier frame of this clip or the previous clip's last one.
        earlier = [t for t in clip.ocr_times if t < best_t]
        prev_clip = memory.clips[clip.index - 1] if clip.index > 0 else None
        lo = (
            max(earlier) if earlier else (max(prev_clip.ocr_times) if prev_clip and prev_clip.ocr_times else clip.start)
        )
        if lo >= best_t:
            return best_t, best_line
        if prev_clip is not None and not earlier and target & set(words(" ".join(prev_clip.ocr))):
            return best_t, best_line  # it was already on screen before this clip
        hi = best_t
        try:
            from model.media import sample_window

            while hi - lo > 1.0:
                mid = (lo + hi) / 2
                frame = sample_window(
                    str(memory.path), mid, mid, n=1, short_side=memory.sampling.get("short_side", 224)
                )
                seen = set(words(" ".join(t for t, _ in self.runtime.ocr.read(frame.images[0]))))
                if target & seen:
                    hi = float(frame.times[0])
                else:
                    lo = max(mid, float(frame.times[0]))
        except (VideoChatError, OSError, ValueError) as err:  # the file moved or changed: keep the coarse time
            log.info("could not refine on-screen onset: %s", err)
        return hi, best_line

    # ------------------------------------------------------------------------------------------ context
    def _clip_cost(self, memory: VideoMemory, clip: ClipRecord, use_ocr: bool) -> int:
        count = self.count_tokens
        hours = memory.duration >= 3600
        intro = (
            f"Clip 10 [{format_time(clip.start, 3600 if hours else 0)}-{format_time(clip.end, 3600 if hours else 0)}]: "
        )
        text = ("On screen: " + clip.ocr_text + "\n") if use_ocr and clip.ocr else ""
        cost = count(intro + text)
        if clip.embeddings is not None:
            times = ", ".join(f"{t:.1f}" for t in clip.frame_times)
            cost += int(clip.embeddings.shape[0]) + count(
                f" The clip contains {len(clip.frame_times)} frames sampled at {times} seconds.\n"
            )
        return cost

    def _dense_segment(
        self, memory: VideoMemory, w: TimeWindow, settings: ChatSettings
    ) -> tuple[Any, ClipEvidence, float]:
        """Re-sample frames around an asked moment (not just the 1 fps clips), encode them and read their text."""
        from model.llm import VideoSegment
        from model.media import sample_window

        rt = self.runtime
        t0 = time.perf_counter()
        t = w.start
        pad = 5.0 if w.approximate else 2.0
        a, b = max(0.0, t - pad), min(memory.duration, t + pad)
        short = memory.sampling.get("short_side", 224)
        embeds = None
        frame_times: list[float] = []
        if rt.encoder is not None:
            n = (
                settings.dense_frames
                or getattr(rt.encoder, "frames_per_clip", None)
                or self.profile.vision.frames_per_clip
            )
            frames = sample_window(str(memory.path), a, b, n=n, short_side=short)
            embeds = self._encode_clips(frames.images[None], {})[0]  # [96, hidden]
            frame_times = [float(x) for x in frames.times]
        at = sample_window(str(memory.path), t, t, n=1, short_side=short)  # the frame shown at the asked time
        text = ""
        if rt.ocr is not None and settings.use_ocr:
            lines = []
            for line, _conf in rt.ocr.read(at.images[0]):
                if line not in lines:
                    lines.append(line)
            if lines:
                text = f"On screen at [{format_time(float(at.times[0]), memory.duration)}]: " + " | ".join(lines)
        seg = VideoSegment(start=a, end=b, frame_times=frame_times, embeddings=embeds, text=text)
        ev = ClipEvidence(
            index=-1,
            start=a,
            end=b,
            frame_time=float(at.times[0]),
            reason=f"re-sampled around {w.text}",
            thumbnail=at.images[0][:: max(1, at.images.shape[1] // 120), :: max(1, at.images.shape[2] // 160)].copy(),
        )
        return seg, ev, time.perf_counter() - t0

    def prepare(
        self,
        memory: VideoMemory,
        question: str,
        history: list[tuple[str, str]] | None = None,
        settings: ChatSettings | None = None,
    ) -> PreparedQuestion:
        """Decide the prompt: time references, ranking, dense re-sampling, clips in budget, subtitles."""
        from model.llm import PromptInputs, VideoSegment
        from model.speech import subtitle_lines

        settings = settings or ChatSettings()
        question = (question or "").strip()
        if not question:
            raise QuestionError("Please type a question about the video.")
        count = self.count_tokens
        timings: dict[str, float] = {}
        t = time.perf_counter()
        tq = parse_time_refs(question, memory.duration)
        notes = list(tq.notes)
        timings["timeparse_s"] = time.perf_counter() - t

        t = time.perf_counter()
        scores = self.score_clips(memory, question, settings)
        timings["retrieval_s"] = time.perf_counter() - t
        moments: list[Moment] = []
        if tq.is_when_question and not tq.windows:
            t = time.perf_counter()
            moments = self.find_moments(memory, question, scores, limit=settings.max_moments)
            timings["moments_s"] = time.perf_counter() - t

        budget = int(self.profile.context_budget_tokens)
        dense: list[tuple[Any, ClipEvidence]] = []
        t = time.perf_counter()
        for w in [w for w in tq.windows if w.is_moment][:3]:
            seg, ev, _ = self._dense_segment(memory, w, settings)
            dense.append((seg, ev))
        timings["dense_s"] = time.perf_counter() - t
        dense_cost = sum(
            (0 if s.embeddings is None else int(s.embeddings.shape[0])) + count(s.text) + 16 for s, _ in dense
        )
        # "What does the sign say at 2:10?" is about the screen: speech beside it only misleads the answer.
        about_screen = bool(tq.windows and _SCREEN.search(question))
        has_speech = settings.use_speech and bool(memory.transcript.segments) and not about_screen
        reserve = int(budget * (0.5 if not memory.has_video_embeddings else 0.25)) if has_speech else 0
        use_ocr = settings.use_ocr
        # A question about a moment gets that moment, plus only clips that clearly match its words: unrelated
        # clips (an overview, weak ranks) put other scenes' text beside it and small models answer from those.
        choice = select_clips(
            memory.clips,
            tq,
            scores,
            budget_tokens=max(0, budget - reserve - dense_cost),
            clip_cost=lambda c: self._clip_cost(memory, c, use_ocr),
            top_k=0 if tq.windows and not asks_neighbour(question) else settings.top_k,
            overview=0 if tq.windows else settings.overview_clips,
            min_score=FOCUS_MIN_SCORE if tq.windows else None,
        )
        # Subtitles: lines near the asked moments first, then the chosen clips (best first), then the rest.
        subtitles = ""
        answer_focus: list[tuple[float, float]] = []
        if has_speech:
            said = [] if tq.windows or moments else self._said_windows(memory, question)
            windows = [(max(0.0, s.start - 3), s.end + 3) for s, _ in dense]
            windows += [(w.start, w.end) if not w.is_moment else (w.start - 5, w.start + 5) for w in tq.windows]
            windows += [(m.start, m.end) for m in moments]
            windows += said  # lines that say the question's words
            windows += [(memory.clips[i].start, memory.clips[i].end) for i in choice.priority]
            focus, answer_focus = self._subtitle_focus(memory, question, tq, moments, said, windows, choice)
            transcript = memory.transcript
            if focus is not None:
                near = [s for s in transcript.segments if any(s.start < b and s.end > a for a, b in focus)]
                transcript = Transcript(segments=near, language=transcript.language, duration=transcript.duration)
            sub_budget = max(0, budget - choice.used_tokens - dense_cost)
            subtitles = subtitle_lines(transcript, sub_budget, count, priority_windows=windows)

        segments: list[tuple[float, Any]] = []
        evidence: list[ClipEvidence] = []
        for i in choice.clips:
            c = memory.clips[i]
            text = ("On screen: " + c.ocr_text) if use_ocr and c.ocr else ""
            if c.embeddings is None and not text:
                pass  # nothing to show the model for this clip in lite; its speech is in the subtitles
            else:
                segments.append(
                    (
                        c.start,
                        VideoSegment(
                            start=c.start, end=c.end, frame_times=c.frame_times, embeddings=c.embeddings, text=text
                        ),
                    )
                )
            evidence.append(
                ClipEvidence(c.index, c.start, c.end, c.mid_time, choice.reasons.get(i, ""), memory.thumbnail(c.index))
            )
        for seg, ev in dense:
            segments.append((seg.start, seg))
            evidence.append(ev)
        segments.sort(key=lambda x: x[0])  # chronological
        evidence.sort(key=lambda e: e.start)
        example = "1:02:03" if memory.duration >= 3600 else "02:15"
        inputs = PromptInputs(
            question=question,
            segments=[s for _, s in segments],
            subtitles=subtitles,
            history=list(history or []),
            instructions=INSTRUCTIONS.format(example=example),
            duration=memory.duration,
        )
        timings["context_s"] = time.perf_counter() - t
        return PreparedQuestion(inputs, tq, choice, evidence, moments, notes, timings, scores, answer_focus)

    # ------------------------------------------------------------------------------------------ ask
    async def ask(
        self,
        memory: VideoMemory,
        question: str,
        history: list[tuple[str, str]] | None = None,
        settings: ChatSettings | None = None,
        request_id: str | None = None,
    ) -> AsyncIterator[AnswerDelta | AnswerDone]:
        """Stream the answer; the last event is `AnswerDone` with the checked `Answer`."""
        from model.llm import GenerationParams

        settings = settings or ChatSettings()
        request_id = request_id or f"ask-{time.monotonic_ns()}"
        t_start = time.perf_counter()
        prepared = await asyncio.to_thread(self.prepare, memory, question, history, settings)
        rt = self.runtime
        params = GenerationParams(
            max_tokens=int(settings.max_tokens or self.profile.max_new_tokens),
            temperature=float(self.profile.temperature if settings.temperature is None else settings.temperature),
            top_p=settings.top_p,
            seed=settings.seed,
        )
        t = time.perf_counter()
        embeds = await asyncio.to_thread(rt.prompt_builder.build, prepared.inputs, params.max_tokens)
        timings = dict(prepared.timings)
        timings["prompt_s"] = time.perf_counter() - t
        timings["prompt_tokens"] = float(embeds.shape[0])

        header = "".join(f"Note: {n}\n\n" for n in prepared.notes)
        if header:
            yield AnswerDelta(header)
        pieces: list[str] = []
        t = time.perf_counter()
        first = None
        self._aborted.discard(request_id)
        stream = rt.engine.stream(embeds, params, request_id)
        try:
            async for delta in stream:
                if first is None:
                    first = time.perf_counter() - t
                pieces.append(delta)
                yield AnswerDelta(delta)
                if request_id in self._aborted:
                    break
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]
        timings["first_token_s"] = first if first is not None else time.perf_counter() - t
        timings["generate_s"] = time.perf_counter() - t
        model_text = "".join(pieces).strip()
        text, citations, cite_notes = check_citations(model_text, memory.duration)

        tail = ""
        if prepared.moments:
            items = [f"[{format_time(m.start, memory.duration)}] {m.reason}" for m in prepared.moments]
            tail = "\n\nMoments that match: " + "; ".join(items)
            yield AnswerDelta(tail)
            for m in prepared.moments:
                citations.append(Citation(m.start, format_time(m.start, memory.duration), m.end, source="search"))
        if not citations:  # the model cited nothing: point at what it was shown for the question
            for w in prepared.time_query.windows:
                citations.append(
                    Citation(
                        w.start, format_time(w.start, memory.duration), w.end if w.end > w.start else None, "evidence"
                    )
                )
            for a, b in prepared.focus[:1]:  # the line that says what was asked (or the one after it)
                citations.append(Citation(a, format_time(a, memory.duration), b, "evidence"))
            if not citations and prepared.scores is not None:
                best = memory.clips[prepared.scores.top(1)[0]]
                when = self._best_line_time(memory, question, best)
                citations.append(Citation(when, format_time(when, memory.duration), None, "evidence"))
        if cite_notes:
            yield AnswerDelta("\n\n" + "\n".join(f"Note: {n}" for n in cite_notes))
        timings["total_s"] = time.perf_counter() - t_start
        answer = Answer(
            text=(header + text + tail).strip(),
            citations=citations,
            evidence=prepared.evidence,
            moments=prepared.moments,
            notes=prepared.notes + cite_notes,
            timings=timings,
        )
        yield AnswerDone(answer)

    def _best_line_time(self, memory: VideoMemory, question: str, clip: ClipRecord) -> float:
        """Inside the best clip, the start of the transcript line that matches the question best."""
        segs = [s for s in memory.transcript.segments if s.start < clip.end and s.end > clip.start and s.text.strip()]
        if not segs:
            return clip.start
        kw = keyword_scores(question, [s.text for s in segs])
        return float(max(segs[int(np.argmax(kw))].start, clip.start)) if kw.max() > 0 else clip.start

    async def abort(self, request_id: str) -> None:
        self._aborted.add(request_id)
        await self.runtime.engine.abort(request_id)

    def thumbnail(self, memory: VideoMemory, clip_index: int) -> np.ndarray | None:
        return memory.thumbnail(clip_index)

    async def answer(self, memory: VideoMemory, question: str, **kwargs: Any) -> Answer:
        """Convenience: the final Answer of `ask` (CLI, eval)."""
        answer = None
        async for event in self.ask(memory, question, **kwargs):
            if isinstance(event, AnswerDone):
                answer = event.answer
        assert answer is not None
        return answer
