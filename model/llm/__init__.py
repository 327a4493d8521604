"""LLM engines (vLLM in-process, remote vLLM, transformers) and prompt assembly."""

from model.llm.engine import Engine, GenerationParams, create_engine
from model.llm.errors import EngineError, LLMError, PromptError
from model.llm.prompt import (
    PromptBuilder,
    PromptInputs,
    PromptTemplate,
    VideoSegment,
    format_clock,
    validate_prompt_embeds,
)

__all__ = [
    "Engine",
    "EngineError",
    "GenerationParams",
    "LLMError",
    "PromptBuilder",
    "PromptError",
    "PromptInputs",
    "PromptTemplate",
    "VideoSegment",
    "create_engine",
    "format_clock",
    "validate_prompt_embeds",
]
