"""Shared test setup: offline, deterministic, CPU; gpu-marked tests skip without CUDA."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

# Nothing in tests touches the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402

pytest_plugins = ["tests.media_fixtures"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="module", autouse=True)
def no_engine_outlives_its_module() -> Iterator[None]:
    """Each module closes the LLM engines it starts: a leftover vLLM EngineCore holds ~7 GB, and two of them
    exhaust a 24 GB CI machine (vLLM then refuses the next engine's KV cache). A leak fails the module's last
    test loudly here, and the leftover is killed so that it cannot take the rest of the run down with it."""
    yield
    import gc

    import psutil

    gc.collect()
    leftovers = [p for p in psutil.Process().children(recursive=True) if "EngineCore" in " ".join(_cmdline(p))]
    for p in leftovers:
        p.kill()
    if leftovers:
        pytest.fail(f"{len(leftovers)} vLLM engine process(es) outlived their test module: close the runtime")


def _cmdline(p: object) -> list[str]:
    import psutil

    try:
        return [p.name(), *p.cmdline()]  # type: ignore[attr-defined]
    except psutil.Error:
        return []
