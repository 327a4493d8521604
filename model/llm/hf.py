"""transformers engine: `generate(inputs_embeds=...)` in a worker thread, streamed back to asyncio by
transformers' own `AsyncTextIteratorStreamer`; stop strings are generate's `stop_strings`.

The fallback when vLLM is absent. Requests run one at a time (a CPU has no spare cores for two
generations; a GPU user should use vLLM, which batches).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import warnings
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from transformers import (
    AsyncTextIteratorStreamer,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)

from model.llm.engine import Engine, GenerationParams, resolve_max_model_len
from model.llm.errors import EngineError
from model.llm.guard import StopTrimmer
from model.llm.quantization import transformers_quantization
from model.sources import resolve_dtype

if TYPE_CHECKING:
    from model.profiles import LLMSpec

log = logging.getLogger(__name__)
# The prompt is embeddings, so there are no prompt ids to penalise: the penalty covers the generated tokens, as vLLM's.
warnings.filterwarnings("ignore", message="Passing `repetition_penalty` with `inputs_embeds`")


class _StopFlag(StoppingCriteria):
    """Ends generation once `event` is set (abort, closed consumer, stop string cut)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        done = torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)
        return done  # type: ignore[return-value]  # transformers annotates BoolTensor, a legacy alias


class FrequencyPenalty(LogitsProcessor):
    """vLLM's / OpenAI's frequency_penalty, which transformers lacks: each logit minus `penalty` times the number of
    times its token was generated so far (with a prompt given as embeddings, `input_ids` holds only those)."""

    def __init__(self, penalty: float) -> None:
        self.penalty = penalty

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        counts = torch.zeros_like(scores).scatter_add_(1, input_ids, torch.ones_like(input_ids, dtype=scores.dtype))
        return scores - self.penalty * counts  # type: ignore[return-value]  # FloatTensor: a legacy alias


class _Streamer(AsyncTextIteratorStreamer):
    """transformers' asyncio streamer, for a consumer whose event loop may close before the thread ends."""

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        # RuntimeError: the loop has closed, nobody is listening; the stop flag ends the thread.
        with contextlib.suppress(RuntimeError):
            super().on_finalized_text(text, stream_end)

    def finish(self) -> None:
        """End the stream from our side (generation failed or never started)."""
        self.end()  # type: ignore[no-untyped-call]  # transformers leaves `end` unannotated


class TransformersEngine(Engine):
    def __init__(
        self,
        model_dir: Path,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        max_model_len: int = 4096,
        quantization: str | None = None,
    ) -> None:
        super().__init__(model_dir, max_model_len, dtype)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs: dict[str, Any] = {"dtype": dtype}
        quantization = transformers_quantization(quantization)  # fp8 is vLLM's: loaded unquantized here
        if quantization == "bitsandbytes":
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=dtype)
        try:
            # Untyped on purpose: transformers types its auto classes for the `ty` checker, which mypy misreads.
            self.model: Any = cast(Any, AutoModelForCausalLM).from_pretrained(str(self.model_dir), **kwargs)
        except (OSError, ValueError) as err:
            raise EngineError(f"Could not load the LLM from {self.model_dir}: {err}") from err
        if quantization != "bitsandbytes":
            self.model.to(device)
        self.model.eval()
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf-generate")
        self._flags: dict[str, threading.Event] = {}

    @classmethod
    def from_spec(cls, spec: LLMSpec, model_dir: Path, device: str) -> TransformersEngine:
        return cls(
            model_dir,
            device=device,
            dtype=resolve_dtype(spec.dtype, device),
            max_model_len=resolve_max_model_len(spec, Path(model_dir)),
            quantization=spec.quantization,
        )

    def _generate(
        self, embeds: torch.Tensor, params: GenerationParams, flag: threading.Event, streamer: _Streamer
    ) -> None:
        if flag.is_set():  # aborted while queued
            streamer.finish()
            return
        kwargs: dict[str, Any] = {"do_sample": params.temperature > 0}
        if params.temperature > 0:
            kwargs.update(temperature=params.temperature, top_p=params.top_p)
            torch.manual_seed(params.seed)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        if params.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = params.repetition_penalty
        if params.frequency_penalty:
            kwargs["logits_processor"] = LogitsProcessorList([FrequencyPenalty(params.frequency_penalty)])
        embeds = embeds.to(self.device)[None]  # [1, seq, hidden]
        try:
            with torch.inference_mode():
                self.model.generate(
                    inputs_embeds=embeds,
                    attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long, device=self.device),
                    max_new_tokens=params.max_tokens,
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([_StopFlag(flag)]),
                    pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                    **kwargs,
                )
        except BaseException:
            log.exception("transformers generation failed")
            streamer.finish()  # wake the consumer; the future carries the error
            raise

    async def _stream(
        self, prompt_embeds: torch.Tensor, params: GenerationParams, request_id: str
    ) -> AsyncGenerator[str, None]:
        if request_id in self._flags:
            raise EngineError(f"Request id {request_id!r} is already running")
        loop = asyncio.get_running_loop()
        flag = threading.Event()
        self._flags[request_id] = flag
        streamer = _Streamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        trimmer = StopTrimmer(params.stop)
        future = loop.run_in_executor(self._executor, self._generate, prompt_embeds, params, flag, streamer)
        try:
            async for text in streamer:
                if flag.is_set():
                    continue  # aborted or stopped: drain quietly until the thread ends
                delta = trimmer.feed(text)
                if delta:
                    yield delta
                if trimmer.stopped:
                    flag.set()
            try:
                await future
            except Exception as err:
                raise EngineError(f"The language model failed: {err}") from err
            tail = "" if flag.is_set() else trimmer.flush()
            if tail:
                yield tail
        finally:
            flag.set()  # closed/cancelled consumer: stop the thread at its next step
            self._flags.pop(request_id, None)
            # never leave "exception never retrieved"
            future.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def abort(self, request_id: str) -> None:
        flag = self._flags.get(request_id)
        if flag is not None:
            flag.set()

    async def close(self) -> None:
        for flag in self._flags.values():
            flag.set()
        self._executor.shutdown(wait=False, cancel_futures=True)
