"""On-disk memory cache: one folder per (video content, profile, sampling), safetensors + JSON manifest.

Entries are written under a temporary name and renamed into place (atomic on one filesystem), carry a
manifest with each file's size and BLAKE2 checksum (a damaged entry is detected and rebuilt), and are
evicted least-recently-used first when the cache grows past `max_bytes`. Temporary folders count toward that
cap, and those a crashed or killed writer left behind are removed. A folder that cannot be written (read-only,
full disk) gives a `CacheError` with the reason in words, never a raw OSError.
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from model.errors import VideoChatError
from model.memory.keys import FORMAT_VERSION, file_checksum
from model.memory.records import ClipRecord, VideoMemory
from model.speech import Transcript

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
TENSORS = "tensors.safetensors"
META = "meta.json"
THUMBS = "thumbs.bin"
LAST_USED = ".last_used"
DEFAULT_MAX_BYTES = 20 * 2**30
TEMP_PREFIXES = (".tmp-", ".old-")  # a write in progress, an entry being replaced
STALE_TEMP_S = 3600.0  # a temporary folder of unknown origin this old is a crashed write's
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"
_WRITER = re.compile(r"-([A-Za-z0-9]+)\.(\d+)-[^-]*$")  # ".tmp-KEY-HOST.PID-random": who is writing it
_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EACCES: "permission denied",
    errno.EPERM: "the operation is not permitted",
    errno.EROFS: "the file system is read-only",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "a file of that name is in the way",
    errno.ENOENT: "the folder disappeared",
}


class CacheError(VideoChatError):
    """The memory cache folder cannot be created or written."""


def os_reason(err: OSError | SafetensorError) -> str:
    """A file-system error's cause in words (no errno numbers); safetensors reports one as "(os error 28)"."""
    if not isinstance(err, OSError):
        m = re.search(r"os error (\d+)", str(err))
        return _REASONS.get(int(m.group(1)), str(err)) if m else str(err)
    return _REASONS.get(err.errno or 0) or (err.strerror or str(err)).lower()


def _tree_size(d: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(d):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


def _writer_alive(name: str) -> bool | None:
    """Whether the process writing temporary folder `name` still runs (None: not known here)."""
    m = _WRITER.search(name)
    if m is None or m.group(1) != _HOST:
        return None
    try:
        os.kill(int(m.group(2)), 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process: alive
        return True
    return True


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
        try:
            if root is None:
                from model.assets import data_dir

                root = data_dir() / "memory"
            self.root = Path(root)
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            where = root if root is not None else "under $VIDEOCHAT_HOME"
            raise CacheError(
                f"The memory cache folder {where} cannot be created ({os_reason(err)}). "
                "Pass --cache-dir with a folder you can write to."
            ) from err
        self.max_bytes = int(max_bytes)
        self.remove_stale_temp()

    def writable(self) -> str | None:
        """None when memories can be saved here, else why not (in words)."""
        try:
            fd, name = tempfile.mkstemp(prefix=".probe-", dir=self.root)
            os.close(fd)
            os.unlink(name)
        except OSError as err:
            return f"The memory cache folder {self.root} cannot be written ({os_reason(err)})."
        return None

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
            if file_checksum(f) != want["blake2b"]:
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
        """Write `memory` atomically (temp folder + rename), then evict old entries over the size cap.

        A CacheError (the reason in words) when the folder cannot take it; nothing half-written stays behind."""
        final = self.entry_dir(memory.key)
        tmp: Path | None = None
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{memory.key}-{_HOST}.{os.getpid()}-", dir=self.root))
            self._write(tmp, memory)
            if final.exists():  # replace: move the old one aside first so `final` is never half-written
                trash = Path(tempfile.mkdtemp(prefix=f".old-{memory.key}-{_HOST}.{os.getpid()}-", dir=self.root))
                os.replace(final, trash / "entry")
                os.replace(tmp, final)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(tmp, final)
        except (OSError, SafetensorError) as err:
            raise CacheError(
                f"This video's memory could not be saved in the cache folder {self.root} ({os_reason(err)})."
            ) from err
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        self._touch(final)
        self.evict(keep=memory.key)
        return final

    def try_put(self, memory: VideoMemory) -> str | None:
        """`put`, but a failure is returned as a note for the user (the memory itself stays usable)."""
        try:
            self.put(memory)
        except CacheError as err:
            log.warning("%s", err)
            return f"{err} Answers still work; this video will be processed again next time."
        return None

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
            files[f.name] = {"size": f.stat().st_size, "blake2b": file_checksum(f)}
        manifest = {"version": FORMAT_VERSION, "key": memory.key, "created": time.time(), "files": files}
        (d / MANIFEST).write_text(json.dumps(manifest, indent=1))  # written last: its presence marks completeness

    # -- size cap -----------------------------------------------------------------------------------
    @staticmethod
    def _touch(d: Path) -> None:
        try:
            (d / LAST_USED).write_text(str(time.time()))
        except OSError as err:  # a read-only cache still serves what it holds
            log.debug("cannot mark %s as used: %s", d, err)

    def entries(self) -> Iterator[CacheEntry]:
        for d in self._children():
            if d.name.startswith(".") or not d.is_dir():
                continue
            try:
                size = sum(f.stat().st_size for f in d.iterdir() if f.is_file())
            except OSError:  # removed meanwhile (another process evicted it)
                continue
            try:
                last = float((d / LAST_USED).read_text())
            except (OSError, ValueError):
                last = d.stat().st_mtime if d.exists() else 0.0
            yield CacheEntry(d.name, d, size, last)

    def _children(self) -> list[Path]:
        try:
            return list(self.root.iterdir())
        except OSError:
            return []

    def temp_dirs(self) -> list[CacheEntry]:
        """Temporary folders (writes in progress, or left by a crashed writer), with their sizes."""
        out = []
        for d in self._children():
            if d.name.startswith(TEMP_PREFIXES) and d.is_dir():
                try:
                    mtime = d.stat().st_mtime
                except OSError:  # finished or removed meanwhile
                    continue
                out.append(CacheEntry(d.name, d, _tree_size(d), mtime))
        return out

    def remove_stale_temp(self) -> list[str]:
        """Remove temporary folders whose writer is gone (or, when unknown, older than STALE_TEMP_S)."""
        removed = []
        now = time.time()
        for t in self.temp_dirs():
            alive = _writer_alive(t.key)
            if alive is False or (alive is None and now - t.last_used > STALE_TEMP_S):
                shutil.rmtree(t.path, ignore_errors=True)
                if not t.path.exists():
                    removed.append(t.key)
                    log.info("removed %s (%d bytes) left by an interrupted cache write", t.key, t.size)
        return removed

    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries()) + sum(t.size for t in self.temp_dirs())

    def evict(self, keep: str | None = None) -> list[str]:
        """Delete least-recently-used entries until the cache, temporary folders included, fits `max_bytes`
        (never `keep`); stale temporary folders go first."""
        self.remove_stale_temp()
        entries = sorted(self.entries(), key=lambda e: e.last_used)
        total = sum(e.size for e in entries) + sum(t.size for t in self.temp_dirs())
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
