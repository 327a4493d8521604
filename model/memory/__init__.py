"""Long-video memory: clip records cached on disk, time-aware questions, cited answers."""

from model.memory.assistant import (
    Answer,
    AnswerDelta,
    AnswerDone,
    Assistant,
    ChatSettings,
    ClipEvidence,
    IngestConfig,
    PreparedQuestion,
    QuestionError,
)
from model.memory.cache import MemoryCache, content_hash, memory_key
from model.memory.citations import Citation, check_citations
from model.memory.context import ContextChoice, select_clips
from model.memory.records import ClipRecord, VideoMemory
from model.memory.search import ClipScores, Moment, keyword_scores
from model.memory.timeparse import TimeQuery, TimeWindow, format_time, parse_time_refs

__all__ = [
    "Answer",
    "AnswerDelta",
    "AnswerDone",
    "Assistant",
    "ChatSettings",
    "Citation",
    "ClipEvidence",
    "ClipRecord",
    "ClipScores",
    "ContextChoice",
    "IngestConfig",
    "MemoryCache",
    "Moment",
    "PreparedQuestion",
    "QuestionError",
    "TimeQuery",
    "TimeWindow",
    "VideoMemory",
    "check_citations",
    "content_hash",
    "format_time",
    "keyword_scores",
    "memory_key",
    "parse_time_refs",
    "select_clips",
]
