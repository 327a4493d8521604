"""Transcript data: words, segments and whole transcripts (plain dataclasses, cacheable as JSON dicts)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from model.errors import VideoChatError


class SpeechError(VideoChatError):
    """A transcription problem the user can act on."""


class AudioInputError(SpeechError):
    """The audio given to a transcriber is not usable (wrong shape, not finite...)."""


@dataclass
class Word:
    start: float  # seconds from the start of the media
    end: float
    word: str  # stripped of Whisper's leading space
    probability: float


@dataclass
class Segment:
    start: float  # seconds from the start of the media
    end: float
    text: str
    words: list[Word] | None = None  # only when word timestamps were asked for


@dataclass
class Transcript:
    segments: list[Segment] = field(default_factory=list)
    language: str | None = None  # ISO code ("en"); None when nothing was said
    duration: float = 0.0  # seconds of audio that were transcribed (0.0 without audio)

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.text)

    def __bool__(self) -> bool:  # an empty transcript is falsy, like an empty list
        return bool(self.segments)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (for the memory cache)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transcript:
        segments = [
            Segment(
                start=float(s["start"]),
                end=float(s["end"]),
                text=str(s["text"]),
                words=None if s.get("words") is None else [Word(**w) for w in s["words"]],
            )
            for s in data.get("segments", [])
        ]
        return cls(segments=segments, language=data.get("language"), duration=float(data.get("duration", 0.0)))
