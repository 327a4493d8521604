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


_EDGE_PUNCT = "\"'()[]{}*_`"


def _norm(word: str) -> str:
    return word.lower().strip(_EDGE_PUNCT)


class RepetitionGuard:
    """Ends a stream that has started repeating itself, whatever the engine.

    A small model at temperature 0 can fall into a loop ("He was a fierce dragon. He was a fierce dragon. ...")
    until max_tokens; penalties make that rarer, this makes it end. The text is cut where the repetition becomes
    certain, at the end of a word, so the cut does not depend on how the engine split the text into deltas:

    - a span of `long_span` words or more repeated back to back (`long_copies` copies), or a span of `min_span`
      words or more repeated `copies` times back to back;
    - one sentence of `sentence_words` words or more written for the `sentence_copies`-th time, anywhere.

    Words compare case-insensitively, without surrounding quotes or brackets (sentence punctuation counts).
    """

    def __init__(
        self,
        min_span: int = 3,
        copies: int = 3,
        long_span: int = 8,
        long_copies: int = 2,
        max_span: int = 80,
        sentence_words: int = 5,
        sentence_copies: int = 3,
    ) -> None:
        self.min_span, self.copies = min_span, copies
        self.long_span, self.long_copies = long_span, long_copies
        self.max_span = max_span
        self.sentence_words, self.sentence_copies = sentence_words, sentence_copies
        self.text = ""
        self.words: list[str] = []
        self.sentence: list[str] = []
        self.sentences: dict[tuple[str, ...], int] = {}
        self.tripped = False

    def feed(self, delta: str) -> str:
        """The part of `delta` to pass on; sets `tripped` (and drops the rest) once the text repeats."""
        if self.tripped:
            return ""
        start = len(self.text)
        self.text += delta
        for i in range(start, len(self.text)):
            word_ends = self.text[i].isspace() and i > 0 and not self.text[i - 1].isspace()
            if word_ends and self._word_done(self.text[self._word_start(i) : i]):
                self.tripped = True
                self.text = self.text[:i]
                return self.text[start:]
        return delta

    def _word_start(self, end: int) -> int:
        i = end
        while i > 0 and not self.text[i - 1].isspace():
            i -= 1
        return i

    def _word_done(self, word: str) -> bool:
        self.words.append(_norm(word))
        self.sentence.append(self.words[-1])
        if self._loops():
            return True
        if word.rstrip(_EDGE_PUNCT).endswith((".", "!", "?")):
            sentence, self.sentence = tuple(self.sentence), []
            if len(sentence) >= self.sentence_words:
                self.sentences[sentence] = self.sentences.get(sentence, 0) + 1
                return self.sentences[sentence] >= self.sentence_copies
        return False

    def _loops(self) -> bool:
        w, n = self.words, len(self.words)
        for k in range(self.min_span, min(self.max_span, n // 2) + 1):
            needed = self.long_copies if k >= self.long_span else self.copies
            if n < needed * k:
                continue
            tail = w[n - k :]
            if all(w[n - (c + 1) * k : n - c * k] == tail for c in range(1, needed)):
                return True
        return False
