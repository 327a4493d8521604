"""On-disk memory cache: one folder per (video content, profile, sampling), safetensors + JSON manifest.

Entries are written under a temporary name and renamed into place (atomic on one filesystem), carry a
manifest with each file's size and BLAKE2 checksum (a damaged entry is detected and rebuilt), and are
evicted least-recently-used first when the cache grows past `max_bytes`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from model.memory.keys import FORMAT_VERSION
from model.memory.records import ClipRecord, VideoMemory
from model.speech import Transcript

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
TENSORS = "tensors.safetensors"
META = "meta.json"
THUMBS = "thumbs.bin"
LAST_USED = ".last_used"
DEFAULT_MAX_BYTES = 20 * 2**30
_CHUNK = 8 << 20


def _file_checksum(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class CacheCorruptError(Exception):
    """An entry failed its manifest check (internal: the entry is dropped and rebuilt)."""


@dataclass
class CacheEntry:
    key: str
    path: Path
    size: int
    last_used: float


class MemoryCache:
    """`get(key) -> VideoMemory | None`, `put(memory)`; `root` defaults to data_dir()/memory."""

    def __init__(self, root: str | Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if root is None:
            from model.assets import data_dir

            root = data_dir() / "memory"
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)

    # -- reading ------------------------------------------------------------------------------------
    def entry_dir(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str) -> VideoMemory | None:
        """The stored memory, or None when absent or damaged (a damaged entry is deleted)."""
        d = self.entry_dir(key)
        if not (d / MANIFEST).exists():
            if d.exists():
                log.warning("memory cache entry %s has no manifest (interrupted write?); rebuilding", key)
                shutil.rmtree(d, ignore_errors=True)
            return None
        try:
            memory = self._load(d, key)
        except (CacheCorruptError, OSError, ValueError, KeyError, json.JSONDecodeError, RuntimeError) as err:
            log.warning("memory cache entry %s is damaged (%s); rebuilding", key, err)
            shutil.rmtree(d, ignore_errors=True)
            return None
        self._touch(d)
        return memory

    def _verify(self, d: Path) -> dict[str, Any]:
        manifest = json.loads((d / MANIFEST).read_text())
        if manifest.get("version") != FORMAT_VERSION:
            raise CacheCorruptError(f"format version {manifest.get('version')} != {FORMAT_VERSION}")
        for name, want in manifest["files"].items():
            f = d / name
            if not f.exists():
                raise CacheCorruptError(f"missing {name}")
            if f.stat().st_size != want["size"]:
                raise CacheCorruptError(f"{name} has {f.stat().st_size} bytes, manifest says {want['size']}")
            if _file_checksum(f) != want["blake2b"]:
                raise CacheCorruptError(f"{name} checksum mismatch")
        return manifest

    def _load(self, d: Path, key: str) -> VideoMemory:
        from model.media import LostStretch, VideoInfo

        self._verify(d)
        meta = json.loads((d / META).read_text())
        tensors = load_file(str(d / TENSORS)) if (d / TENSORS).exists() else {}
        clip_embeds = tensors.get("clip_embeddings")  # [N, 96, hidden] fp16
        clips = []
        for i, m in enumerate(meta["clips"]):
            clips.append(
                ClipRecord(
                    index=int(m["index"]),
                    start=float(m["start"]),
                    end=float(m["end"]),
                    frame_times=[float(t) for t in m["frame_times"]],
                    transcript=m.get("transcript", ""),
                    ocr=list(m.get("ocr", [])),
                    ocr_times=[float(t) for t in m.get("ocr_times", [])],
                    embeddings=None if clip_embeds is None else clip_embeds[i],
                    # absent in entries written before visual tags: read as none
                    tags=[str(t) for t in m.get("tags", [])],
                    tag_times=[float(t) for t in m.get("tag_times", [])],
                    tag_counts=[int(n) for n in m.get("tag_counts", [])],
                    tag_sources=[str(s) for s in m.get("tag_sources", [])],
                )
            )

        def arr(name: str) -> np.ndarray | None:
            t = tensors.get(name)
            return None if t is None else t.float().numpy()

        thumbs: list[bytes] = []
        if (d / THUMBS).exists():
            blob = (d / THUMBS).read_bytes()
            offsets = meta.get("thumb_offsets", [])
            thumbs = [blob[a:b] for a, b in itertools.pairwise(offsets)]
        return VideoMemory(
            key=key,
            path=Path(meta["path"]),
            profile=meta["profile"],
            info=VideoInfo(**meta["info"]),
            transcript=Transcript.from_dict(meta["transcript"]),
            clips=clips,
            sampling=meta["sampling"],
            retrieval_embeddings=arr("retrieval_embeddings"),
            text_embeddings=arr("text_embeddings"),
            segment_embeddings=arr("segment_embeddings"),
            thumbnails=thumbs,
            timings=meta.get("timings", {}),
            damage=[LostStretch.from_dict(d) for d in meta.get("damage", [])],  # entries before damage: none
            from_cache=True,
        )

    # -- writing ------------------------------------------------------------------------------------
    def put(self, memory: VideoMemory) -> Path:
        """Write `memory` atomically (temp folder + rename), then evict old entries over the size cap."""
        final = self.entry_dir(memory.key)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{memory.key}-", dir=self.root))
        try:
            self._write(tmp, memory)
            if final.exists():  # replace: move the old one aside first so `final` is never half-written
                trash = Path(tempfile.mkdtemp(prefix=f".old-{memory.key}-", dir=self.root))
                os.replace(final, trash / "entry")
                os.replace(tmp, final)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._touch(final)
        self.evict(keep=memory.key)
        return final

    def _write(self, d: Path, memory: VideoMemory) -> None:
        tensors: dict[str, torch.Tensor] = {}
        if memory.clips and all(c.embeddings is not None for c in memory.clips):
            tensors["clip_embeddings"] = (
                torch.stack([c.embeddings for c in memory.clips]).to(torch.float16).contiguous()
            )
        for name in ("retrieval_embeddings", "text_embeddings", "segment_embeddings"):
            value = getattr(memory, name)
            if value is not None:
                tensors[name] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
        if tensors:
            save_file(tensors, str(d / TENSORS))
        offsets = [0]
        with open(d / THUMBS, "wb") as f:
            for jpg in memory.thumbnails:
                f.write(jpg)
                offsets.append(offsets[-1] + len(jpg))
        info = memory.info.to_dict() if hasattr(memory.info, "to_dict") else dict(vars(memory.info))
        meta = {
            "path": str(memory.path),
            "profile": memory.profile,
            "info": info,
            "transcript": memory.transcript.to_dict(),
            "clips": [c.meta() for c in memory.clips],
            "sampling": memory.sampling,
            "thumb_offsets": offsets,
            "timings": memory.timings,
            "damage": [d.to_dict() for d in memory.damage],
        }
        (d / META).write_text(json.dumps(meta))
        files = {}
        for f in sorted(d.iterdir()):
            files[f.name] = {"size": f.stat().st_size, "blake2b": _file_checksum(f)}
        manifest = {"version": FORMAT_VERSION, "key": memory.key, "created": time.time(), "files": files}
        (d / MANIFEST).write_text(json.dumps(manifest, indent=1))  # written last: its presence marks completeness

    # -- size cap -----------------------------------------------------------------------------------
    @staticmethod
    def _touch(d: Path) -> None:
        (d / LAST_USED).write_text(str(time.time()))

    def entries(self) -> Iterator[CacheEntry]:
        for d in self.root.iterdir():
            if not d.is_dir() or d.name.startswith("."):
                continue
            size = sum(f.stat().st_size for f in d.iterdir() if f.is_file())
            try:
                last = float((d / LAST_USED).read_text())
            except (OSError, ValueError):
                last = d.stat().st_mtime
            yield CacheEntry(d.name, d, size, last)

    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries())

    def evict(self, keep: str | None = None) -> list[str]:
        """Delete least-recently-used entries until the cache fits `max_bytes` (never `keep`)."""
        entries = sorted(self.entries(), key=lambda e: e.last_used)
        total = sum(e.size for e in entries)
        removed = []
        for e in entries:
            if total <= self.max_bytes:
                break
            if e.key == keep:
                continue
            shutil.rmtree(e.path, ignore_errors=True)
            total -= e.size
            removed.append(e.key)
            log.info("evicted memory %s (%d bytes) to stay under %d bytes", e.key, e.size, self.max_bytes)
        return removed

    def clear(self) -> None:
        for e in list(self.entries()):
            shutil.rmtree(e.path, ignore_errors=True)
