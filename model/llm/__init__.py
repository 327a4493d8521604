"""LLM engines (vLLM in-process, remote vLLM, transformers) and prompt assembly."""

from model.llm.engine import Engine, GenerationParams, create_engine
from model.llm.errors import EngineError, LLMError, PromptError
from model.llm.prompt import (
    PromptBuilder,
    PromptInputs,
    PromptTemplate,
    VideoSegment,
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
    "validate_prompt_embeds",
]
