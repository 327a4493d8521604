"""The one small async interface every LLM engine implements, and the factory that picks one."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import importlib.util
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from model.llm.errors import EngineError
from model.llm.guard import RepetitionGuard
from model.llm.prompt import context_window_of, hidden_size_of, validate_prompt_embeds

if TYPE_CHECKING:
    from model.profiles import LLMSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings, passed to each engine's own API (vLLM SamplingParams, the OpenAI-style request,
    transformers generate). The penalties follow vLLM: repetition_penalty > 1 discourages tokens already
    generated (multiplicative, 1: off), frequency_penalty > 0 subtracts that much per earlier use (0: off).
    Prefer frequency_penalty: vLLM (checked on 0.32) also applies repetition_penalty to the prompt's token ids, and
    for a prompt given as embeddings those are stale ids of an earlier request, so its effect varies."""

    max_tokens: int = 256
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int = 0
    stop: list[str] | None = None  # cut before the first of these; not part of the answer
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    repetition_guard: bool = True  # end the stream once it repeats itself (see model.llm.guard.RepetitionGuard)


class Engine(abc.ABC):
    """Streams text deltas for a prompt given as embeddings `[seq, hidden]`.

    `stream` validates the tensor first (a malformed one is refused with a PromptError and never reaches
    the shared engine), then ends the stream if it starts repeating itself. Closing or cancelling the
    returned async iterator aborts the request.
    """

    def __init__(self, model_dir: Path, max_model_len: int, dtype: torch.dtype) -> None:
        self.model_dir = Path(model_dir)
        self.hidden_size = hidden_size_of(self.model_dir)
        self.max_model_len = int(max_model_len)
        self.dtype = dtype

    async def stream(
        self, prompt_embeds: torch.Tensor, params: GenerationParams, request_id: str
    ) -> AsyncGenerator[str, None]:
        if params.max_tokens < 1:
            raise EngineError(f"max_tokens must be at least 1, got {params.max_tokens}")
        if params.repetition_penalty <= 0:
            raise EngineError(f"repetition_penalty must be positive, got {params.repetition_penalty}")

        def checked() -> torch.Tensor:
            embeds = validate_prompt_embeds(
                prompt_embeds, self.hidden_size, self.max_model_len, params.max_tokens, dtype=self.dtype
            )
            return embeds.detach().cpu().contiguous()

        # The NaN check and the copy read the whole tensor (64 MB for 4k tokens of Mistral): off the event loop.
        embeds = await asyncio.to_thread(checked)
        guard = RepetitionGuard() if params.repetition_guard else None
        inner = self._stream(embeds, params, request_id)
        async with contextlib.aclosing(inner):  # leaving early closes the engine's stream: it aborts the request
            async for delta in inner:
                text = guard.feed(delta) if guard is not None else delta
                if text:
                    yield text
                if guard is not None and guard.tripped:
                    log.info("request %s repeated itself; ended after %d characters", request_id, len(guard.text))
                    return

    @abc.abstractmethod
    def _stream(
        self, prompt_embeds: torch.Tensor, params: GenerationParams, request_id: str
    ) -> AsyncGenerator[str, None]:
        """Engine-specific generation on an already validated tensor."""

    @abc.abstractmethod
    async def abort(self, request_id: str) -> None:
        """Stop a running request (unknown or finished ids are ignored)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the engine (processes, threads, connections)."""

    @property
    def name(self) -> str:
        return type(self).__name__


def resolve_max_model_len(spec: LLMSpec, model_dir: Path) -> int:
    """The spec's length, capped by what the model was trained for."""
    return min(int(spec.max_model_len), context_window_of(model_dir))


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def create_engine(spec: LLMSpec, model_dir: Path, device: str, llm_url: str | None = None) -> Engine:
    """Remote if `llm_url`, else in-process vLLM if importable and allowed, else transformers."""
    model_dir = Path(model_dir)
    choice = spec.engine
    if llm_url or choice == "remote":
        if not llm_url:
            raise EngineError("The profile asks for a remote LLM engine; pass --llm-url URL")
        from model.llm.remote import RemoteEngine

        return RemoteEngine.from_spec(spec, model_dir, llm_url)
    if choice == "vllm" or (choice == "auto" and vllm_available()):
        if not vllm_available():
            raise EngineError("The profile asks for vLLM, which is not installed (see requirements-gpu/cpu.txt)")
        from model.llm.vllm_engine import VLLMEngine

        return VLLMEngine.from_spec(spec, model_dir, device)
    if choice not in ("auto", "transformers", "vllm"):
        raise EngineError(f"Unknown LLM engine {choice!r}; use auto, vllm, transformers or remote")
    from model.llm.hf import TransformersEngine

    return TransformersEngine.from_spec(spec, model_dir, device)
