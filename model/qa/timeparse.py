"""Time references in questions: "at 2:15", "between 1:00 and 1:30", "in the last 2 minutes", "halfway"...

`parse_time_refs(question, duration)` returns the windows a question points at, notes for references past the
video's end (told to the user, never silently clamped), and whether it is a "when does X happen?" question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from model.timecode import format_time

# How much video a fuzzy reference covers (seconds).
EDGE_SPAN = 15.0  # "at the start" / "at the end"
AROUND_PAD = 10.0  # "around 5:00"
RELATIVE_SPAN = 30.0  # "after 2:00" / "before 2:00"
TOLERANCE = 0.5  # a reference this close past the end still counts as the end

_WORD_NUMS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30,
    "forty": 40, "forty-five": 45, "fifty": 50, "sixty": 60, "ninety": 90, "half a": 0.5, "half an": 0.5,
}  # fmt: skip
_WORDNUM = "|".join(sorted((re.escape(w) for w in _WORD_NUMS if w not in ("a", "an")), key=len, reverse=True))
_NUM = rf"(?:\d+(?:\.\d+)?|{_WORDNUM})"
_NUM_OR_A = rf"(?:\d+(?:\.\d+)?|{_WORDNUM}|an?)"
_H = r"(?:hours?|hrs?|h)"
_M = r"(?:minutes?|mins?|m)"
_S = r"(?:seconds?|secs?|s)"
_UNIT = rf"(?:{_H}|{_M}|{_S})"
_CLOCK = r"(?<![\d:.])\d{1,2}:\d{2}(?::\d{2})?(?:\.\d+)?(?![\d:])"
# "2 minutes 30 seconds", "1h2m3s", "90 s", "1 minute and 30 seconds"
_DUR = (
    rf"(?:(?P<{{p}}h>{_NUM_OR_A})\s*-?\s*(?<![a-z]){_H}(?![a-z])\s*(?:and\s+)?)?"
    rf"(?:(?P<{{p}}m>{_NUM_OR_A})\s*-?\s*(?<![a-z]){_M}(?![a-z])\s*(?:and\s+)?)?"
    rf"(?:(?P<{{p}}s>{_NUM_OR_A})\s*-?\s*(?<![a-z]){_S}(?![a-z]))?"
)
_WHEN = re.compile(
    r"^\s*(?:so\s+|and\s+|ok(?:ay)?,?\s+)?(?:when\b|at\s+what\s+(?:time|point|moment|minute|second)\b|"
    r"what\s+time\b|at\s+which\s+(?:time|point|moment)\b|how\s+far\s+in(?:to)?\b|"
    r"(?:what|which)\s+(?:timestamp|minute|second|moment|part|scene)\b.*\b(?:does|did|do|is|was|are|were)\b)"
    r"|\bwhen\s+(?:does|did|do|is|was|are|were|will|can|could)\b"
    r"|\b(?:find|show\s+me|locate|jump\s+to)\s+(?:the\s+)?(?:moment|part|scene|point|time|place|where)\b",
    re.IGNORECASE,
)


@dataclass
class TimeWindow:
    """A span of the video a question points at; a moment has start == end."""

    start: float
    end: float
    text: str  # the words that referred to it
    approximate: bool = False  # "around", "at the start", "halfway"

    @property
    def is_moment(self) -> bool:
        return self.end <= self.start


@dataclass
class TimeQuery:
    question: str
    duration: float
    windows: list[TimeWindow] = field(default_factory=list)  # in the order the question mentions them
    notes: list[str] = field(default_factory=list)  # for the user: references past the end, clipped ranges
    is_when_question: bool = False  # "when does X happen?": answer with moments found by search


def _num(text: str | None) -> float:
    if text is None:
        return 0.0
    text = text.lower().strip()
    if text in _WORD_NUMS:
        return float(_WORD_NUMS[text])
    return float(text)


def _clock(text: str) -> float:
    parts = [float(p) for p in text.split(":")]
    if len(parts) == 3:
        return parts[0] * 3600 + parts[1] * 60 + parts[2]
    return parts[0] * 60 + parts[1]


def _unit_seconds(unit: str) -> float:
    u = unit.lower()
    if re.fullmatch(_H, u):
        return 3600.0
    if re.fullmatch(_M, u):
        return 60.0
    return 1.0


def _dur_seconds(m: re.Match[str], p: str) -> float | None:
    h, mi, s = m.group(f"{p}h"), m.group(f"{p}m"), m.group(f"{p}s")
    if h is None and mi is None and s is None:
        return None
    return _num(h) * 3600 + _num(mi) * 60 + _num(s)


def _dur(p: str) -> str:
    return _DUR.replace("{p}", p)


# A time value: a clock, a duration with units, or a bare number (ranges give it the other end's unit).
_VALUE = rf"(?:(?P<{{p}}clock>{_CLOCK})|(?={_NUM_OR_A}\s*-?\s*{_UNIT}(?![a-z]))(?:{{dur}})|(?P<{{p}}bare>\d+(?:\.\d+)?|{_WORDNUM}))"


def _value(p: str) -> str:
    return _VALUE.replace("{dur}", _dur(p)).replace("{p}", p)


def _value_of(m: re.Match[str], p: str) -> tuple[float | None, bool]:
    """(seconds, has_unit); seconds is None for a bare number (unit still unknown)."""
    if m.group(f"{p}clock"):
        return _clock(m.group(f"{p}clock")), True
    d = _dur_seconds(m, p)
    if d is not None:
        return d, True
    return None, False


_RANGE = re.compile(
    rf"\b(?:between|from)\s+(?:the\s+)?{_value('a')}\s*(?:and|to|until|till|through|-|–)\s*(?:the\s+)?{_value('b')}"
    rf"(?:\s*(?P<unit>{_UNIT})\b)?",
    re.IGNORECASE,
)
_TO_END = re.compile(
    rf"\b(?:from|after|between)\s+(?:the\s+)?{_value('a')}\s*(?:to|until|till|through|and|-)\s+the\s+(?:very\s+)?end\b",
    re.IGNORECASE,
)
_FROM_START = re.compile(
    rf"\b(?:from|between)\s+the\s+(?:very\s+)?(?:start|beginning)\s*(?:to|until|till|through|and|-)\s+(?:the\s+)?{_value('b')}",
    re.IGNORECASE,
)
_CLOCK_RANGE = re.compile(rf"(?P<a>{_CLOCK})\s*(?:-|–|to|until|till|through)\s*(?P<b>{_CLOCK})", re.IGNORECASE)
_FIRST_LAST = re.compile(
    rf"\b(?P<which>first|last|final|opening|closing)\s+(?:(?P<n>{_NUM})\s*-?\s*)?(?P<unit>{_UNIT})\b",
    re.IGNORECASE,
)
_HALF = re.compile(r"\b(?P<which>first|second|last|latter)\s+half\b", re.IGNORECASE)
_EDGE = re.compile(
    r"\b(?:at|in|near|towards?|by|around|from|and|with|to|until|till|before|after)\s+the\s+(?:very\s+)?(?P<which>start|beginning|end|ending|outset)\b"
    r"|\b(?P<which2>start|beginning|end)\s+of\s+the\s+(?:video|clip|film|recording)\b",
    re.IGNORECASE,
)
_MIDDLE = re.compile(
    r"\b(?:half\s*-?\s*way|mid\s*-?\s*way|mid\s*-?\s*point|(?:in\s+)?the\s+middle(?:\s+of\s+the\s+(?:video|clip|film|recording))?)\b",
    re.IGNORECASE,
)
_PREP = (
    r"(?P<prep>(?:(?:around|about|roughly|approximately|nearly|near|just|right|shortly|exactly)\s+)?"
    r"(?:at|around|about|near|approximately|roughly|after|before|until|till|by|~|@))"
)
_MOMENT_CLOCK = re.compile(rf"(?:\b{_PREP}\s+(?:the\s+)?)?(?P<clock>{_CLOCK})(?:\s*-?\s*mark\b)?", re.IGNORECASE)
_MOMENT_DUR = re.compile(
    rf"(?:\b{_PREP}\s+(?:the\s+)?)?(?<![\w:.])(?={_NUM_OR_A}\s*-?\s*{_UNIT}(?![a-z]))(?:{_dur('d')})"
    rf"(?P<tail>\s*-?\s*mark\b|\s*in\b(?!\s+the\s+(?:video|clip))|\s*in(?:to)?\s+the\s+(?:video|clip|film|recording)\b)?",
    re.IGNORECASE,
)
_MINUTE_N = re.compile(rf"\b(?:{_PREP}\s+)?(?P<unit>minute|second)\s+(?P<n>\d+(?:\.\d+)?)\b", re.IGNORECASE)

_APPROX = {"around", "about", "near", "approximately", "roughly", "~"}


class _Parser:
    def __init__(self, question: str, duration: float) -> None:
        self.q = question
        self.d = max(0.0, float(duration))
        self.used: list[tuple[int, int]] = []
        self.found: list[tuple[int, TimeWindow]] = []
        self.notes: list[str] = []

    def free(self, m: re.Match[str]) -> bool:
        a, b = m.span()
        return all(b <= u0 or a >= u1 for u0, u1 in self.used)

    def take(self, m: re.Match[str]) -> None:
        self.used.append(m.span())

    def clock(self, t: float) -> str:
        return format_time(t, self.d)

    def add(self, m: re.Match[str], start: float, end: float, approximate: bool = False) -> None:
        """Keep a window inside the video; tell the user about any part past the end."""
        text = m.group(0).strip()
        self.take(m)
        limit = self.d + TOLERANCE
        if start > limit:
            self.notes.append(
                f"You asked about {text!r} ({self.clock(start)}), but the video is only {self.clock(self.d)} long."
            )
            return
        if end > limit:
            self.notes.append(
                f"{text!r} reaches past the end of the video ({self.clock(self.d)}); "
                f"using {self.clock(start)}-{self.clock(self.d)}."
            )
        start, end = max(0.0, min(start, self.d)), max(0.0, min(end, self.d))
        self.found.append((m.start(), TimeWindow(start, end, text, approximate)))

    def moment(self, m: re.Match[str], t: float, prep: str | None) -> None:
        words = (prep or "").lower().split()
        approximate = any(w in _APPROX for w in words)
        prep = words[-1] if words else ""
        if prep == "after":
            self.add(m, t, t + RELATIVE_SPAN)
        elif prep in ("before", "until", "till", "by"):
            if t > self.d + TOLERANCE:
                self.add(m, t, t)  # note it as past the end
            else:
                self.add(m, max(0.0, t - RELATIVE_SPAN), t)
        else:
            self.add(m, t, t, approximate=approximate)

    def run(self) -> None:
        q = self.q
        for m in _RANGE.finditer(q):
            if not self.free(m):
                continue
            a, _a_unit = _value_of(m, "a")
            b, b_unit = _value_of(m, "b")
            trailing = m.group("unit")
            if b is None and trailing:
                b, b_unit = _num(m.group("bbare")) * _unit_seconds(trailing), True
            if not b_unit:
                continue  # "between 3 and 5 people": not about time
            if a is None:
                # "from 5 to 7 minutes": the first number takes the second's unit
                unit = trailing or self._last_unit(m.group(0))
                a = _num(m.group("abare")) * _unit_seconds(unit) if unit else _num(m.group("abare"))
            assert b is not None
            start, end = (a, b) if a <= b else (b, a)
            self.add(m, start, end)
        for m in _TO_END.finditer(q):
            a, has_unit = _value_of(m, "a")
            if self.free(m) and has_unit and a is not None:
                self.add(m, a, max(a, self.d))
        for m in _FROM_START.finditer(q):
            b, has_unit = _value_of(m, "b")
            if self.free(m) and has_unit and b is not None:
                self.add(m, 0.0, b)
        for m in _CLOCK_RANGE.finditer(q):
            if self.free(m):
                a, b = _clock(m.group("a")), _clock(m.group("b"))
                self.add(m, min(a, b), max(a, b))
        for m in _HALF.finditer(q):
            if self.free(m):
                first = m.group("which").lower() == "first"
                self.add(m, 0.0 if first else self.d / 2, self.d / 2 if first else self.d, approximate=True)
        for m in _FIRST_LAST.finditer(q):
            if not self.free(m):
                continue
            n = _num(m.group("n")) if m.group("n") else 1.0
            span = n * _unit_seconds(m.group("unit"))
            if m.group("which").lower() in ("first", "opening"):
                if span > self.d + TOLERANCE:
                    self.notes.append(
                        f"{m.group(0)!r} is longer than the video ({self.clock(self.d)}); using the whole video."
                    )
                    span = self.d
                self.add(m, 0.0, span)
            else:
                if span > self.d + TOLERANCE:
                    self.notes.append(
                        f"{m.group(0)!r} is longer than the video ({self.clock(self.d)}); using the whole video."
                    )
                    span = self.d
                self.take(m)
                self.found.append((m.start(), TimeWindow(max(0.0, self.d - span), self.d, m.group(0).strip())))
        for m in _EDGE.finditer(q):
            if not self.free(m):
                continue
            which = (m.group("which") or m.group("which2")).lower()
            if which in ("start", "beginning", "outset"):
                self.add(m, 0.0, min(EDGE_SPAN, self.d), approximate=True)
            else:
                self.take(m)
                self.found.append((m.start(), TimeWindow(max(0.0, self.d - EDGE_SPAN), self.d, m.group(0), True)))
        for m in _MIDDLE.finditer(q):
            if self.free(m):
                self.add(m, self.d / 2, self.d / 2, approximate=True)
        for m in _MOMENT_CLOCK.finditer(q):
            if self.free(m):
                self.moment(m, _clock(m.group("clock")), m.group("prep"))
        for m in _MOMENT_DUR.finditer(q):
            if not self.free(m):
                continue
            # A bare "2 seconds" is usually a length ("for 2 seconds"), not a place in the video: need
            # "at/around/after...", "... mark" or "... in".
            if not (m.group("prep") or m.group("tail")):
                continue
            t = _dur_seconds(m, "d")
            if t is not None:
                self.moment(m, t, m.group("prep"))
        for m in _MINUTE_N.finditer(q):
            if self.free(m):
                self.moment(m, _num(m.group("n")) * _unit_seconds(m.group("unit")), m.group("prep"))

    @staticmethod
    def _last_unit(text: str) -> str | None:
        units = re.findall(rf"\b{_UNIT}\b", text, re.IGNORECASE)
        return units[-1] if units else None


def parse_time_refs(question: str, duration: float) -> TimeQuery:
    """Find the time windows `question` refers to in a video of `duration` seconds."""
    parser = _Parser(question, duration)
    parser.run()
    windows = [w for _, w in sorted(parser.found, key=lambda x: x[0])]
    return TimeQuery(
        question=question,
        duration=float(duration),
        windows=windows,
        notes=parser.notes,
        is_when_question=bool(_WHEN.search(question)),
    )
