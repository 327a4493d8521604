"""Error types whose message is meant for the user (UI and CLI show `str(err)` as is)."""

from __future__ import annotations


class VideoChatError(Exception):
    """Base class: a problem the user can understand and act on; never shown as a traceback."""


class ModelAccessError(VideoChatError):
    """Weights could not be obtained (gated repo without a token, offline without a cache...)."""


class ConfigError(VideoChatError):
    """A profile, flag or setting is invalid."""
