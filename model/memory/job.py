"""One video's ingest in progress (or done), shared by every session asking about it: the newest memory snapshot,
progress for its listeners, its speed (for "ready in about N s") and the ways to wait for more of it."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from model.errors import VideoChatError
from model.media import VideoInfo
from model.memory.chunks import ChunkSpan
from model.memory.ingest import Progress
from model.memory.records import VideoMemory
from model.profiles import SamplingSpec

log = logging.getLogger(__name__)


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
