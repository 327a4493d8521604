"""Errors of the LLM package; their messages are shown to the user as is."""

from __future__ import annotations

from model.errors import VideoChatError


class LLMError(VideoChatError):
    """Base class for problems with the language model or its prompt."""


class PromptError(LLMError):
    """A prompt (template, text or embedding tensor) is malformed; refused before any engine sees it."""


class EngineError(LLMError):
    """The LLM engine could not start, was unreachable, or refused or failed a request."""
