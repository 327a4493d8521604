"""What a memory's identity is: the video's bytes, the models that made it, and how it was sampled."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
_CHUNK = 8 << 20
_hash_memo: dict[tuple[str, int, int], str] = {}


def content_hash(path: str | Path) -> str:
    """Hash of the file's bytes (BLAKE3 when installed, else BLAKE2b), read in 8 MiB chunks.

    Memoised per process by (path, size, mtime), so asking twice about one upload hashes it once.
    """
    path = Path(path)
    st = path.stat()
    memo_key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo_key in _hash_memo:
        return _hash_memo[memo_key]
    try:
        import blake3

        h: Any = blake3.blake3(max_threads=blake3.blake3.AUTO)
        name = "b3"
    except ImportError:
        h = hashlib.blake2b(digest_size=32)
        name = "b2"
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    digest = f"{name}-{h.hexdigest()}"
    _hash_memo[memo_key] = digest
    return digest


def file_checksum(path: Path) -> str:
    """BLAKE2b-128 of a file's bytes: the integrity check of the cache's and the chunk store's files (always this
    one algorithm, unlike `content_hash`, so a file verifies wherever it was written)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def memory_key(content: str, profile: str, sampling: dict[str, Any]) -> str:
    """Cache key: what the memory depends on (bytes, models, sampling, format)."""
    blob = json.dumps(
        {"content": content, "profile": profile, "sampling": sampling, "v": FORMAT_VERSION}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]
