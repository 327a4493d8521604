"""Fast checks of the LLM package's parts that need no running engine: model-folder resolution, engine
choice errors, the remote wire format (decoded by vLLM's own loader) and stop strings."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
import torch

from model.errors import ConfigError, ModelAccessError
from model.llm import EngineError, GenerationParams, create_engine
from model.llm.guard import RepetitionGuard, StopTrimmer
from model.llm.hf import FrequencyPenalty, TransformersEngine
from model.llm.remote import RemoteEngine, encode_prompt_embeds, wire_dtype
from model.llm.vllm_engine import VLLMEngine
from model.profiles import LLMSpec
from model.runtime import resolve_llm_dir
from model.sources import resolve_dtype, resolve_model_dir, resolve_model_file

SPEC = LLMSpec(source="packaged:smollm2", template="chatml")


@pytest.fixture(scope="module")
def smol_dir() -> Path:
    from model.assets import smollm2_dir

    return smollm2_dir()


def test_resolve_llm_dir(smol_dir: Path, tmp_path: Path) -> None:
    assert resolve_llm_dir(SPEC, None) == smol_dir
    assert resolve_llm_dir(replace(SPEC, source=str(smol_dir))) == smol_dir
    with pytest.raises(ConfigError, match=r"no config\.json"):
        resolve_llm_dir(replace(SPEC, source=str(tmp_path)))
    with pytest.raises(ConfigError, match="needs a vision source"):
        resolve_llm_dir(replace(SPEC, source="converted"), None)
    # A hub id that is not cached, with the hub offline (tests/conftest.py): a clear access error.
    with pytest.raises(ModelAccessError, match=r"not in the local Hugging Face cache.*LLM|LLM.*not in the local"):
        resolve_llm_dir(replace(SPEC, source="someone/not-a-cached-model"))


def test_resolve_model_sources(smol_dir: Path, tmp_path: Path) -> None:
    """The one resolver: packaged, local folder/file as is, hub ids through the (offline) cache, clear errors."""
    assert resolve_model_dir("packaged:smollm2") == smol_dir
    assert resolve_model_dir(str(smol_dir)) == smol_dir
    assert resolve_model_file(str(smol_dir), "config.json") == smol_dir / "config.json"
    assert resolve_model_file(str(smol_dir / "config.json"), "ignored.json") == smol_dir / "config.json"
    with pytest.raises(ModelAccessError, match=r"has no missing\.bin"):
        resolve_model_file(str(smol_dir), "missing.bin")
    with pytest.raises(ModelAccessError, match=r"Unknown packaged model"):
        resolve_model_dir("packaged:nope")
    with pytest.raises(ModelAccessError, match=r"neither a local path nor a hub id"):
        resolve_model_dir(str(tmp_path / "no" / "such" / "folder"), what="vision")
    with pytest.raises(ModelAccessError, match=r"speech model someone/x is not in the local Hugging Face cache"):
        resolve_model_dir("someone/x", allow_patterns=["*.json"], what="speech model")
    with pytest.raises(ModelAccessError, match=r"not in the local Hugging Face cache") as info:
        resolve_model_file("someone/x", "config.json")
    from huggingface_hub.errors import LocalEntryNotFoundError

    assert isinstance(info.value.__cause__, LocalEntryNotFoundError)  # callers can tell "offline" from "absent"


def test_engine_choice_errors(smol_dir: Path) -> None:
    with pytest.raises(EngineError, match="--llm-url"):
        create_engine(replace(SPEC, engine="remote"), smol_dir, "cpu")
    with pytest.raises(EngineError, match="Unknown LLM engine"):
        create_engine(replace(SPEC, engine="llamacpp"), smol_dir, "cpu")
    with pytest.raises(EngineError, match="needs a CUDA GPU"):  # refused before vLLM starts anything
        create_engine(replace(SPEC, engine="vllm", quantization="fp8"), smol_dir, "cpu")
    with pytest.raises(EngineError, match="Unknown quantization"):
        create_engine(replace(SPEC, engine="vllm", quantization="int3"), smol_dir, "cpu")
    with pytest.raises(EngineError, match="Cannot use the LLM server"):  # nothing listens on port 9
        create_engine(SPEC, smol_dir, "cpu", llm_url="http://127.0.0.1:9")
    assert resolve_dtype("auto", "cpu") == torch.float32 and resolve_dtype("auto", "cuda:1") == torch.bfloat16
    assert resolve_dtype("bf16", "cpu") == resolve_dtype("bfloat16", "cuda") == torch.bfloat16
    with pytest.raises(ConfigError, match="Unknown dtype"):
        resolve_dtype("int8", "cpu")


def test_wire_format_is_what_vllm_decodes() -> None:
    from vllm.exceptions import VLLMValidationError
    from vllm.renderers.embed_utils import safe_load_prompt_embeds

    embeds = torch.randn(7, 576)
    # vLLM's loader reads three attributes of its ModelConfig; this stands in for the config only.
    config = SimpleNamespace(enable_prompt_embeds=True, get_hidden_size=lambda: 576, dtype=torch.float32)
    decoded = safe_load_prompt_embeds(config, encode_prompt_embeds(embeds).encode())
    assert torch.equal(decoded, embeds)
    with pytest.raises(VLLMValidationError, match="hidden_size 100"):
        safe_load_prompt_embeds(config, encode_prompt_embeds(torch.randn(7, 100)).encode())


@pytest.mark.parametrize(
    ("deltas", "stop", "expected"),
    [
        (["Hello", " world"], ["xyz"], "Hello world"),
        (["Hello", " world"], ["wor"], "Hello "),
        (["Hello wo", "rld!"], ["world"], "Hello "),  # a stop string split across deltas
        (["Hi", " there. Q: again"], ["Q:", "there"], "Hi "),  # the earliest stop wins
        (["Hi", " you"], None, "Hi you"),
        (["a\nQ", "uestion: next"], ["\nQuestion:"], "a"),  # a held-back prefix that completes
        (["a\nQ", "ueen"], ["\nQuestion:"], "a\nQueen"),  # a held-back prefix that does not: flushed
    ],
)
def test_stop_trimmer(deltas: list[str], stop: list[str] | None, expected: str) -> None:
    trimmer = StopTrimmer(stop)
    out = "".join(trimmer.feed(d) for d in deltas) + trimmer.flush()
    assert out == expected
    assert trimmer.stopped == (expected != "".join(deltas))


@pytest.fixture(scope="module")
def hf_engine(smol_dir: Path) -> Iterator[TransformersEngine]:
    engine = TransformersEngine(smol_dir, max_model_len=1024)
    yield engine
    asyncio.run(engine.close())


async def test_transformers_stop_strings_end_generation_unemitted(
    smol_dir: Path, hf_engine: TransformersEngine
) -> None:
    from model.llm import PromptBuilder, PromptInputs

    builder = PromptBuilder("chatml", smol_dir, max_model_len=1024)
    story = builder.build(PromptInputs(question="Write a very long story about a dragon and a knight."))

    async def run(params: GenerationParams) -> tuple[str, float]:
        start = time.perf_counter()
        text = "".join([d async for d in hf_engine.stream(story, params, "stop-test")])
        return text, time.perf_counter() - start

    head, t_head = await run(GenerationParams(max_tokens=24))
    word = head.split()[6]  # a word a few tokens in
    cut, t_cut = await run(GenerationParams(max_tokens=400, stop=[word]))
    assert cut == head[: head.index(word)] and word not in cut
    # Generation itself ended at the stop string (400 tokens would take over 10x as long as 24).
    assert t_cut < 2 * t_head, (t_cut, t_head)
    assert not hf_engine._flags and hf_engine._executor._work_queue.qsize() == 0


LOOP = (
    "In the realm of fantasy there was a dragon named Aethonax. Aethonax was a fierce and cunning dragon, feared by "
    "all who dwelled in the land. He was a fierce and cunning dragon, feared by all who dwelled in the land. He was "
    "a fierce and cunning dragon, feared by all who dwelled in the land. He was a fierce"
)


def guarded(text: str, chunk: int, guard: RepetitionGuard | None = None) -> tuple[str, bool]:
    guard = guard or RepetitionGuard()
    out = "".join(guard.feed(text[i : i + chunk]) for i in range(0, len(text), chunk))
    return out, guard.tripped


def test_repetition_guard_cuts_a_loop_at_the_same_place_however_it_is_streamed() -> None:
    cuts = {guarded(LOOP, chunk) for chunk in (1, 2, 5, 13, len(LOOP))}
    assert len(cuts) == 1
    ((out, tripped),) = cuts
    assert tripped and LOOP.startswith(out) and len(out) < len(LOOP)
    sentence = "a fierce and cunning dragon, feared by all who dwelled in the land."
    assert out.count(sentence) == 2  # the first repeat is where it became certain; the third never comes


@pytest.mark.parametrize(
    ("text", "trips"),
    [
        ("The cat sat. It purred. The cat sat. It slept. The cat sat. ", False),  # short sentences may recur
        ("The cat sat. " * 3, True),  # ... but not back to back three times
        ("The man opens the red door. Then he waits. The man opens the red door. A dog barks. "
         "The man opens the red door. ", True),  # the same sentence a third time, not back to back
        ("over and over, over and over, over and over, and more", True),  # a short span three times in a row
        ("no, no, no, no, no, no, no, no. I said no.", False),  # one word repeated is not a loop
        ("At [00:05] the man walks to the door and opens it.\nAt [00:12] the man walks to the door and opens it.\n"
         "At [00:20] the man walks to the door and opens it.\n", False),  # different times: different lines
        ("It starts at [01:05] and ends at [01:30], when the whole crowd stands up and cheers loudly. ", False),
    ],
)  # fmt: skip
def test_repetition_guard_on_text(text: str, trips: bool) -> None:
    out, tripped = guarded(text, 3)
    assert tripped == trips, out
    assert (out == text) != trips


def test_sampling_params_reach_vllm_and_the_remote_request(smol_dir: Path) -> None:
    params = GenerationParams(max_tokens=9, stop=["Q:"], repetition_penalty=1.2, frequency_penalty=0.5)
    sp = VLLMEngine.sampling_params(params)
    assert (sp.max_tokens, sp.stop, sp.repetition_penalty, sp.frequency_penalty) == (9, ["Q:"], 1.2, 0.5)
    remote = RemoteEngine("http://127.0.0.1:9", smol_dir, model_name="smollm2")  # no request is made
    payload = remote._payload(torch.zeros(3, 576), params)
    assert (payload["stop"], payload["repetition_penalty"], payload["frequency_penalty"]) == (["Q:"], 1.2, 0.5)
    plain = remote._payload(torch.zeros(3, 576), GenerationParams())
    assert not {"stop", "repetition_penalty", "frequency_penalty"} & set(plain)  # defaults: OpenAI-plain request


def test_frequency_penalty_subtracts_per_earlier_use() -> None:
    scores = torch.zeros(2, 5)
    ids = torch.tensor([[1, 3, 3], [4, 4, 4]])
    out = FrequencyPenalty(0.5)(ids, scores)
    assert out.tolist() == [[0.0, -0.5, 0.0, -1.0, 0.0], [0.0, 0.0, 0.0, 0.0, -1.5]]


def test_remote_sends_the_prompt_in_the_model_dtype(smol_dir: Path, tmp_path: Path) -> None:
    import base64
    import io
    import json

    from vllm.renderers.embed_utils import safe_load_prompt_embeds

    config = json.loads((smol_dir / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "dtype": "bfloat16"}))  # as the converted Mistral's
    assert wire_dtype("auto", tmp_path) == torch.bfloat16
    assert wire_dtype("auto", smol_dir) == torch.float32  # the packaged SmolLM2 folder is float32
    assert wire_dtype("bfloat16", smol_dir) == torch.bfloat16  # the profile's dtype wins

    embeds = torch.randn(256, 576)
    sizes = {}
    for dtype in (torch.bfloat16, torch.float32):
        remote = RemoteEngine("http://127.0.0.1:9", tmp_path, dtype=dtype, model_name="m")  # no request is made
        wire = remote._payload(embeds, GenerationParams())["prompt_embeds"]
        raw = base64.b64decode(wire)
        sent = torch.load(io.BytesIO(raw), weights_only=True)
        assert sent.dtype == dtype and torch.equal(sent, embeds.to(dtype))
        sizes[dtype] = len(raw)
        # vLLM's own loader takes it and casts it to the dtype the server runs in.
        server = SimpleNamespace(enable_prompt_embeds=True, get_hidden_size=lambda: 576, dtype=torch.bfloat16)
        assert torch.equal(safe_load_prompt_embeds(server, wire.encode()), embeds.to(torch.bfloat16))
    assert 256 * 576 * 2 <= sizes[torch.bfloat16] < 256 * 576 * 2 + 2048  # 2 bytes a value, plus torch.save's header
    assert sizes[torch.float32] > 1.9 * sizes[torch.bfloat16]


class _CheckedWhere(torch.Tensor):
    """A tensor that notes which thread computes `torch.isfinite` on it."""

    threads: ClassVar[set[int]] = set()

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func is torch.isfinite:
            cls.threads.add(threading.get_ident())
        return super().__torch_function__(func, types, args, kwargs or {})


async def test_prompt_check_runs_off_the_event_loop(hf_engine: TransformersEngine) -> None:
    from model.llm import PromptError

    big = torch.randn(1000, 576)
    big[-1, -1] = float("nan")
    probe = big.as_subclass(_CheckedWhere)
    with pytest.raises(PromptError, match="NaN"):
        async for _ in hf_engine.stream(probe, GenerationParams(max_tokens=4), "nan-check"):
            pass
    assert _CheckedWhere.threads and threading.get_ident() not in _CheckedWhere.threads
