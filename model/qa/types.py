"""What a question produces and what shapes it: settings, evidence, the checked answer and its stream events."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from model.errors import VideoChatError
from model.llm import PromptInputs
from model.qa.citations import Citation
from model.qa.context import ContextChoice
from model.qa.search import ClipScores, Moment
from model.qa.timeparse import TimeQuery

MAX_QUESTION_CHARS = 2000  # longer questions are refused (UI, CLI, API) before any work


class QuestionError(VideoChatError):
    """The question cannot be asked (empty, too long...)."""


def check_question(question: str | None, max_chars: int = MAX_QUESTION_CHARS) -> str:
    """The question, stripped; a QuestionError when it is empty or longer than `max_chars` characters."""
    text = (question or "").strip()
    if not text:
        raise QuestionError("Please type a question about the video.")
    if len(text) > max_chars:
        raise QuestionError(
            f"The question is {len(text):,} characters long; questions may have up to {max_chars:,}. "
            "Ask a shorter question."
        )
    return text


@dataclass(frozen=True)
class GenerationSettings:
    """How the LLM writes the answer; None means the profile's value."""

    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class RetrievalSettings:
    """What the prompt is built from."""

    use_speech: bool = True  # put subtitles in the prompt
    use_ocr: bool = True  # on-screen text in the prompt and in search
    use_tags: bool = True  # visual tags (objects, scene labels) in the prompt and in search
    top_k: int = 4  # best-ranked clips per question
    overview_clips: int = 3  # evenly spread clips for whole-video questions
    dense_frames: int | None = None  # frames re-sampled around an asked moment (None: the encoder's clip length)
    max_moments: int = 3
    # Context rules (tools/eval_memory.py --ablate measures each one's worth):
    focus_subtitles: bool = True  # focused questions (a time, a "when", a said line, "after X") see only nearby lines
    time_without_unrelated: bool = True  # a question about a time gets no overview and only clearly matching ranks
    moments_in_prompt: bool = True  # a "when" question's found moments are context lines the answer can cite
    anchor_note: bool = True  # "what happens after X" is told where X is said and where what follows starts


@dataclass(frozen=True)
class ChatSettings:
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)

    @classmethod
    def from_values(cls, **values: Any) -> ChatSettings:
        """Settings from flat values (UI, CLI): each goes to the part that has a field of its name."""
        parts: dict[str, dict[str, Any]] = {"generation": {}, "retrieval": {}}
        for part, kind in (("generation", GenerationSettings), ("retrieval", RetrievalSettings)):
            names = kind.__dataclass_fields__
            parts[part] = {k: v for k, v in values.items() if k in names}
        return cls(GenerationSettings(**parts["generation"]), RetrievalSettings(**parts["retrieval"]))


@dataclass
class ClipEvidence:
    index: int  # clip index (-1 for a densely re-sampled moment)
    start: float
    end: float
    frame_time: float  # the representative (thumbnail) frame's time
    reason: str = ""
    thumbnail: np.ndarray | None = None  # uint8 [H, W, 3] RGB
    video: str | None = None  # the video's name, in an answer about several videos


@dataclass
class Answer:
    text: str
    citations: list[Citation] = field(default_factory=list)
    evidence: list[ClipEvidence] = field(default_factory=list)
    moments: list[Moment] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "citations": [asdict(c) for c in self.citations],
            "evidence": [{k: v for k, v in asdict(e).items() if k != "thumbnail"} for e in self.evidence],
            "moments": [asdict(m) for m in self.moments],
            "notes": list(self.notes),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }


@dataclass
class AnswerDelta:
    text: str


@dataclass
class AnswerDone:
    answer: Answer


@dataclass
class PreparedQuestion:
    """Everything decided before generation: the prompt's inputs and why."""

    inputs: PromptInputs
    time_query: TimeQuery
    choice: ContextChoice
    evidence: list[ClipEvidence]
    moments: list[Moment]
    notes: list[str]
    timings: dict[str, float]
    scores: ClipScores | None = None
    focus: list[tuple[float, float]] = field(default_factory=list)  # what the answer is about (said lines, neighbour)
