"""`launch.py bench llm`: time to first token and tokens/s at 1, 4 and 8 concurrent streams,
in-process vLLM against transformers on the same model and prompts, in one run (with ratios).

Engines run one after the other (never side by side) so each has the machine to itself.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

TOPICS = ["a dragon", "the sea", "a robot", "a city at night", "a old library", "a mountain", "a small cat", "winter"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="lite", help="profile whose LLM is measured (default: lite = SmolLM2)")
    parser.add_argument("--engines", default="vllm,transformers", help="comma list: vllm, transformers, remote")
    parser.add_argument("--llm-url", default=None, help="also measure a remote vLLM server (engine 'remote')")
    parser.add_argument("--concurrency", default="1,4,8", help="comma list of concurrent stream counts")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--model-dir", default=None, help="measure this transformers folder instead of the profile's")
    parser.add_argument("--device", default=None, help="default: the profile's (cuda when available for GPU profiles)")


async def _one(engine: Any, embeds: Any, params: Any, request_id: str, t0: float) -> dict[str, float | str]:
    first = None
    parts = []
    async for delta in engine.stream(embeds, params, request_id):
        if first is None:
            first = time.perf_counter() - t0
        parts.append(delta)
    return {
        "ttft": first if first is not None else float("nan"),
        "end": time.perf_counter() - t0,
        "text": "".join(parts),
    }


async def _measure(engine: Any, builder: Any, concurrency: list[int], max_tokens: int) -> dict[str, Any]:
    from model.llm import GenerationParams, PromptInputs

    params = GenerationParams(max_tokens=max_tokens, temperature=0.0)
    prompts = [
        builder.build(PromptInputs(question=f"Write a long story about {TOPICS[i % len(TOPICS)]}."), max_tokens)
        for i in range(max(concurrency))
    ]
    await _one(engine, prompts[0], params, "warmup", time.perf_counter())  # first-call overheads out of the numbers
    results: dict[str, Any] = {}
    for n in concurrency:
        t0 = time.perf_counter()
        outs = await asyncio.gather(*(_one(engine, prompts[i], params, f"bench-{n}-{i}", t0) for i in range(n)))
        wall = time.perf_counter() - t0
        tokens = sum(builder.count_tokens(o["text"]) for o in outs)
        results[str(n)] = {
            "streams": n,
            "ttft_s_mean": statistics.fmean(o["ttft"] for o in outs),
            "ttft_s_max": max(o["ttft"] for o in outs),
            "wall_s": wall,
            "tokens": tokens,
            "tokens_per_s": tokens / wall,
            "tokens_per_s_per_stream": tokens / wall / n,
        }
    return results


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from model.llm import PromptBuilder, create_engine
    from model.profiles import get_profile
    from model.runtime import pick_device, resolve_llm_dir

    profile = get_profile(args.profile)
    device = args.device or pick_device(profile)
    spec = replace(profile.llm, max_model_len=args.max_model_len)
    model_dir = Path(args.model_dir) if args.model_dir else Path(resolve_llm_dir(spec, profile.vision))
    builder = PromptBuilder(spec.template, model_dir, max_model_len=args.max_model_len)
    concurrency = [int(c) for c in args.concurrency.split(",")]
    names = [e.strip() for e in args.engines.split(",") if e.strip()]
    if args.llm_url and "remote" not in names:
        names.append("remote")

    report: dict[str, Any] = {
        "model": str(model_dir),
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else device,
        "machine": f"{platform.machine()} {torch.get_num_threads()} torch threads",
        "max_tokens": args.max_tokens,
        "engines": {},
    }
    for name in names:
        t0 = time.perf_counter()
        engine = create_engine(
            replace(spec, engine="auto" if name == "remote" else name),
            model_dir,
            device,
            llm_url=args.llm_url if name == "remote" else None,
        )
        start_s = time.perf_counter() - t0

        async def measure(engine: Any = engine) -> dict[str, Any]:
            try:
                return await _measure(engine, builder, concurrency, args.max_tokens)
            finally:
                await engine.close()

        report["engines"][name] = {"engine": engine.name, "start_s": start_s, "results": asyncio.run(measure())}

    if "vllm" in report["engines"] and "transformers" in report["engines"]:
        v, h = report["engines"]["vllm"]["results"], report["engines"]["transformers"]["results"]
        report["vllm_over_transformers"] = {
            n: {
                "tokens_per_s": v[n]["tokens_per_s"] / h[n]["tokens_per_s"],
                "ttft_mean": v[n]["ttft_s_mean"] / h[n]["ttft_s_mean"],
            }
            for n in v
        }
    return report
