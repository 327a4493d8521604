"""Speech of the chunked ingest: Whisper on one chunk's audio window (times shifted to video time), and
`SpeechAhead`, which transcribes the chunks to build on its own thread, one chunk ahead of their frames (on a
2-core machine Whisper on chunk k+1 overlaps the decoding, encoding and OCR of chunk k)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from model.memory.chunks import ChunkSpan
from model.memory.ingest import Progress
from model.speech import Segment, Transcriber

SR = 16000

SpanSpeech = tuple[list[Segment], str | None]  # (the chunk's lines in video time, the language heard)


def transcribe_span(
    transcriber: Transcriber | None, audio: np.ndarray | None, span: ChunkSpan, report: Progress | None = None
) -> SpanSpeech:
    """Whisper on the chunk's audio window; line and word times shifted to video time."""
    if transcriber is None or audio is None:
        return [], None
    a, b = round(span.audio_start * SR), round(span.audio_end * SR)
    piece = audio[a:b]
    if piece.size == 0:
        return [], None

    def rep(stage: str, fraction: float) -> None:
        if report is not None:
            report("transcribing", fraction)

    out = transcriber.transcribe(piece, progress=rep if report is not None else None)
    offset = a / SR
    segments = []
    for s in out.segments:
        words = None
        if s.words is not None:
            words = [
                type(w)(round(w.start + offset, 3), round(w.end + offset, 3), w.word, w.probability) for w in s.words
            ]
        segments.append(Segment(round(s.start + offset, 3), round(s.end + offset, 3), s.text, words))
    return segments, out.language


class SpeechAhead:
    """Transcribes the chunks to build, in order, on its own thread, at most one chunk ahead of the frame work."""

    AHEAD = 1

    def __init__(
        self, transcribe: Callable[[np.ndarray, ChunkSpan], SpanSpeech], audio: np.ndarray, todo: list[ChunkSpan]
    ) -> None:
        self.transcribe = transcribe
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
                segs, lang = self.transcribe(self.audio, span)
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
