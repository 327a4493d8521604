"""The video library: every video this server has ingested, listed from the memory cache, reopened without
re-ingesting, and deleted with its files.

A memory in the `MemoryCache` knows its video's content, models and sampling; the library adds what a person needs
to find it again, in a small sidecar per memory (`<cache>/.library/<key>.json`): the name each owner gave it, when
they added it, the models that made it, and a copy of the video file (`<cache>/.library/videos/<key>.<ext>`, a hard
link when the upload lies on the same disk) so the player can show it after the upload is gone. Entries written
before the library existed have no sidecar: they are listed by their file name, owned by nobody.

Per-user isolation: with `user=None` (no sign-in) everybody sees everything; a signed-in user sees the videos they
added (`admin=True` sees all). Deleting removes the user from the owners; the last owner's delete (or an admin's)
removes the cache entry, the sidecar and the video copy.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.errors import VideoChatError
from model.memory.cache import MANIFEST, META, THUMBS, MemoryCache
from model.memory.records import VideoMemory

log = logging.getLogger(__name__)

LIBRARY_DIR = ".library"  # dot-named: the cache's own listing and eviction never see it
SIDECAR_VERSION = 1
ORPHAN_GRACE_S = 24 * 3600.0  # a sidecar without its memory this long is an evicted video's (not one still ingesting)


class LibraryError(VideoChatError):
    """A library entry cannot be found, opened or deleted (the message says why, in words)."""


@dataclass
class LibraryEntry:
    """One video of the library, as one user sees it."""

    key: str  # the memory's cache key
    name: str  # the file name the user gave it ("lecture2.mp4")
    duration: float  # seconds
    added: float  # unix time this user added it (the cache entry's creation time for old entries)
    profile: str
    models: dict[str, Any] = field(default_factory=dict)  # which models made the memory
    owners: list[str] = field(default_factory=list)  # who added it (empty: from before the library, or no sign-in)
    video_file: Path | None = None  # the stored copy the player shows (None: the file is gone)
    size_bytes: int = 0  # the cache entry and the video copy
    complete: bool = True  # False while a streaming ingest has seen only part of the video
    thumb: bytes = b""  # a JPEG of the middle clip

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (no thumbnail bytes, no server paths)."""
        return {
            "key": self.key,
            "name": self.name,
            "duration": round(self.duration, 3),
            "added": round(self.added, 3),
            "added_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.added)),
            "profile": self.profile,
            "models": self.models,
            "owners": list(self.owners),
            "has_video": self.video_file is not None,
            "size_bytes": self.size_bytes,
            "complete": self.complete,
        }


def library_root(cache_root: str | Path) -> Path:
    """Where the library keeps its sidecars and video copies, for a cache folder."""
    return Path(cache_root) / LIBRARY_DIR


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _store_file(source: Path, target: Path) -> None:
    """`target` becomes a copy of `source`: a hard link when both lie on one file system, else a copy."""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    try:
        try:
            os.link(source, tmp)
        except OSError:  # another file system (or links refused): copy the bytes
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


class Library:
    """Lists, reopens and deletes the memories of one `MemoryCache`; one per process, shared by every session."""

    def __init__(self, cache: MemoryCache, keep_open: int = 8) -> None:
        self.cache = cache
        self.root = library_root(cache.root)
        self.videos = self.root / "videos"
        self.keep_open = keep_open
        self._lock = threading.RLock()
        self._open: OrderedDict[str, VideoMemory] = OrderedDict()  # recently opened memories (read-only use)
        self._meta: dict[str, tuple[float, dict[str, Any]]] = {}  # key -> (meta.json mtime, what listing needs)

    # ------------------------------------------------------------------------------------------ sidecars
    def _sidecar_path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def _sidecar(self, key: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self._sidecar_path(key).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            log.warning("library sidecar of %s is unreadable (%s); listing it as an old entry", key, err)
            return None
        return data if isinstance(data, dict) else None

    def has(self, key: str) -> bool:
        """Whether the library already holds this memory (for anyone)."""
        return self._sidecar_path(key).is_file()

    def record(
        self,
        memory: VideoMemory,
        source: str | Path,
        name: str,
        owner: str | None = None,
        models: Mapping[str, Any] | None = None,
    ) -> LibraryEntry:
        """Add `memory` (made from the file `source`, shown as `name`) to `owner`'s library; keeps a copy of the
        video. Adding the same video again keeps the first time it was added and takes the new name."""
        source = Path(source)
        suffix = source.suffix.lower() if source.suffix else ".mp4"
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            data = self._sidecar(memory.key) or {
                "version": SIDECAR_VERSION,
                "key": memory.key,
                "owners": {},
                "created": time.time(),
            }
            video = data.get("video")
            if not video or not (self.root / video).exists():
                target = self.videos / f"{memory.key}{suffix}"
                if source.is_file():
                    _store_file(source, target)
                    video = str(target.relative_to(self.root))
            data["video"] = video
            data["profile"] = memory.profile
            data["models"] = dict(models or data.get("models") or {})
            who = owner or ""
            previous = data["owners"].get(who, {})
            data["owners"][who] = {"name": name, "added": previous.get("added", time.time())}
            _write_json(self._sidecar_path(memory.key), data)
            self._remember(memory)
        return self.entry(memory.key, owner, admin=owner is None)

    # ------------------------------------------------------------------------------------------ listing
    def _meta_of(self, key: str) -> dict[str, Any] | None:
        """What the listing needs from the cache entry's meta.json (cached by its mtime)."""
        d = self.cache.entry_dir(key)
        try:
            mtime = (d / META).stat().st_mtime
        except OSError:
            return None
        hit = self._meta.get(key)
        if hit is not None and hit[0] == mtime:
            return hit[1]
        try:
            meta = json.loads((d / META).read_text())
            manifest = json.loads((d / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        offsets = list(meta.get("thumb_offsets") or [])
        thumb = b""
        if len(offsets) > 1:
            mid = (len(offsets) - 1) // 2
            try:
                with open(d / THUMBS, "rb") as f:
                    f.seek(offsets[mid])
                    thumb = f.read(offsets[mid + 1] - offsets[mid])
            except OSError:
                thumb = b""
        info = meta.get("info") or {}
        small = {
            "path": meta.get("path", ""),
            "profile": meta.get("profile", ""),
            "duration": float(info.get("duration") or 0.0),
            "created": float(manifest.get("created") or mtime),
            "complete": meta.get("ingested_until") is None,
            "thumb": thumb,
        }
        self._meta[key] = (mtime, small)
        return small

    def _entry_from(
        self, key: str, meta: Mapping[str, Any], side: Mapping[str, Any] | None, user: str | None, admin: bool
    ) -> LibraryEntry | None:
        owners: dict[str, Any] = dict((side or {}).get("owners") or {})
        named = [o for o in owners if o]
        if user is not None and not admin and user not in owners:
            return None  # someone else's video (or from before sign-in existed)
        mine = owners.get(user or "") if user is not None else None
        pick = mine or (max(owners.values(), key=lambda o: o.get("added", 0)) if owners else None)
        video: Path | None = None
        if side and side.get("video") and (self.root / side["video"]).is_file():
            video = self.root / side["video"]
        elif meta.get("path") and Path(meta["path"]).is_file():  # an old entry whose file is still where it was
            video = Path(meta["path"])
        size = 0
        try:
            size = sum(f.stat().st_size for f in self.cache.entry_dir(key).iterdir() if f.is_file())
            if video is not None and video.is_relative_to(self.root):
                size += video.stat().st_size
        except OSError:
            pass
        return LibraryEntry(
            key=key,
            name=str(pick["name"]) if pick else Path(str(meta.get("path") or key)).name,
            duration=float(meta["duration"]),
            added=float(pick.get("added", meta["created"])) if pick else float(meta["created"]),
            profile=str((side or {}).get("profile") or meta.get("profile") or ""),
            models=dict((side or {}).get("models") or {}),
            owners=named if admin or user is None else [user],  # a user never learns who else has it
            video_file=video,
            size_bytes=size,
            complete=bool(meta.get("complete", True)),
            thumb=bytes(meta.get("thumb") or b""),
        )

    def entries(self, user: str | None = None, admin: bool = False) -> list[LibraryEntry]:
        """The videos `user` may see, newest first. Sidecars whose memory left the cache are cleaned up."""
        out: list[LibraryEntry] = []
        keys = {e.key for e in self.cache.entries()}
        for key in sorted(keys):
            meta = self._meta_of(key)
            if meta is None:
                continue
            entry = self._entry_from(key, meta, self._sidecar(key), user, admin)
            if entry is not None:
                out.append(entry)
        self._drop_orphans(keys)
        return sorted(out, key=lambda e: -e.added)

    def entry(self, key: str, user: str | None = None, admin: bool = False) -> LibraryEntry:
        """One video `user` may see; a LibraryError when there is none (or it is someone else's)."""
        meta = self._meta_of(key)
        entry = None if meta is None else self._entry_from(key, meta, self._sidecar(key), user, admin)
        if entry is None:
            raise LibraryError("That video is not in your library (it was deleted, or the cache made room).")
        return entry

    def _drop_orphans(self, live: set[str]) -> None:
        """Sidecars and video copies of memories the cache evicted or dropped as damaged (after a grace time: a
        streaming ingest writes its memory to the cache only once the whole video is read)."""
        if not self.root.is_dir():
            return
        now = time.time()
        with self._lock:
            for side in self.root.glob("*.json"):
                try:
                    old = now - side.stat().st_mtime > ORPHAN_GRACE_S
                except OSError:
                    continue
                if side.stem not in live and old:
                    self._remove_files(side.stem)

    # ------------------------------------------------------------------------------------------ reopen
    def _remember(self, memory: VideoMemory) -> None:
        with self._lock:
            self._open[memory.key] = memory
            self._open.move_to_end(memory.key)
            while len(self._open) > self.keep_open:
                self._open.popitem(last=False)

    def open(self, key: str, user: str | None = None, admin: bool = False) -> tuple[LibraryEntry, VideoMemory]:
        """The entry and its memory, read from the cache (no model runs); its `path` is the stored video copy."""
        entry = self.entry(key, user, admin)
        with self._lock:
            memory = self._open.get(key)
        if memory is None:
            memory = self.cache.get(key)
            if memory is None:
                raise LibraryError(f"The memory of {entry.name} could not be read back (damaged); upload it again.")
            self._remember(memory)
        if entry.video_file is not None:
            memory.path = entry.video_file
        return entry, memory

    # ------------------------------------------------------------------------------------------ delete
    def delete(self, key: str, user: str | None = None, admin: bool = False) -> bool:
        """Take the video out of `user`'s library; True when its memory and files were removed (last owner,
        no sign-in, or an admin)."""
        entry = self.entry(key, user, admin)
        with self._lock:
            side = self._sidecar(key)
            owners = dict((side or {}).get("owners") or {})
            if user is not None and not admin and side is not None:
                owners.pop(user, None)
                if owners:
                    side["owners"] = owners
                    _write_json(self._sidecar_path(key), side)
                    return False
            shutil.rmtree(self.cache.entry_dir(key), ignore_errors=True)
            self._remove_files(key)
            self._open.pop(key, None)
            self._meta.pop(key, None)
        log.info("deleted %s (%s) from the library", entry.name, key)
        return True

    def _remove_files(self, key: str) -> None:
        side = self._sidecar(key)
        if side and side.get("video"):
            (self.root / side["video"]).unlink(missing_ok=True)
        for stray in self.videos.glob(f"{key}.*") if self.videos.is_dir() else []:
            stray.unlink(missing_ok=True)
        self._sidecar_path(key).unlink(missing_ok=True)
