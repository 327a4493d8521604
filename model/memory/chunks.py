"""Chunked, crash-safe memory: a long video's memory written one time stretch ("chunk") at a time.

A chunk is a run of whole clips [start, end) plus the transcript lines of its audio window [audio_start, audio_end).
The audio window ends in the quietest moment shortly after the chunk's last clip, so no spoken line is cut in two
and every line a chunk's clips overlap is known once the chunks up to it are built.

On disk, under `<cache root>/.partial/<memory key>/`:
- `layout.json`: the chunk boundaries, fixed at the first start (a resumed ingest cuts the video where the first
  run did, whatever the audio decoder or the settings do later);
- one file per finished chunk, `chunk-NNNN-<blake2b of its bytes>.safetensors` (tensors + a JSON header), written
  under a temporary name, flushed and renamed into place: a chunk file is whole or absent, and its name carries
  its checksum, so a damaged chunk is found on reading (deleted and rebuilt).
When the last chunk is done the whole memory is written to the `MemoryCache` as one entry and the folder goes.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from model.media import ClipPlan, LostStretch, merge_lost
from model.memory.keys import file_checksum
from model.memory.records import ClipRecord, VideoMemory
from model.speech import Segment, Transcript

log = logging.getLogger(__name__)

CHUNK_FORMAT = 1
PARTIAL = ".partial"  # hidden from MemoryCache.entries(): not a finished memory
LAYOUT = "layout.json"
_NAME = re.compile(r"^chunk-(\d{4})-([0-9a-f]{32})\.safetensors$")
HOP_S = 0.05  # audio energy hop for the quiet-point search
SMOOTH_S = 0.3  # window the energy is averaged over


@dataclass(frozen=True)
class ChunkSpan:
    """Where one chunk lies: clips [clip_start, clip_end) covering [start, end) s, audio [audio_start, audio_end) s."""

    index: int
    clip_start: int
    clip_end: int
    start: float
    end: float
    audio_start: float
    audio_end: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChunkSpan:
        return cls(
            int(d["index"]),
            int(d["clip_start"]),
            int(d["clip_end"]),
            float(d["start"]),
            float(d["end"]),
            float(d["audio_start"]),
            float(d["audio_end"]),
        )


@dataclass
class Chunk:
    """Everything ingest learned about one chunk."""

    span: ChunkSpan
    clips: list[ClipRecord]
    segments: list[Segment]  # transcript lines of the chunk's audio window (video times)
    language: str | None = None
    thumbnails: list[bytes] = field(default_factory=list)
    retrieval: np.ndarray | None = None  # [n, 512] float32
    text_embeddings: np.ndarray | None = None  # [n, d] float32
    segment_embeddings: np.ndarray | None = None  # [s, d] float32
    timings: dict[str, float] = field(default_factory=dict)
    damage: list[LostStretch] = field(default_factory=list)  # broken frames met while decoding the chunk


# ------------------------------------------------------------------------------------------------- layout
def quiet_point(audio: np.ndarray | None, sr: int, t0: float, t1: float) -> float:
    """The quietest moment in [t0, t1] s (smoothed energy; the earliest of equal minima); t0 without audio."""
    if audio is None or t1 <= t0:
        return t0
    a, b = int(t0 * sr), min(len(audio), int(t1 * sr))
    hop = max(1, int(HOP_S * sr))
    if b - a < 2 * hop:
        return t0
    frames = audio[a : a + (b - a) // hop * hop].reshape(-1, hop)
    energy = (frames.astype(np.float64) ** 2).mean(axis=1)
    k = max(1, round(SMOOTH_S / HOP_S))
    smooth = np.convolve(energy, np.ones(k) / k, mode="same")
    i = int(np.argmin(smooth))
    return round(t0 + (i + 0.5) * hop / sr, 3)


def plan_chunks(
    plans: Sequence[ClipPlan],
    audio: np.ndarray | None,
    sr: int,
    chunk_s: float,
    first_chunk_s: float | None = None,
    search_s: float = 8.0,
) -> list[ChunkSpan]:
    """Group the clip plan into chunks of about `chunk_s` seconds of video (the first one `first_chunk_s`, so the
    chat opens early); each audio window ends at the quietest point within `search_s` after its last clip."""
    if chunk_s <= 0:
        raise ValueError("chunk_s must be positive")
    audio_len = (len(audio) / sr) if audio is not None else 0.0
    groups: list[tuple[int, int]] = []
    i = 0
    while i < len(plans):
        target = first_chunk_s if (not groups and first_chunk_s) else chunk_s
        j = i + 1
        while j < len(plans) and plans[j].end - plans[i].start <= target + 1e-6:
            j += 1
        groups.append((i, j))
        i = j
    spans: list[ChunkSpan] = []
    a0 = 0.0
    for n, (i, j) in enumerate(groups):
        start, end = float(plans[i].start), float(plans[j - 1].end)
        if n == len(groups) - 1:
            a1 = max(audio_len, end)
        else:
            limit = float(plans[j].end)  # never past the next chunk's first clip
            a1 = max(end, quiet_point(audio, sr, end, min(end + search_s, limit)))
        spans.append(ChunkSpan(n, i, j, start, end, a0, a1))
        a0 = a1
    return spans


# ------------------------------------------------------------------------------------------------- files
def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _array(value: np.ndarray | None) -> torch.Tensor | None:
    return None if value is None else torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))


class ChunkStore:
    """The finished chunks of one memory being built (`<cache root>/.partial/<key>/`)."""

    def __init__(self, cache_root: str | Path, key: str) -> None:
        self.key = key
        self.dir = Path(cache_root) / PARTIAL / key
        self.writes = 0  # chunk files written by this store (tests count recomputation with it)

    # -- layout ----------------------------------------------------------------------------------------
    def read_layout(self) -> dict[str, Any] | None:
        try:
            data = json.loads((self.dir / LAYOUT).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("format") == CHUNK_FORMAT else None

    def write_layout(self, spans: Sequence[ChunkSpan], extra: dict[str, Any] | None = None) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = {"format": CHUNK_FORMAT, "key": self.key, "spans": [s.to_dict() for s in spans], **(extra or {})}
        _write_atomic(self.dir / LAYOUT, json.dumps(data, indent=1).encode())

    def spans(self) -> list[ChunkSpan] | None:
        layout = self.read_layout()
        if layout is None:
            return None
        try:
            return [ChunkSpan.from_dict(d) for d in layout["spans"]]
        except (KeyError, TypeError, ValueError):
            return None

    # -- chunks ----------------------------------------------------------------------------------------
    def files(self) -> dict[int, list[Path]]:
        out: dict[int, list[Path]] = {}
        if self.dir.is_dir():
            for f in sorted(self.dir.iterdir()):
                m = _NAME.match(f.name)
                if m:
                    out.setdefault(int(m.group(1)), []).append(f)
        return out

    def write(self, chunk: Chunk) -> Path:
        """Write one finished chunk atomically; returns its file."""
        self.dir.mkdir(parents=True, exist_ok=True)
        clips = chunk.clips
        tensors: dict[str, torch.Tensor] = {}
        if clips and all(c.embeddings is not None for c in clips):
            tensors["clip_embeddings"] = torch.stack([c.embeddings for c in clips]).to(torch.float16).contiguous()  # type: ignore[misc]
        for name in ("retrieval", "text_embeddings", "segment_embeddings"):
            t = _array(getattr(chunk, name))
            if t is not None:
                tensors[name] = t
        offsets = [0]
        for jpg in chunk.thumbnails:
            offsets.append(offsets[-1] + len(jpg))
        tensors["thumbnails"] = torch.frombuffer(
            bytearray(b"".join(chunk.thumbnails)) or bytearray(1), dtype=torch.uint8
        )
        meta = {
            "format": CHUNK_FORMAT,
            "key": self.key,
            "span": chunk.span.to_dict(),
            "clips": [c.meta() for c in clips],
            "segments": [asdict(s) for s in chunk.segments],
            "language": chunk.language,
            "thumb_offsets": offsets,
            "timings": chunk.timings,
            "damage": [d.to_dict() for d in chunk.damage],
        }
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=self.dir)
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata={"meta": json.dumps(meta)})
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            final = self.dir / f"chunk-{chunk.span.index:04d}-{file_checksum(Path(tmp))}.safetensors"
            for old in self.files().get(chunk.span.index, []):
                old.unlink(missing_ok=True)
            os.replace(tmp, final)
        finally:
            Path(tmp).unlink(missing_ok=True)
        _fsync_dir(self.dir)
        self.writes += 1
        return final

    def load(self, span: ChunkSpan) -> Chunk | None:
        """The finished chunk for `span`, or None when absent or damaged (a damaged file is deleted)."""
        for f in self.files().get(span.index, []):
            try:
                chunk = self._read(f, span)
            except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:  # safetensors: various errors
                log.warning("chunk %s of memory %s is damaged (%s); rebuilding it", span.index, self.key, err)
                f.unlink(missing_ok=True)
                continue
            return chunk
        return None

    def _read(self, f: Path, span: ChunkSpan) -> Chunk:
        want = _NAME.match(f.name)
        assert want is not None
        if file_checksum(f) != want.group(2):
            raise ValueError("checksum mismatch")
        with safe_open(str(f), "pt") as sf:
            meta = json.loads((sf.metadata() or {})["meta"])
            tensors = {k: sf.get_tensor(k) for k in sf.keys()}  # noqa: SIM118  (safe_open has no __iter__)
        if meta.get("format") != CHUNK_FORMAT or meta.get("key") != self.key:
            raise ValueError("written for another memory or format")
        if ChunkSpan.from_dict(meta["span"]) != span:
            raise ValueError("written for another chunk layout")
        embeds = tensors.get("clip_embeddings")
        names = {f.name for f in fields(ClipRecord)} - {"embeddings"}
        clips = [
            ClipRecord(**{k: v for k, v in m.items() if k in names}, embeddings=None if embeds is None else embeds[i])
            for i, m in enumerate(meta["clips"])
        ]
        if len(clips) != span.clip_end - span.clip_start:
            raise ValueError(f"{len(clips)} clips, the layout says {span.clip_end - span.clip_start}")
        segments = Transcript.from_dict({"segments": meta["segments"]}).segments
        blob = tensors["thumbnails"].numpy().tobytes()
        offsets = meta["thumb_offsets"]
        thumbs = [blob[a:b] for a, b in itertools.pairwise(offsets)]

        def arr(name: str) -> np.ndarray | None:
            t = tensors.get(name)
            return None if t is None else t.float().numpy()

        return Chunk(
            span=span,
            clips=clips,
            segments=segments,
            language=meta.get("language"),
            thumbnails=thumbs,
            retrieval=arr("retrieval"),
            text_embeddings=arr("text_embeddings"),
            segment_embeddings=arr("segment_embeddings"),
            timings={k: float(v) for k, v in meta.get("timings", {}).items()},
            damage=[LostStretch.from_dict(d) for d in meta.get("damage", [])],
        )

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def sweep_partial(cache_root: str | Path, max_age_s: float = 7 * 86400.0, keep: Sequence[str] = ()) -> list[str]:
    """Remove chunk folders of ingests nobody resumed for `max_age_s` (they are outside the cache's size cap)."""
    import time

    removed = []
    root = Path(cache_root) / PARTIAL
    try:
        folders = list(root.iterdir())
    except OSError:
        return removed
    now = time.time()
    for d in folders:
        try:
            age = now - max(f.stat().st_mtime for f in [d, *d.iterdir()])
        except (OSError, ValueError):
            continue
        if d.name not in keep and age > max_age_s:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d.name)
    return removed


# ------------------------------------------------------------------------------------------------- memory
def _stack(parts: list[np.ndarray | None]) -> np.ndarray | None:
    if not parts or any(p is None for p in parts):
        return None
    return np.concatenate([p for p in parts if p is not None], axis=0)


def assemble(
    key: str,
    path: Path,
    profile: str,
    info: Any,
    sampling: dict[str, Any],
    chunks: Sequence[Chunk],
    complete: bool,
    audio_duration: float = 0.0,
    damage: Sequence[LostStretch] = (),
) -> VideoMemory:
    """The memory the finished chunks make (in order); `ingested_until` is the last chunk's end unless complete.
    `damage`: what the whole file lost (container, audio); the chunks add the broken frames they met."""
    clips = [c for ch in chunks for c in ch.clips]
    segments = [s for ch in chunks for s in ch.segments]
    langs = Counter(ch.language for ch in chunks if ch.language)
    timings: dict[str, float] = {}
    for ch in chunks:
        for k, v in ch.timings.items():
            timings[k] = timings.get(k, 0.0) + v
    return VideoMemory(
        key=key,
        path=path,
        profile=profile,
        info=info,
        transcript=Transcript(
            segments=segments,
            language=langs.most_common(1)[0][0] if langs else None,
            duration=audio_duration if complete else min(audio_duration, chunks[-1].span.audio_end if chunks else 0.0),
        ),
        clips=clips,
        sampling=sampling,
        retrieval_embeddings=_stack([ch.retrieval for ch in chunks]),
        text_embeddings=_stack([ch.text_embeddings for ch in chunks]),
        segment_embeddings=_stack([ch.segment_embeddings for ch in chunks]),
        thumbnails=[t for ch in chunks for t in ch.thumbnails],
        timings=timings,
        ingested_until=None if complete else (chunks[-1].span.end if chunks else 0.0),
        damage=merge_lost([*damage, *(d for ch in chunks for d in ch.damage)]),
    )


def speech_in(segments: Sequence[Segment], start: float, end: float) -> str:
    """The speech a clip [start, end) overlaps (as the whole-video build gives it)."""
    return " ".join(s.text.strip() for s in segments if s.start < end and s.end > start and s.text.strip())
