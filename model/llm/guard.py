"""Text-level guards on a stream of deltas, shared by the engines."""

from __future__ import annotations

from collections.abc import Sequence


class StopTrimmer:
    """Cuts streamed text at the first stop string (which is not emitted).

    transformers' `stop_strings` ends generation on the token that completes a stop string but still decodes
    that token, and a stop string can span deltas: the tail that could be the start of one is held back.
    """

    def __init__(self, stop: Sequence[str] | None) -> None:
        self.stop = [s for s in stop or () if s]
        self.held = ""
        self.stopped = False

    def feed(self, delta: str) -> str:
        """The part of `delta` that is certainly before any stop string; sets `stopped` once one is found."""
        if self.stopped:
            return ""
        if not self.stop:
            return delta
        text = self.held + delta
        cuts = [i for s in self.stop if (i := text.find(s)) >= 0]
        if cuts:
            self.stopped, self.held = True, ""
            return text[: min(cuts)]
        hold = next(
            (n for n in range(min(len(text), max(map(len, self.stop)) - 1), 0, -1) if self._starts_stop(text[-n:])),
            0,
        )
        self.held = text[len(text) - hold :]
        return text[: len(text) - hold]

    def _starts_stop(self, tail: str) -> bool:
        return any(s.startswith(tail) for s in self.stop)

    def flush(self) -> str:
        """What was held back, once the stream has ended without a stop string."""
        held, self.held = self.held, ""
        return "" if self.stopped else held
