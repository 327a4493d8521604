"""Remote vLLM: an OpenAI-compatible server started with `--enable-prompt-embeds`.

The prompt travels as vLLM expects it (vllm/renderers/embed_utils.py `safe_load_prompt_embeds`):
base64 of the bytes `torch.save` writes, in the Completions API's `prompt_embeds` field, in the model's
dtype (`wire_dtype`). Aborting
closes the HTTP stream; vLLM aborts a request whose client disconnected.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from model.errors import ConfigError
from model.llm.engine import Engine, GenerationParams, resolve_max_model_len
from model.llm.errors import EngineError
from model.llm.prompt import read_llm_config
from model.sources import resolve_dtype

if TYPE_CHECKING:
    import httpx

    from model.profiles import LLMSpec

log = logging.getLogger(__name__)


def encode_prompt_embeds(embeds: torch.Tensor) -> str:
    """`[seq, hidden]` -> base64(torch.save(tensor)), the wire format of vLLM's `prompt_embeds`."""
    buffer = io.BytesIO()
    torch.save(embeds.detach().cpu().contiguous(), buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def wire_dtype(spec_dtype: str, model_dir: Path) -> torch.dtype:
    """The dtype the prompt travels in: the model's (the spec's, else the folder's config, else bfloat16).

    The server casts what it receives to the dtype it runs the model in, so anything wider only makes the request
    bigger (float32 is twice the bytes of the converted Mistral's bfloat16, for precision the server drops).
    """
    if spec_dtype not in ("auto", ""):
        return resolve_dtype(spec_dtype, "cuda")
    config = read_llm_config(model_dir)
    name = config.get("dtype") or config.get("torch_dtype")
    try:
        return resolve_dtype(str(name), "cuda") if name else torch.bfloat16
    except ConfigError:
        return torch.bfloat16


def _error_message(body: bytes | str) -> str:
    try:
        data = json.loads(body)
        err = data.get("error", data)
        return str(err.get("message", err) if isinstance(err, dict) else err)
    except (ValueError, AttributeError):
        return (body.decode(errors="replace") if isinstance(body, bytes) else body)[:500]


class RemoteEngine(Engine):
    def __init__(
        self,
        url: str,
        model_dir: Path,
        max_model_len: int = 4096,
        dtype: torch.dtype = torch.bfloat16,
        api_key: str | None = None,
        model_name: str | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        super().__init__(model_dir, max_model_len, dtype)
        import httpx

        self.base_url = url.rstrip("/").removesuffix("/v1")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = httpx.Timeout(connect_timeout, read=None)
        self.model_name = model_name or self._served_model()
        self._client: httpx.AsyncClient | None = None
        self._responses: dict[str, httpx.Response] = {}
        self._aborted: set[str] = set()

    @classmethod
    def from_spec(cls, spec: LLMSpec, model_dir: Path, url: str) -> RemoteEngine:
        import os

        return cls(
            url,
            model_dir,
            max_model_len=resolve_max_model_len(spec, Path(model_dir)),
            dtype=wire_dtype(spec.dtype, Path(model_dir)),
            api_key=os.environ.get("VLLM_API_KEY"),
        )

    def _served_model(self) -> str:
        """The first model the server serves (checks the URL at start-up, with a clear error)."""
        import httpx

        try:
            response = httpx.get(f"{self.base_url}/v1/models", headers=self.headers, timeout=self.timeout)
            response.raise_for_status()
            return str(response.json()["data"][0]["id"])
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as err:
            raise EngineError(f"Cannot use the LLM server at {self.base_url}: {err}") from err

    def _payload(self, embeds: torch.Tensor, params: GenerationParams) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model_name,
            "prompt_embeds": encode_prompt_embeds(embeds.to(self.dtype)),
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": True,
        }
        if params.temperature > 0:
            payload["seed"] = params.seed
        if params.stop:
            payload["stop"] = list(params.stop)
        if params.frequency_penalty:
            payload["frequency_penalty"] = params.frequency_penalty  # OpenAI field
        if params.repetition_penalty != 1.0:
            payload["repetition_penalty"] = params.repetition_penalty  # vLLM's extra sampling field
        return payload

    async def _stream(
        self, prompt_embeds: torch.Tensor, params: GenerationParams, request_id: str
    ) -> AsyncGenerator[str, None]:
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=self.timeout)
        payload = self._payload(prompt_embeds, params)
        self._aborted.discard(request_id)
        try:
            async with self._client.stream("POST", "/v1/completions", json=payload) as response:
                self._responses[request_id] = response
                if response.status_code != 200:
                    raise EngineError(f"The LLM server refused the request: {_error_message(await response.aread())}")
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[len("data:") :].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if "error" in chunk:
                        raise EngineError(f"The LLM server failed: {_error_message(data)}")
                    choices = chunk.get("choices") or []
                    delta = choices[0].get("text", "") if choices else ""
                    if delta:
                        yield delta
        except httpx.HTTPError as err:
            if request_id not in self._aborted:
                raise EngineError(f"Lost the connection to the LLM server at {self.base_url}: {err}") from err
        finally:
            self._responses.pop(request_id, None)
            self._aborted.discard(request_id)

    async def abort(self, request_id: str) -> None:
        response = self._responses.get(request_id)
        if response is not None:
            self._aborted.add(request_id)
            await response.aclose()

    async def close(self) -> None:
        for request_id in list(self._responses):
            await self.abort(request_id)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
