"""Questions about a video: time references, search, context planning, and the streaming cited answer."""

from model.qa.assistant import AnswerConfig, Assistant, QAModels
from model.qa.citations import Citation, check_citations
from model.qa.context import ContextChoice, select_clips
from model.qa.search import ClipScores, Moment, QuestionVectors, keyword_scores
from model.qa.timeparse import TimeQuery, TimeWindow, parse_time_refs
from model.qa.types import (
    MAX_QUESTION_CHARS,
    Answer,
    AnswerDelta,
    AnswerDone,
    ChatSettings,
    ClipEvidence,
    GenerationSettings,
    PreparedQuestion,
    QuestionError,
    RetrievalSettings,
    check_question,
)

__all__ = [
    "MAX_QUESTION_CHARS",
    "Answer",
    "AnswerConfig",
    "AnswerDelta",
    "AnswerDone",
    "Assistant",
    "ChatSettings",
    "Citation",
    "ClipEvidence",
    "ClipScores",
    "ContextChoice",
    "GenerationSettings",
    "Moment",
    "PreparedQuestion",
    "QAModels",
    "QuestionError",
    "QuestionVectors",
    "RetrievalSettings",
    "TimeQuery",
    "TimeWindow",
    "check_citations",
    "check_question",
    "keyword_scores",
    "parse_time_refs",
    "select_clips",
]
