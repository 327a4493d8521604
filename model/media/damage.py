"""What a damaged file lost: stretches of audio or picture that could not be decoded, and the note a user reads.

Media reports them (`probe` for what the container shows: a cut-short file, a stretch missing from both
streams; `decode_audio` for audio packets that do not decode; the frame samplers for frames that do not); the
memory keeps them and the UI/CLI show `damage_note`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from model.timecode import format_range, format_time

KINDS = ("audio", "video")

# Reasons (the `note` of a stretch), in the words the user reads.
AUDIO_UNDECODABLE = "damaged audio, silence instead"
AUDIO_MISSING = "audio missing from the file, silence instead"
VIDEO_UNDECODABLE = "damaged picture, nearest good frame instead"
VIDEO_CONCEALED = "damaged picture, shown as decoded"
VIDEO_MISSING = "picture missing from the file"
CUT_SHORT = "the file is cut short"


@dataclass(frozen=True)
class LostStretch:
    """[start, end) seconds of one stream that could not be decoded (or is not in the file at all)."""

    kind: str  # "audio" | "video"
    start: float
    end: float
    note: str  # why, in words a user understands (one of the reasons above)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {self.kind!r}")
        if self.end < self.start:
            raise ValueError(f"a lost stretch cannot end ({self.end}) before it starts ({self.start})")

    @property
    def length(self) -> float:
        return self.end - self.start

    def to_dict(self, digits: int | None = None) -> dict[str, Any]:
        """JSON-safe; `digits` rounds the times (for people: the cache keeps them exact)."""
        if digits is None:
            return asdict(self)
        return {**asdict(self), "start": round(self.start, digits), "end": round(self.end, digits)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LostStretch:
        return cls(kind=str(d["kind"]), start=float(d["start"]), end=float(d["end"]), note=str(d.get("note", "")))

    def describe(self, duration: float | None = None) -> str:
        """'audio 00:04-00:06 (1.5 s, damaged audio, silence instead)'; a stretch under a second: 'at 00:09'."""
        what = "audio" if self.kind == "audio" else "picture"
        n = self.length
        when = f"at {format_time(self.start, duration)}" if n < 1 else format_range(self.start, self.end, duration)
        size = f"{n:.2f} s" if n < 1 else f"{n:.1f} s" if n < 60 else f"{n / 60:.1f} min"
        return f"{what} {when} ({size}, {self.note})"


def merge_lost(stretches: Iterable[LostStretch], join: float = 0.5) -> list[LostStretch]:
    """Sorted, with stretches of the same kind and reason that overlap or lie within `join` seconds made one."""
    out: list[LostStretch] = []
    for s in sorted(stretches, key=lambda s: (s.kind, s.note, s.start, s.end)):
        last = out[-1] if out else None
        if last is not None and (last.kind, last.note) == (s.kind, s.note) and s.start <= last.end + join:
            out[-1] = LostStretch(s.kind, last.start, max(last.end, s.end), s.note)
        else:
            out.append(s)
    return sorted(out, key=lambda s: (s.start, s.kind, s.end))


def damage_note(stretches: Iterable[LostStretch], duration: float | None = None, limit: int = 4) -> str:
    """One sentence for the UI and CLI ('' for an intact file): what was lost, where and why."""
    items = merge_lost(stretches)
    if not items:
        return ""
    parts = [s.describe(duration) for s in items[:limit]]
    if len(items) > limit:
        parts.append(f"{len(items) - limit} more")
    return (
        "This file is damaged; it was used as far as it decodes: "
        + "; ".join(parts)
        + ". Answers about those stretches may be incomplete."
    )
