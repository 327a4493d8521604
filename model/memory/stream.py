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
from model.media import ClipPlan, LostStretch, VideoInfo, decode_audio, merge_lost, plan_clips, probe, probe_damage
from model.memory.cache import os_reason
from model.memory.chunks import Chunk, ChunkSpan, ChunkStore, assemble, plan_chunks, speech_in, sweep_partial
from model.memory.gate import FrameGate
from model.memory.ingest import Ingestor
from model.memory.records import VideoMemory
from model.profiles import SamplingSpec
from model.speech import Segment, Transcript

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]
SR = 16000
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


class IngestCancelled(VideoChatError):
    """The ingest was stopped before it finished (its finished chunks stay on disk)."""


class IngestJob:
    """One video's ingest in progress (or done): the latest memory snapshot and how to wait for more of it."""

    def __init__(self, key: str, path: Path, info: VideoInfo, sampling: SamplingSpec) -> None:
        self.key = key
        self.path = path
        self.info = info
        self.sampling = sampling
        self.spans: list[ChunkSpan] = []
        self.memory: VideoMemory | None = None
        self.error: BaseException | None = None
        self.done = False
        self.started = time.perf_counter()
        self.first_chunk_s: float | None = None  # seconds from start until the first chunk was usable
        self.built: list[int] = []  # chunks computed by this job
        self.reused: list[int] = []  # chunks read back from disk
        self.build_seconds = 0.0  # wall time spent building chunks (not reading them back)
        self.built_video_s = 0.0  # video seconds those chunks cover
        self.stage = "starting"
        self.cache_note = ""  # why the chunks or the memory could not be saved ("" when they were)
        self.stage_fraction = 0.0
        self._cond = threading.Condition()
        self._listeners: list[Progress] = []
        self._cancel = threading.Event()
        self.thread: threading.Thread | None = None

    # -- state -----------------------------------------------------------------------------------------
    @property
    def duration(self) -> float:
        return float(self.info.duration)

    @property
    def seen_until(self) -> float:
        return 0.0 if self.memory is None else self.memory.seen_until

    @property
    def fraction(self) -> float:
        """How much of the video is ready (0..1)."""
        return 1.0 if self.done and self.error is None else min(1.0, self.seen_until / max(self.duration, 1e-9))

    @property
    def running(self) -> bool:
        return not self.done

    def eta_for(self, t: float) -> float | None:
        """Seconds until video time `t` is ingested, from this job's speed so far (None: not known yet)."""
        if self.seen_until >= t or self.done:
            return 0.0
        if self.built_video_s <= 0:
            return None
        rate = self.build_seconds / self.built_video_s  # wall seconds per video second
        return (t - self.seen_until) * rate

    def add_listener(self, progress: Progress | None) -> None:
        if progress is not None:
            with self._cond:
                self._listeners.append(progress)

    def remove_listener(self, progress: Progress | None) -> None:
        with self._cond:
            if progress in self._listeners:
                self._listeners.remove(progress)

    def report(self, stage: str, fraction: float) -> None:
        """Progress of the whole video: chunk stages scaled to where the chunk lies."""
        self.stage, self.stage_fraction = stage, fraction
        for cb in list(self._listeners):
            try:
                cb(stage, fraction)
            except Exception:  # a closed browser tab must not stop the ingest others share
                log.debug("progress listener failed", exc_info=True)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def publish(self, memory: VideoMemory, done: bool = False) -> None:
        with self._cond:
            self.memory = memory
            if self.first_chunk_s is None:
                self.first_chunk_s = time.perf_counter() - self.started
            if done:
                self.done = True
            self._cond.notify_all()

    def fail(self, err: BaseException) -> None:
        with self._cond:
            self.error = err
            self.done = True
            self._cond.notify_all()

    # -- waiting ---------------------------------------------------------------------------------------
    def wait_for(self, t: float, timeout: float | None = None) -> VideoMemory | None:
        """Block until video time `t` is ingested (or the job ends, or `timeout` passes); the latest memory."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self.done and (self.memory is None or self.memory.seen_until < t):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(0.5 if left is None else min(left, 0.5))
            if self.error is not None and self.memory is None:
                raise self.error
            return self.memory

    def wait_first(self, timeout: float | None = None) -> VideoMemory:
        """The first usable memory (after the first chunk); raises the job's error if it failed before that."""
        memory = self.wait_for(1e-9, timeout)
        if memory is None:
            raise TimeoutError("the first chunk is not ready yet")
        return memory

    def wait_done(self, timeout: float | None = None) -> VideoMemory:
        memory = self.wait_for(float("inf"), timeout)
        if self.error is not None:
            raise self.error
        if memory is None or not memory.complete:
            raise TimeoutError("the ingest has not finished yet")
        return memory


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
        path = Path(path)
        info = probe(path)  # typed MediaError for anything that is not a usable video
        sampling = self.ingestor.sampling_for(fps, frames_per_clip)
        t0 = time.perf_counter()
        key = self.key_for(path, sampling)
        hash_s = time.perf_counter() - t0
        with self._guard:
            job = self._jobs.get(key)
            if job is not None and job.error is None:
                job.add_listener(progress)
                return job, False, hash_s
            job = IngestJob(key, path, info, sampling)
            job.add_listener(progress)
            self._jobs[key] = job
        cached = self.cache.get(key)
        if cached is None:
            return job, True, hash_s
        cached.path = path  # the same bytes may live elsewhere now
        cached.timings = {**cached.timings, "hash_s": hash_s, "reopen_s": time.perf_counter() - t0}
        ChunkStore(self.cache.root, key).remove()  # left over when a run died between finishing and cleaning
        job.report("indexing", 1.0)
        self._finish(job, cached)
        return job, False, hash_s

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
        speech: _SpeechAhead | None = None
        if self.config.overlap_speech and audio is not None and m.transcriber is not None and todo:
            speech = _SpeechAhead(self, audio, todo)
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
        speech: _SpeechAhead | None,
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
        tr = self.ingestor.models.transcriber
        if tr is None or audio is None:
            return [], None
        a, b = round(span.audio_start * SR), round(span.audio_end * SR)
        piece = audio[a:b]
        if piece.size == 0:
            return [], None

        def rep(stage: str, fraction: float) -> None:
            if report is not None:
                report("transcribing", fraction)

        out = tr.transcribe(piece, progress=rep if report is not None else None)
        offset = a / SR
        segments = []
        for s in out.segments:
            words = None
            if s.words is not None:
                words = [
                    type(w)(round(w.start + offset, 3), round(w.end + offset, 3), w.word, w.probability)
                    for w in s.words
                ]
            segments.append(Segment(round(s.start + offset, 3), round(s.end + offset, 3), s.text, words))
        return segments, out.language


class _SpeechAhead:
    """Transcribes the chunks to build, in order, on its own thread, at most one chunk ahead of the frame work."""

    AHEAD = 1

    def __init__(self, owner: StreamIngestor, audio: np.ndarray, todo: list[ChunkSpan]) -> None:
        self.owner = owner
        self.audio = audio
        self.todo = list(todo)
        self.results: dict[int, tuple[list[Segment], str | None, float] | BaseException] = {}
        self.cond = threading.Condition()
        self.stopped = False
        self.thread = threading.Thread(target=self._loop, name="ingest-speech", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        for span in self.todo:
            with self.cond:  # results waiting to be taken: the frame work is behind, wait for it
                while not self.stopped and len(self.results) > self.AHEAD:
                    self.cond.wait(0.5)
                if self.stopped:
                    return
            t = time.perf_counter()
            try:
                segs, lang = self.owner.transcribe_span(self.audio, span)
                value: tuple[list[Segment], str | None, float] | BaseException = (segs, lang, time.perf_counter() - t)
            except BaseException as err:  # re-raised in the build loop
                value = err
            with self.cond:
                self.results[span.index] = value
                self.cond.notify_all()
            if isinstance(value, BaseException):
                return

    def result(self, index: int) -> tuple[list[Segment], str | None, float]:
        with self.cond:
            while index not in self.results:
                if not self.thread.is_alive():
                    raise RuntimeError(f"speech for chunk {index} was never transcribed")
                self.cond.wait(0.5)
            value = self.results.pop(index)
            self.cond.notify_all()
        if isinstance(value, BaseException):
            raise value
        return value

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
