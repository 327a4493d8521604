"""Typed, user-readable errors for files that cannot be used as videos."""

from __future__ import annotations

from model.errors import VideoChatError


class MediaError(VideoChatError):
    """A media file cannot be read; the message says why in words a user understands."""


class MissingFileError(MediaError, FileNotFoundError):
    """The path does not exist (or is not a regular file)."""


class EmptyFileError(MediaError):
    """The file has zero bytes (an interrupted upload or copy)."""


class NotAVideoError(MediaError):
    """The bytes are not a media container at all (e.g. a text file named .mp4)."""


class CorruptVideoError(MediaError):
    """A media container, but truncated or damaged: its index or frames cannot be read."""


class NoVideoStreamError(MediaError):
    """A valid media file without a picture (e.g. audio only)."""


class ZeroDurationError(MediaError):
    """A video stream with no frames or no length."""


class UnsupportedCodecError(MediaError):
    """The video codec has no decoder here."""
