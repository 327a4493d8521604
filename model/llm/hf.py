"""transformers engine: `generate(inputs_embeds=...)` in a worker thread, streamed back to asyncio.

The fallback when vLLM is absent. Requests run one at a time (a CPU has no spare cores for two
generations; a GPU user should use vLLM, which batches).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from model.llm.engine import Engine, GenerationParams, resolve_max_model_len
from model.llm.errors import EngineError
from model.sources import resolve_dtype

if TYPE_CHECKING:
    from model.profiles import LLMSpec

log = logging.getLogger(__name__)

_DONE = object()


class _QueueStreamer:
    """transformers streamer protocol (`put`/`end`) forwarding new token ids to an asyncio queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
        self.loop, self.queue = loop, queue
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() first hands over the prompt ids (empty with inputs_embeds)
            self.prompt_seen = True
            return
        self.send(value.reshape(-1).tolist())

    def end(self) -> None:
        self.send(_DONE)

    def send(self, item: Any) -> None:
        # RuntimeError: the consumer's event loop has closed, nobody is listening; the stop flag ends the thread.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


class _StopFlag:
    """A StoppingCriteria that ends generation once `event` is set (abort / stop string)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class IncrementalDecoder:
    """Turns a growing list of token ids into text deltas (holding back incomplete UTF-8 characters)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.sent = ""

    def add(self, ids: list[int]) -> str:
        self.ids.extend(ids)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return ""
        delta, self.sent = text[len(self.sent) :], text
        return delta


def apply_stop(sent: str, delta: str, stop: list[str] | None) -> tuple[str, bool]:
    """Cut `delta` at the first stop string found in `sent + delta` (stop strings are not returned)."""
    if not stop:
        return delta, False
    text = sent + delta
    cuts = [i for s in stop if s and (i := text.find(s, max(0, len(sent) - len(s) + 1))) >= 0]
    if not cuts:
        return delta, False
    return text[len(sent) : max(len(sent), min(cuts))], True


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
        if quantization == "bitsandbytes":
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=dtype)
        elif quantization not in (None, "awq", "gptq"):  # pre-quantized folders carry their own config
            raise EngineError(f"The transformers engine does not support quantization {quantization!r}")
        try:
            self.model = AutoModelForCausalLM.from_pretrained(str(self.model_dir), **kwargs)
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

    def _generate(self, embeds: torch.Tensor, params: GenerationParams, flag: threading.Event, streamer: Any) -> None:
        from transformers import StoppingCriteriaList

        try:
            if flag.is_set():  # aborted while queued
                return
            kwargs: dict[str, Any] = {"do_sample": params.temperature > 0}
            if params.temperature > 0:
                kwargs.update(temperature=params.temperature, top_p=params.top_p)
                torch.manual_seed(params.seed)
            embeds = embeds.to(self.device)[None]  # [1, seq, hidden]
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
        except Exception as err:  # surfaced on the event loop side
            log.exception("transformers generation failed")
            streamer.send(err)
        finally:
            streamer.end()

    async def _stream(
        self, prompt_embeds: torch.Tensor, params: GenerationParams, request_id: str
    ) -> AsyncIterator[str]:
        if request_id in self._flags:
            raise EngineError(f"Request id {request_id!r} is already running")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        flag = threading.Event()
        self._flags[request_id] = flag
        streamer = _QueueStreamer(loop, queue)
        decoder = IncrementalDecoder(self.tokenizer)
        future = loop.run_in_executor(self._executor, self._generate, prompt_embeds, params, flag, streamer)
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, Exception):
                    raise EngineError(f"The language model failed: {item}") from item
                if flag.is_set():
                    continue  # aborted: drain quietly until the thread ends
                delta, stopped = apply_stop(decoder.sent, decoder.add(item), params.stop)
                if delta:
                    yield delta
                if stopped:
                    flag.set()
        finally:
            flag.set()  # closed/cancelled consumer: stop the thread at its next step
            self._flags.pop(request_id, None)
            future.add_done_callback(lambda f: f.exception())  # never leave "exception never retrieved"

    async def abort(self, request_id: str) -> None:
        flag = self._flags.get(request_id)
        if flag is not None:
            flag.set()

    async def close(self) -> None:
        for flag in self._flags.values():
            flag.set()
        self._executor.shutdown(wait=False, cancel_futures=True)
