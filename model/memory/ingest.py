"""Ingest: one video -> a `VideoMemory` (speech, clip plan, encoded clips, stage-2 index, on-screen text, search index).

`Ingestor(models, config).build(path, info, key)` is the build loop; caching and per-video locks live in
`memory_for`, which reopens a memory from the `MemoryCache` when the same bytes were ingested by the same models.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.errors import VideoChatError
from model.media import (
    ClipPlan,
    LostStretch,
    VideoInfo,
    decode_audio,
    merge_lost,
    plan_clips,
    probe,
    probe_damage,
    sample_indices,
)
from model.memory.cache import MemoryCache
from model.memory.clip_reading import pick_frames, read_clip_screen, tag_clip, thumbnail_jpeg
from model.memory.gate import FrameGate
from model.memory.keys import content_hash, memory_key
from model.memory.records import ClipRecord, VideoMemory
from model.profiles import SamplingSpec
from model.protocols import OCR, ClipEncoder, ImageTagger, TextEmbedder, VideoTextRanker
from model.speech import Segment, Transcriber, Transcript

Progress = Callable[[str, float], None]


@dataclass
class IngestModels:
    """The models ingest runs; any may be missing (lite has no encoder, a test may skip OCR)."""

    transcriber: Transcriber | None = None
    encoder: ClipEncoder | None = None
    retrieval: VideoTextRanker | None = None
    text_embedder: TextEmbedder | None = None
    ocr: OCR | None = None
    tagger: ImageTagger | None = None  # objects and scene labels per frame (lite's sight)


@dataclass(frozen=True)
class IngestConfig:
    profile: str = "custom"  # recorded in the memory and its key
    sampling: SamplingSpec = field(default_factory=SamplingSpec)
    model_ids: dict[str, Any] = field(default_factory=dict)  # which models made a memory: part of its key
    ocr_frames_per_clip: int = 2  # frames of each clip read by OCR (evenly spaced, ending on the last)
    tag_frames_per_clip: int = 8  # frames of each clip the visual tagger looks at (evenly strided from the first)
    tag_sure_score: float = 0.7  # a tag below this needs a neighbouring tagged frame that sees it too
    decode_batch_clips: int = 16  # clips decoded per call (bounded memory for long videos)
    encode_batch_clips: int = 8
    thumb_width: int = 160


@dataclass
class IngestedBatch:
    """What `Ingestor.ingest_batch` made of one batch of clips."""

    clips: list[ClipRecord] = field(default_factory=list)
    thumbnails: list[bytes] = field(default_factory=list)  # one JPEG per clip
    retrieval: torch.Tensor | None = None  # [B, 512] float32 (stage-2 model), None without one
    damage: list[LostStretch] = field(default_factory=list)  # broken frames the decoder met (damaged files)


@dataclass(frozen=True)
class Identified:
    """A video about to be ingested: its probe, its sampling, its memory key and how long hashing took."""

    path: Path
    info: VideoInfo
    sampling: SamplingSpec
    key: str
    hash_s: float
    t0: float  # when hashing began: a reopen counts its time from here

    def reopened(self, cached: VideoMemory) -> VideoMemory:
        """`cached` (this key's memory from the cache) pointed at this path, with the reopen's timings."""
        cached.path = self.path  # the same bytes may live elsewhere now
        cached.timings = {**cached.timings, "hash_s": self.hash_s, "reopen_s": time.perf_counter() - self.t0}
        return cached


def _speech_in(transcript: Transcript, start: float, end: float) -> str:
    return " ".join(s.text.strip() for s in transcript.segments if s.start < end and s.end > start and s.text.strip())


class Ingestor:
    """Builds memories with one set of models; shared by every session of a process."""

    def __init__(self, models: IngestModels, config: IngestConfig, cache: MemoryCache) -> None:
        self.models = models
        self.config = config
        self.cache = cache
        self.encoder_calls = 0  # clips encoded (tests count recomputation with it)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # ------------------------------------------------------------------------------------------ identity
    def sampling_for(self, fps: float | None = None, frames_per_clip: int | None = None) -> SamplingSpec:
        base = self.config.sampling
        spec = SamplingSpec(
            fps=float(fps or base.fps),
            frames_per_clip=int(frames_per_clip or base.frames_per_clip),
            max_frames=base.max_frames,
            short_side=base.short_side,
        )
        if spec.fps <= 0 or spec.frames_per_clip <= 0:
            raise VideoChatError("Sampling rate and frames per clip must be positive.")
        return spec

    def key_for(self, path: str | Path, sampling: SamplingSpec, extra: dict[str, Any] | None = None) -> str:
        # The models that produce a memory are part of its identity: a profile that changes its Whisper or its
        # encoder must not reopen memories the old models made. `extra`: what else the builder varies (chunking).
        extra = {
            **(extra or {}),
            "ocr_frames": self.config.ocr_frames_per_clip if self.models.ocr else 0,
            "ocr_pick": "to-last",
            "models": self.config.model_ids,
        }
        if self.models.tagger is not None:  # only then: memories made without tags keep their keys
            extra["tag_frames"] = self.config.tag_frames_per_clip
            extra["tag_sure"] = self.config.tag_sure_score
        return memory_key(content_hash(path), self.config.profile, {**asdict(sampling), **extra})

    def identify(
        self,
        path: str | Path,
        fps: float | None = None,
        frames_per_clip: int | None = None,
        key_for: Callable[[Path, SamplingSpec], str] | None = None,
    ) -> Identified:
        """Probe the video (typed MediaError for anything that is not a usable video), fix its sampling and hash
        it into its memory key (`key_for`: a builder that varies more, e.g. the chunked ingest's own key)."""
        path = Path(path)
        info = probe(path)
        sampling = self.sampling_for(fps, frames_per_clip)
        t0 = time.perf_counter()
        key = (key_for or self.key_for)(path, sampling)
        return Identified(path, info, sampling, key, time.perf_counter() - t0, t0)

    # ------------------------------------------------------------------------------------------ cached entry
    def memory_for(
        self,
        path: str | Path,
        progress: Progress | None = None,
        fps: float | None = None,
        frames_per_clip: int | None = None,
    ) -> VideoMemory:
        """The video's memory: from the cache when this content was ingested with these settings, else built."""
        v = self.identify(path, fps, frames_per_clip)
        with self._lock(v.key):
            cached = self.cache.get(v.key)
            if cached is not None:
                if progress:
                    progress("indexing", 1.0)
                return v.reopened(cached)
            memory = self.build(v.path, v.info, v.sampling, v.key, progress)
            memory.timings["hash_s"] = v.hash_s
            memory.cache_note = self.cache.try_put(memory) or ""  # a full or read-only disk: served from memory
            return memory

    def _lock(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    # ------------------------------------------------------------------------------------------ build
    def build(
        self, path: Path, info: VideoInfo, sampling: SamplingSpec, key: str, progress: Progress | None = None
    ) -> VideoMemory:
        m = self.models
        timings: dict[str, float] = {}
        report = progress or (lambda stage, fraction: None)

        # Speech first: it is the longest single step on CPU and independent of frames.
        t = time.perf_counter()
        transcript = Transcript(segments=[], language=None, duration=0.0)
        damage = probe_damage(path)  # what the container shows lost; decoding adds what it meets
        if m.transcriber is not None and info.has_audio:
            report("transcribing", 0.0)
            track = decode_audio(path)  # damaged stretches are silence of their length: later speech keeps its time
            if track is not None:
                damage += track.lost
                if track.decoded:
                    transcript = m.transcriber.transcribe(track.samples, progress=report)
        report("transcribing", 1.0)
        timings["transcribe_s"] = time.perf_counter() - t

        plans = plan_clips(
            info, fps=sampling.fps, frames_per_clip=sampling.frames_per_clip, max_frames=sampling.max_frames
        )
        clips: list[ClipRecord] = []
        thumbs: list[bytes] = []
        retrieval: list[torch.Tensor] = []
        timings.update(decode_s=0.0, encode_s=0.0, retrieval_s=0.0, ocr_s=0.0, tags_s=0.0)
        batch = max(1, self.config.decode_batch_clips)
        for b0 in range(0, len(plans), batch):
            part = self.ingest_batch(
                path, plans[b0 : b0 + batch], sampling, transcript, timings, report, b0 / len(plans)
            )
            clips += part.clips
            thumbs += part.thumbnails
            if part.retrieval is not None:
                retrieval.append(part.retrieval)
            damage += part.damage
        report("encoding", 1.0)

        report("indexing", 0.0)
        text_emb, seg_emb = self.index_texts(clips, transcript.segments, timings)
        report("indexing", 1.0)
        return VideoMemory(
            key=key,
            path=path,
            profile=self.config.profile,
            info=info,
            transcript=transcript,
            clips=clips,
            sampling=asdict(sampling),
            retrieval_embeddings=torch.cat(retrieval).numpy() if retrieval else None,
            text_embeddings=text_emb,
            segment_embeddings=seg_emb,
            thumbnails=thumbs,
            timings=timings,
            damage=merge_lost(damage),
        )

    def ingest_batch(
        self,
        path: Path,
        group: Sequence[ClipPlan],
        sampling: SamplingSpec,
        transcript: Transcript,
        timings: dict[str, float],
        report: Progress | None = None,
        fraction: float = 0.0,
        ocr_gate: FrameGate | None = None,
        tag_gate: FrameGate | None = None,
    ) -> IngestedBatch:
        """One batch of clips: decode their frames once, encode, rank-encode, read the screen, make the records.

        `transcript` must hold every line that overlaps the batch's clips (a clip carries the speech it overlaps);
        `timings` gains this batch's seconds per stage. The build loop and the chunked ingest both call this.
        """
        m, c = self.models, self.config
        report = report or (lambda stage, fraction: None)
        for name in ("decode_s", "encode_s", "retrieval_s", "ocr_s", "tags_s"):
            timings.setdefault(name, 0.0)
        report("decoding", fraction)
        t = time.perf_counter()
        wanted = sorted({i for p in group for i in p.frame_indices})
        frames = sample_indices(str(path), wanted, short_side=sampling.short_side)  # decode once per batch
        asked = frames.requested if frames.requested is not None else frames.indices
        row = {int(idx): r for r, idx in enumerate(asked)}
        clip_images = np.stack([frames.images[[row[i] for i in p.frame_indices]] for p in group])  # [B, T, H, W, 3]
        # In a damaged file a broken frame comes back as its nearest good neighbour: records keep the real times.
        shown = [[float(frames.times[row[i]]) for i in p.frame_indices] for p in group]
        timings["decode_s"] += time.perf_counter() - t

        report("encoding", fraction)
        t = time.perf_counter()
        embeds = self.encode_clips(clip_images)  # [B, 96, hidden] fp16 | None
        timings["encode_s"] += time.perf_counter() - t
        retrieval = None
        if m.retrieval is not None:
            t = time.perf_counter()
            sub = pick_frames(clip_images, m.retrieval.frames_per_clip)
            retrieval = m.retrieval.encode_video(sub).float()  # [B, 512]
            timings["retrieval_s"] += time.perf_counter() - t
        out = IngestedBatch(retrieval=retrieval, damage=list(frames.lost))
        for j, plan in enumerate(group):
            t = time.perf_counter()
            ocr_lines, ocr_times = read_clip_screen(m.ocr, clip_images[j], shown[j], c.ocr_frames_per_clip, ocr_gate)
            timings["ocr_s"] += time.perf_counter() - t
            t = time.perf_counter()
            seen = tag_clip(m.tagger, clip_images[j], shown[j], c.tag_frames_per_clip, c.tag_sure_score, tag_gate)
            timings["tags_s"] += time.perf_counter() - t
            out.clips.append(
                ClipRecord(
                    index=plan.index,
                    start=float(plan.start),
                    end=float(plan.end),
                    frame_times=shown[j],
                    transcript=_speech_in(transcript, plan.start, plan.end),
                    ocr=ocr_lines,
                    ocr_times=ocr_times,
                    embeddings=None if embeds is None else embeds[j],
                    tags=seen.labels,
                    tag_times=seen.times,
                    tag_counts=seen.counts,
                    tag_sources=seen.sources,
                )
            )
            out.thumbnails.append(thumbnail_jpeg(clip_images[j][len(plan.frame_times) // 2], c.thumb_width))
        return out

    def index_texts(
        self, clips: Sequence[ClipRecord], segments: Sequence[Segment], timings: dict[str, float] | None = None
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Text-search rows: one per clip (speech + screen text) and one per transcript line (None without an
        embedder). Rows are independent, so a chunk's rows equal the same clips' rows in a whole-video build."""
        t = time.perf_counter()
        text_emb = seg_emb = None
        if self.models.text_embedder is not None:
            text_emb = self.models.text_embedder.embed([c.search_text for c in clips])  # [N, d]
            seg_emb = self.models.text_embedder.embed([s.text for s in segments])  # [S, d]
        if timings is not None:
            timings["index_s"] = timings.get("index_s", 0.0) + time.perf_counter() - t
        return text_emb, seg_emb

    def encode_clips(self, clip_images: np.ndarray) -> torch.Tensor | None:
        """uint8 [B, T, H, W, 3] -> fp16 [B, 96, hidden] with the chat encoder (None without one)."""
        enc = self.models.encoder
        if enc is None:
            return None
        images = pick_frames(clip_images, enc.frames_per_clip)
        out = []
        step = max(1, self.config.encode_batch_clips)
        for i in range(0, len(images), step):
            out.append(enc.encode(images[i : i + step]).to(torch.float16))
            self.encoder_calls += len(images[i : i + step])
        return torch.cat(out)
