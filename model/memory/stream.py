"""Streaming ingest: a video's memory built chunk by chunk, in time order, usable after the first chunk.

`StreamIngestor(ingestor, config)` runs one `IngestJob` per memory key (several sessions asking about one video
share it). A job walks the chunk layout (`model.memory.chunks`): a chunk already on disk is read back, any other
is built (its audio window transcribed with Whisper and shifted to video time, its clips decoded, encoded and read
by OCR with `Ingestor.ingest_batch`, its texts embedded) and written atomically before the next one starts. After
each chunk the job publishes a new `VideoMemory` snapshot with `ingested_until` set, so questions can be answered
over what has been seen so far; when the last chunk is written the complete memory goes to the `MemoryCache` and
the chunk folder is removed. A job killed at any point resumes from its last complete chunk.

Speech runs one chunk ahead on its own thread (`overlap_speech`): Whisper on chunk k+1 overlaps the frames of
chunk k on a 2-core machine. OCR skips frames that look like the last frame it read (`ocr_gate`), each chunk
starting afresh so a resumed ingest reads exactly what a fresh one reads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError

from model.errors import VideoChatError
from model.media import ClipPlan, LostStretch, decode_audio, merge_lost, plan_clips, probe_damage
from model.memory.cache import os_reason
from model.memory.chunk_speech import SR, SpeechAhead, transcribe_span
from model.memory.chunks import Chunk, ChunkSpan, ChunkStore, assemble, plan_chunks, speech_in, sweep_partial
from model.memory.gate import FrameGate
from model.memory.ingest import Ingestor, Progress
from model.memory.job import IngestCancelled, IngestJob
from model.memory.records import VideoMemory
from model.profiles import SamplingSpec
from model.speech import Segment, Transcript

log = logging.getLogger(__name__)

KEEP_FINISHED = 16  # finished jobs kept (with their memories) so pages following them can catch up


@dataclass(frozen=True)
class StreamConfig:
    chunk_s: float = 120.0  # seconds of video per chunk
    first_chunk_s: float = 30.0  # the first chunk is short: the chat opens after it
    audio_search_s: float = 8.0  # an audio window ends at the quietest point this far after its last clip
    ocr_gate: float | None = 0.03  # FrameGate threshold for OCR and the tagger; None: every frame is read
    overlap_speech: bool = True  # transcribe the next chunk while this one's frames are processed

    def identity(self) -> dict[str, Any]:
        """What changes the memory a stream builds (part of its key); `overlap_speech` does not."""
        d = asdict(self)
        d.pop("overlap_speech")
        return d


class StreamIngestor:
    """Chunked, resumable ingest over an `Ingestor`'s models and cache; one job per memory key per process."""

    def __init__(self, ingestor: Ingestor, config: StreamConfig | None = None) -> None:
        self.ingestor = ingestor
        self.config = config or StreamConfig()
        self.cache = ingestor.cache
        self._jobs: dict[str, IngestJob] = {}
        self._guard = threading.Lock()
        self._finished: list[str] = []  # keys of finished jobs, oldest first
        self.chunk_builds = 0  # chunks computed in this process (tests count recomputation with it)
        self.on_complete: list[Callable[[IngestJob, VideoMemory], VideoMemory | None]] = []
        sweep_partial(self.cache.root)  # ingests abandoned for a week

    # -- identity --------------------------------------------------------------------------------------
    def key_for(self, path: str | Path, sampling: SamplingSpec) -> str:
        return self.ingestor.key_for(path, sampling, extra={"stream": self.config.identity()})

    def job(self, key: str) -> IngestJob | None:
        with self._guard:
            return self._jobs.get(key)

    # -- entry points ----------------------------------------------------------------------------------
    def start(
        self,
        path: str | Path,
        progress: Progress | None = None,
        fps: float | None = None,
        frames_per_clip: int | None = None,
    ) -> IngestJob:
        """The video's ingest job: an existing one (running or done) for the same content and settings, or a new
        one on a background thread. The job's memory is usable once its first chunk is done (`wait_first`)."""
        job, owner, hash_s = self._start(path, progress, fps, frames_per_clip)
        if owner:
            job.thread = threading.Thread(
                target=self._run_safe, args=(job, hash_s), name=f"ingest-{job.key[:8]}", daemon=True
            )
            job.thread.start()
        return job

    def memory_for(
        self,
        path: str | Path,
        progress: Progress | None = None,
        fps: float | None = None,
        frames_per_clip: int | None = None,
    ) -> VideoMemory:
        """The complete memory, built (or resumed) in the calling thread unless another thread already is (then
        it waits for that one). In the calling thread, Ctrl-C stops the ingest at once; finished chunks stay."""
        job, owner, hash_s = self._start(path, progress, fps, frames_per_clip)
        try:
            if owner:
                job.thread = threading.current_thread()
                self._run_safe(job, hash_s)
            return job.wait_done()
        finally:
            job.remove_listener(progress)

    def _start(
        self, path: str | Path, progress: Progress | None, fps: float | None, frames_per_clip: int | None
    ) -> tuple[IngestJob, bool, float]:
        """(the job, whether the caller must run it, hashing seconds)."""
        v = self.ingestor.identify(path, fps, frames_per_clip, self.key_for)
        with self._guard:
            job = self._jobs.get(v.key)
            if job is not None and job.error is None:
                job.add_listener(progress)
                return job, False, v.hash_s
            job = IngestJob(v.key, v.path, v.info, v.sampling)
            job.add_listener(progress)
            self._jobs[v.key] = job
        cached = self.cache.get(v.key)
        if cached is None:
            return job, True, v.hash_s
        cached = v.reopened(cached)
        ChunkStore(self.cache.root, v.key).remove()  # left over when a run died between finishing and cleaning
        job.report("indexing", 1.0)
        self._finish(job, cached)
        return job, False, v.hash_s

    # -- the build loop --------------------------------------------------------------------------------
    def _run_safe(self, job: IngestJob, hash_s: float) -> None:
        try:
            self._run(job, hash_s)
        except BaseException as err:  # handed to every waiter; KeyboardInterrupt too
            log.info("ingest of %s stopped: %s", job.path.name, err)
            job.fail(err)
            with self._guard:
                if self._jobs.get(job.key) is job:
                    del self._jobs[job.key]  # a later start tries again (resuming from the chunks on disk)
            if not isinstance(err, Exception):
                raise

    def _layout(
        self, job: IngestJob, store: ChunkStore, audio: np.ndarray | None
    ) -> tuple[list[ChunkSpan], list[ClipPlan]]:
        plans = plan_clips(
            job.info,
            fps=job.sampling.fps,
            frames_per_clip=job.sampling.frames_per_clip,
            max_frames=job.sampling.max_frames,
        )
        spans = store.spans()
        if spans is None or spans[-1].clip_end != len(plans):
            c = self.config
            spans = plan_chunks(plans, audio, SR, c.chunk_s, c.first_chunk_s, c.audio_search_s)
            store.remove()  # chunks of another layout are of no use
            try:
                store.write_layout(spans, {"duration": job.info.duration})
            except OSError as err:
                self._no_disk(job, err)
        return spans, plans

    def _run(self, job: IngestJob, hash_s: float) -> None:
        ing = self.ingestor
        m = ing.models
        store = ChunkStore(self.cache.root, job.key)
        t = time.perf_counter()
        audio = None
        damage: list[LostStretch] = probe_damage(job.path)  # what the container shows lost
        if m.transcriber is not None and job.info.has_audio:
            job.report("transcribing", 0.0)
            track = decode_audio(job.path, sr=SR)  # damaged stretches are silence of their length
            if track is not None:
                damage += track.lost
                audio = track.samples if track.decoded else None
        audio_s = time.perf_counter() - t
        spans, plans = self._layout(job, store, audio)
        job.spans = spans
        on_disk = {s.index: store.load(s) for s in spans}  # damaged chunk files are found (and deleted) here
        todo = [s for s in spans if on_disk[s.index] is None]
        chunks: list[Chunk] = []
        speech: SpeechAhead | None = None
        if self.config.overlap_speech and audio is not None and m.transcriber is not None and todo:
            speech = SpeechAhead(self.transcribe_span, audio, todo)
        memory: VideoMemory | None = None
        try:
            for span in spans:
                if job.cancelled:
                    raise IngestCancelled(f"Ingest of {job.path.name} was stopped at {span.start:.0f} s.")
                chunk = on_disk.pop(span.index)
                if chunk is not None:
                    job.reused.append(span.index)
                    log.info("chunk %d of %s [%.1f-%.1f s] read back", span.index, job.key[:8], span.start, span.end)
                else:
                    t = time.perf_counter()
                    chunk = self._build_chunk(job, span, plans, audio, chunks, speech)
                    if not job.cache_note:
                        try:
                            store.write(chunk)
                        except (OSError, SafetensorError) as err:  # a full or read-only disk: go on in memory
                            self._no_disk(job, err)
                    self.chunk_builds += 1
                    job.built.append(span.index)
                    job.build_seconds += time.perf_counter() - t
                    job.built_video_s += span.end - span.start
                    log.info(
                        "chunk %d of %s [%.1f-%.1f s] built in %.1f s",
                        span.index,
                        job.key[:8],
                        span.start,
                        span.end,
                        time.perf_counter() - t,
                    )
                chunks.append(chunk)
                done = span.index == len(spans) - 1
                memory = assemble(
                    job.key,
                    job.path,
                    ing.config.profile,
                    job.info,
                    asdict(job.sampling),
                    chunks,
                    complete=done,
                    audio_duration=0.0 if audio is None else len(audio) / SR,
                    damage=damage,
                )
                if not done:
                    job.publish(memory)
                    job.report("ingested", span.end / max(job.duration, 1e-9))
        finally:
            if speech is not None:
                speech.stop()
        if memory is None:
            raise VideoChatError(f"{job.path.name} has no clips to ingest.")
        memory.timings.update(
            hash_s=hash_s,
            audio_decode_s=audio_s,
            chunks=float(len(spans)),
            chunks_built=float(len(job.built)),
            chunks_reused=float(len(job.reused)),
            ingest_wall_s=time.perf_counter() - job.started,
        )
        job.report("indexing", 1.0)
        memory.cache_note = job.cache_note or self.cache.try_put(memory) or ""
        store.remove()
        self._finish(job, memory)

    @staticmethod
    def _no_disk(job: IngestJob, err: OSError | SafetensorError) -> None:
        log.warning("cannot write the chunks of %s: %s", job.path.name, err)
        job.cache_note = (
            f"The memory cache cannot be written ({os_reason(err)}). Answers still work; "
            "this video will be processed again next time."
        )

    def _finish(self, job: IngestJob, memory: VideoMemory) -> None:
        for hook in self.on_complete:  # e.g. chapters (they need the LLM, which lives upstream)
            try:
                memory = hook(job, memory) or memory
            except Exception:  # a chapter title that fails must not lose the memory
                log.warning("after-ingest step failed for %s", job.path.name, exc_info=True)
        job.publish(memory, done=True)
        with self._guard:  # finished jobs are kept for their followers, the most recent few only
            self._finished.append(job.key)
            while len(self._finished) > KEEP_FINISHED:
                old = self._finished.pop(0)
                if old not in self._finished and (gone := self._jobs.get(old)) is not None and gone.done:
                    del self._jobs[old]

    def _build_chunk(
        self,
        job: IngestJob,
        span: ChunkSpan,
        plans: list[ClipPlan],
        audio: np.ndarray | None,
        before: list[Chunk],
        speech: SpeechAhead | None,
    ) -> Chunk:
        ing = self.ingestor
        timings: dict[str, float] = {}
        total = max(job.duration, 1e-9)

        def report(stage: str, fraction: float) -> None:  # a chunk's stage fraction -> the whole video's
            job.report(stage, (span.start + fraction * (span.end - span.start)) / total)

        segments: list[Segment] | None = None
        language: str | None = None
        if speech is None:
            t = time.perf_counter()
            segments, language = self.transcribe_span(audio, span, report)
            timings["transcribe_s"] = time.perf_counter() - t
        gate = FrameGate(self.config.ocr_gate) if self.config.ocr_gate is not None else None
        tag_gate = FrameGate(self.config.ocr_gate) if self.config.ocr_gate is not None else None
        group = plans[span.clip_start : span.clip_end]
        batch = max(1, ing.config.decode_batch_clips)
        clips, thumbs, retrieval, damage = [], [], [], []
        empty = Transcript(segments=[], language=None, duration=0.0)  # speech is attached below, once known
        for b0 in range(0, len(group), batch):
            part = ing.ingest_batch(
                job.path, group[b0 : b0 + batch], job.sampling, empty, timings, report, b0 / len(group), gate, tag_gate
            )
            clips += part.clips
            thumbs += part.thumbnails
            if part.retrieval is not None:
                retrieval.append(part.retrieval)
            damage += part.damage
        if speech is not None:
            t = time.perf_counter()
            segments, language, seconds = speech.result(span.index)
            timings["transcribe_s"] = seconds
            timings["transcribe_wait_s"] = time.perf_counter() - t
        assert segments is not None
        known = [s for ch in before[-2:] for s in ch.segments] + segments  # lines a clip here can overlap
        for c in clips:
            c.transcript = speech_in(known, c.start, c.end)
        text_emb, seg_emb = ing.index_texts(clips, segments, timings)
        if gate is not None and tag_gate is not None:
            timings.update(ocr_reads=float(gate.reads), ocr_reused=float(gate.reused))
            timings.update(tag_reads=float(tag_gate.reads), tag_reused=float(tag_gate.reused))
        return Chunk(
            span=span,
            clips=clips,
            segments=segments,
            language=language,
            thumbnails=thumbs,
            retrieval=torch.cat(retrieval).numpy() if retrieval else None,
            text_embeddings=text_emb,
            segment_embeddings=seg_emb,
            timings=timings,
            damage=merge_lost(damage),
        )

    def transcribe_span(
        self, audio: np.ndarray | None, span: ChunkSpan, report: Progress | None = None
    ) -> tuple[list[Segment], str | None]:
        """Whisper on the chunk's audio window; line and word times shifted to video time."""
        return transcribe_span(self.ingestor.models.transcriber, audio, span, report)
