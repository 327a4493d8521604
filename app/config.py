"""App settings from `launch.py serve` flags, and `--auth` parsing."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from model.errors import ConfigError


@dataclass(frozen=True)
class AppSettings:
    max_upload_mb: float = 2048.0  # browser and server refuse bigger uploads
    max_duration_min: float = 180.0  # longer videos are refused after probing
    concurrency: int = 8  # answers streamed at once (vLLM batches them)
    ingest_concurrency: int = 2  # uploads processed at once (a long one does not hold up everyone's); more queue
    session_ttl_s: int = 6 * 3600  # a session's state is dropped this long after its last use
    title: str = "VideoChat Studio"
    cache_dir: str | None = None  # video memories; None: the memory package's default
    admins: tuple[str, ...] = ()  # signed-in users who see (and may delete) every user's videos in the library
    media_dirs: tuple[str, ...] = ()  # server folders whose videos the API and MCP tools may ingest by path

    @property
    def max_file_size(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def settings_from_args(args: argparse.Namespace) -> AppSettings:
    s = AppSettings(
        max_upload_mb=float(getattr(args, "max_upload_mb", AppSettings.max_upload_mb)),
        max_duration_min=float(getattr(args, "max_duration_min", AppSettings.max_duration_min)),
        concurrency=int(getattr(args, "concurrency", AppSettings.concurrency)),
        ingest_concurrency=int(getattr(args, "ingest_concurrency", None) or AppSettings.ingest_concurrency),
        cache_dir=getattr(args, "cache_dir", None),
        admins=tuple(u.strip() for u in (getattr(args, "admin", None) or "").split(",") if u.strip()),
        media_dirs=tuple(str(Path(d).expanduser().resolve()) for d in getattr(args, "media_dir", None) or []),
    )
    if s.max_upload_mb <= 0 or s.max_duration_min <= 0 or s.concurrency < 1 or s.ingest_concurrency < 1:
        raise ConfigError(
            "--max-upload-mb, --max-duration-min, --concurrency and --ingest-concurrency must be positive"
        )
    return s


def auth_on_command_line(value: str | None) -> bool:
    """`--auth user:password` itself (not a file): the password is visible in `ps`."""
    return bool(value) and ":" in str(value) and not Path(str(value)).expanduser().is_file()


def parse_auth(value: str | None) -> list[tuple[str, str]] | None:
    """`user:password`, or a file with one `user:password` a line, or None (falls back to $VIDEOCHAT_AUTH)."""
    value = value or os.environ.get("VIDEOCHAT_AUTH") or None
    if value is None:
        return None
    path = Path(value).expanduser()
    if ":" not in value or path.is_file():
        if not path.is_file():
            raise ConfigError(f"--auth: {value!r} is neither user:password nor a readable file")
        lines = [ln.strip() for ln in path.read_text().splitlines()]
        entries = [ln for ln in lines if ln and not ln.startswith("#")]
    else:
        entries = [value]
    pairs = []
    for entry in entries:
        user, sep, password = entry.partition(":")
        if not sep or not user or not password:
            raise ConfigError("--auth entries must look like user:password (both non-empty)")
        pairs.append((user, password))
    if not pairs:
        raise ConfigError(f"--auth file {value!r} has no user:password line")
    return pairs
