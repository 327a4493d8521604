"""What the library panel, the HTTP API and the MCP tools do, in plain Python: ingest a video into a user's
library, list/reopen/delete it, ask about one or several videos (citations as data), find moments, give the
transcript and chapters. Every call names its user (None when sign-in is off) and sees only that user's videos
(admins see all); every refusal is a `VideoChatError` with a message for people.
"""

from __future__ import annotations

import base64
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.config import AppSettings
from model.errors import VideoChatError
from model.memory.library import Library, LibraryEntry, LibraryError
from model.memory.records import VideoMemory
from model.qa import Answer, AnswerDelta, AnswerDone, ChatSettings, Citation
from model.qa.multi import MultiVideoQA, label_videos
from model.timecode import format_time

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]
ALL = "all"


class ApiInputError(VideoChatError):
    """A request names something the server will not use (a path outside the media folders, a bad upload...)."""


def seek_fragment(seconds: float) -> str:
    t = f"{seconds:.2f}".rstrip("0").rstrip(".")
    return f"#t={t}"


@dataclass(frozen=True)
class Caller:
    """Who asks: the signed-in user (None without sign-in) and whether they are an admin."""

    user: str | None = None
    admin: bool = False


@dataclass
class Ingested:
    """What an ingest gave: the library entry, the memory, how long it took, whether the library knew it."""

    entry: LibraryEntry
    memory: VideoMemory
    seconds: float
    known: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.entry.to_dict(),
            "from_cache": bool(self.memory.from_cache),
            "already_in_library": self.known,
            "ingest_s": round(self.seconds, 4),
            "clips": len(self.memory.clips),
            "transcript_lines": len(self.memory.transcript.segments),
        }


class VideoService:
    """One per process, shared by the page, the API and the MCP tools."""

    def __init__(self, assistant: Any, settings: AppSettings, models: dict[str, Any] | None = None) -> None:
        self.assistant = assistant
        self.settings = settings
        self.models = dict(models or {})
        self.library = Library(assistant.cache)
        self.multi = MultiVideoQA(assistant)

    def caller(self, user: str | None) -> Caller:
        return Caller(user or None, bool(user) and user in self.settings.admins)

    # ------------------------------------------------------------------------------------------ ingest
    def check_limits(self, path: Path) -> None:
        """Refuse files over the server's size or duration limits before any decoding work."""
        from model.media import MediaError, probe

        size = os.path.getsize(path)
        if size > self.settings.max_file_size:
            raise MediaError(
                f"The file is {size / 2**20:.0f} MB; this server accepts up to {self.settings.max_upload_mb:.0f} MB."
            )
        info = probe(path)
        if info.duration > self.settings.max_duration_min * 60:
            raise MediaError(
                f"The video is {format_time(info.duration)} long; this server accepts up to "
                f"{self.settings.max_duration_min:.0f} minutes."
            )

    def server_path(self, text: str) -> Path:
        """A video path on this server, accepted only inside the `--media-dir` folders."""
        path = Path(text).expanduser()
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError) as err:
            raise ApiInputError(f"No such video file on the server: {path.name or text!r}.") from err
        if not any(real.is_relative_to(d) for d in self.settings.media_dirs):
            raise ApiInputError(
                "This server ingests files by path only inside its media folders (start it with --media-dir); "
                "upload the video instead."
            )
        if not real.is_file():
            raise ApiInputError(f"{path.name!r} is not a file.")
        return real

    def record(self, memory: VideoMemory, source: Path, name: str, caller: Caller) -> LibraryEntry:
        return self.library.record(memory, source, name or source.name, caller.user, self.models)

    def ingest(self, source: Path, name: str, caller: Caller, progress: Progress | None = None) -> Ingested:
        """Ingest (or reopen from the cache) and add to the caller's library."""
        self.check_limits(source)
        t = time.perf_counter()
        memory = self.assistant.ingest(source, progress=progress)
        seconds = time.perf_counter() - t
        known = self.library.has(memory.key)
        entry = self.record(memory, source, name or source.name, caller)
        return Ingested(entry, memory, seconds, known)

    def ingest_bytes(self, data: bytes, name: str, caller: Caller) -> Ingested:
        """Ingest an uploaded video's bytes (MCP: base64 in the call)."""
        if len(data) > self.settings.max_file_size:
            raise ApiInputError(
                f"The file is {len(data) / 2**20:.0f} MB; this server accepts up to {self.settings.max_upload_mb:.0f} MB."
            )
        safe = Path(name or "video.mp4").name or "video.mp4"
        with tempfile.TemporaryDirectory(prefix="videochat-upload-") as d:
            path = Path(d) / safe
            path.write_bytes(data)
            return self.ingest(path, safe, caller)

    @staticmethod
    def decode_base64(text: str) -> bytes:
        body = text.split(",", 1)[1] if text.startswith("data:") else text
        try:
            return base64.b64decode(body, validate=True)
        except (ValueError, TypeError) as err:
            raise ApiInputError("The video data is not valid base64.") from err

    # ------------------------------------------------------------------------------------------ library
    def entries(self, caller: Caller) -> list[LibraryEntry]:
        return self.library.entries(caller.user, caller.admin)

    def open(self, key: str, caller: Caller) -> tuple[LibraryEntry, VideoMemory]:
        return self.library.open(key, caller.user, caller.admin)

    def delete(self, key: str, caller: Caller) -> bool:
        return self.library.delete(key, caller.user, caller.admin)

    def resolve(self, videos: str | Sequence[str] | None, caller: Caller) -> list[LibraryEntry]:
        """Videos named by key or by name ("all", None or [] for every video of the caller's library)."""
        entries = self.entries(caller)
        wanted = [videos] if isinstance(videos, str) else list(videos or [])
        wanted = [w.strip() for w in wanted if w and w.strip()]
        if not wanted or any(w.lower() == ALL for w in wanted):
            if not entries:
                raise LibraryError("Your library is empty: ingest a video first.")
            return entries
        out: list[LibraryEntry] = []
        for w in wanted:
            hit = [e for e in entries if e.key == w] or [e for e in entries if e.name.lower() == w.lower()]
            if not hit:
                raise LibraryError(f"No video {w!r} in your library.")
            if len(hit) > 1:
                raise LibraryError(
                    f"Several videos are called {w!r}; name it by its key ({', '.join(e.key for e in hit)})."
                )
            if hit[0] not in out:
                out.append(hit[0])
        return out

    def videos(self, entries: Sequence[LibraryEntry], caller: Caller) -> list[tuple[LibraryEntry, VideoMemory]]:
        return [self.open(e.key, caller) for e in entries]

    # ------------------------------------------------------------------------------------------ questions
    def stream(
        self,
        opened: Sequence[tuple[LibraryEntry, VideoMemory]],
        question: str,
        history: list[tuple[str, str]] | None = None,
        settings: ChatSettings | None = None,
        request_id: str | None = None,
    ) -> AsyncIterator[AnswerDelta | AnswerDone]:
        """The answer's events: the single-video path for one video, the cross-video path for several."""
        if len(opened) == 1:
            return self.assistant.ask(opened[0][1], question, history, settings, request_id)  # type: ignore[no-any-return]
        return self.multi.ask([(e.name, m) for e, m in opened], question, history, settings, request_id)

    @staticmethod
    def labels(opened: Sequence[tuple[LibraryEntry, VideoMemory]]) -> dict[str, tuple[str, float]]:
        """Citation name -> (key, duration) for a cross-video answer (the names `MultiVideoQA` gives them)."""
        refs = label_videos([(e.name, m) for e, m in opened])
        return {r.name: (r.key, r.duration) for r in refs}

    def citations_data(
        self, answer: Answer, opened: Sequence[tuple[LibraryEntry, VideoMemory]]
    ) -> list[dict[str, Any]]:
        """The answer's checked citations as data: video name and key, seconds, range end, label, seek fragment."""
        labels = self.labels(opened) if len(opened) > 1 else {}
        single = opened[0][0] if len(opened) == 1 else None
        out = []
        for c in answer.citations:
            if single is not None:
                name, key = single.name, single.key
            else:
                name = c.video or ""
                key = labels.get(name, ("", 0.0))[0]
            out.append(_citation_dict(c, name, key))
        return out

    async def ask(
        self,
        question: str,
        videos: str | Sequence[str] | None,
        caller: Caller,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> dict[str, Any]:
        """The whole answer with its citations as data."""
        opened = self.videos(self.resolve(videos, caller), caller)
        values: dict[str, Any] = {}
        if max_tokens:
            values["max_tokens"] = int(max_tokens)
        if temperature is not None and temperature >= 0:
            values["temperature"] = float(temperature)
        settings = ChatSettings.from_values(**values)
        answer = None
        async for event in self.stream(opened, question, None, settings):
            if isinstance(event, AnswerDone):
                answer = event.answer
        if answer is None:
            raise VideoChatError("The answer stopped before it was finished.")
        return {
            "answer": answer.text,
            "citations": self.citations_data(answer, opened),
            "videos": [{"name": e.name, "key": e.key} for e, _ in opened],
            "moments": [
                {
                    "video": m.video or (opened[0][0].name if len(opened) == 1 else ""),
                    "start": round(m.start, 3),
                    "end": round(m.end, 3),
                    "reason": m.reason,
                }
                for m in answer.moments
            ],
            "notes": list(answer.notes),
            "timings": {k: round(v, 4) for k, v in answer.timings.items()},
        }

    def find_moments(
        self, query: str, videos: str | Sequence[str] | None, caller: Caller, limit: int = 3
    ) -> list[dict[str, Any]]:
        """Per video that talks about `query`, its matching moments (best video first)."""
        opened = self.videos(self.resolve(videos, caller), caller)
        matches = self.multi.videos_about([(e.name, m) for e, m in opened], query, limit=max(1, int(limit)))
        keys = self.labels(opened)
        out = []
        for vm in matches:
            d = vm.to_dict()
            d["key"] = keys.get(vm.name, (vm.key, 0.0))[0]
            for m in d["moments"]:  # type: ignore[union-attr]
                m["label"] = f"{vm.name} {format_time(m['start'], keys.get(vm.name, ('', None))[1])}"
                m["seek"] = seek_fragment(m["start"])
            out.append(d)
        return out

    def transcript(self, video: str, caller: Caller) -> dict[str, Any]:
        """The video's timed transcript and its chapters (or, without chapters, even sections of the transcript)."""
        entries = self.resolve(video or None, caller)
        if len(entries) != 1:
            raise LibraryError("Name one video (its name or key) to get its transcript.")
        entry, memory = self.open(entries[0].key, caller)
        segments = [
            {"start": round(s.start, 3), "end": round(s.end, 3), "label": format_time(s.start, memory.duration),
             "text": s.text.strip()}
            for s in memory.transcript.segments
            if s.text.strip()
        ]  # fmt: skip
        chapters, source = chapters_of(memory)
        return {
            "video": entry.name,
            "key": entry.key,
            "duration": round(memory.duration, 3),
            "language": memory.transcript.language,
            "segments": segments,
            "chapters": chapters,
            "chapters_source": source,
        }


def _citation_dict(c: Citation, name: str, key: str) -> dict[str, Any]:
    return {
        "video": name,
        "key": key,
        "seconds": round(float(c.seconds), 3),
        "end": None if c.end is None else round(float(c.end), 3),
        "label": c.label if not name or c.label.startswith(name + " ") else f"{name} {c.label}",
        "source": c.source,
        "seek": seek_fragment(float(c.seconds)),
    }


def chapters_of(memory: VideoMemory) -> tuple[list[dict[str, Any]], str]:
    """The memory's chapters as data; without any, even sections of the transcript titled by their first line."""
    chapters = getattr(memory, "chapters", None)
    items = getattr(chapters, "chapters", chapters)
    if items:
        out = []
        for ch in items:
            d = ch.to_dict() if hasattr(ch, "to_dict") else dict(vars(ch)) if hasattr(ch, "__dict__") else dict(ch)
            out.append({k: v for k, v in d.items() if isinstance(v, str | int | float | bool | type(None))})
        return out, "chapters"
    segs = [s for s in memory.transcript.segments if s.text.strip()]
    if not segs:
        return [], "none"
    n = max(1, min(8, round(memory.duration / 60)))
    span = memory.duration / n
    out = []
    for k in range(n):
        a, b = k * span, (k + 1) * span
        inside = [s for s in segs if a <= s.start < b]
        if inside:
            title = " ".join(inside[0].text.split())
            out.append({"start": round(a, 3), "end": round(b, 3), "label": format_time(a, memory.duration),
                        "title": title if len(title) <= 80 else title[:79] + "…"})  # fmt: skip
    return out, "transcript sections"
