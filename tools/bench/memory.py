"""`launch.py bench memory --json`: ingestion speed, cache reopen time and retrieval latency over a 450-clip index.

- Ingestion: a generated scene video (tools.eval_memory, speech + burned-in signs) ingested into an empty
  cache with the profile (`lite` by default); speed is seconds of video per second of wall time.
- Reopen: a new Assistant on the same cache directory ingests the same file again. The per-process
  content-hash memo is cleared first, so the figure includes hashing the file, as after a restart.
- Retrieval: an hour-long video's worth of clips (450 clips of 8 s: 1 fps, 8 frames per clip) built as a
  synthetic VideoMemory with transcripts, on-screen text and the runtime's own text embeddings; each of ~20
  questions is timed through `Assistant.score_clips` (the ranking), `Assistant.prepare` (ranking + context
  choice + subtitles: everything before the LLM) and `Assistant.find_moments` (moment search, no frame
  decoding). Target: under 50 ms per question for the ranking.
- Full-profile reopen: the same 450 clips written and read back through MemoryCache with the GPU profile's
  per-clip bridge embeddings ([96, 4096] fp16), the size that decides how fast an hour-long video reopens.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model.memory.records import VideoMemory
    from model.runtime import Runtime

RETRIEVAL_TARGET_MS = 50.0

_SUBJECTS = ("chef", "pilot", "farmer", "teacher", "doctor", "child", "painter", "sailor", "baker", "singer")
_ACTIONS = ("carries", "repairs", "paints", "sells", "washes", "throws", "opens", "drops", "cleans", "lifts")
_OBJECTS = (
    "bicycle", "tomato", "kite", "guitar", "lantern", "umbrella", "suitcase", "ladder", "basket", "telescope",
    "violin", "hammer", "camera", "candle", "bucket", "map", "clock", "helmet", "bottle", "blanket",
)  # fmt: skip
_PLACES = ("harbor", "market", "station", "garden", "bridge", "castle", "museum", "forest", "beach", "library")
_SIGNS = ("EXIT", "OPEN", "SALE", "PLATFORM 4", "NO PARKING", "CAFE", "HOTEL", "PHARMACY", "TICKETS", "GATE B")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="lite")
    parser.add_argument("--engine", default=None, help="override the profile's LLM engine: transformers | vllm")
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the generated video to ingest")
    parser.add_argument("--work-dir", default=None, help="where the video is generated (and kept)")
    parser.add_argument("--clips", type=int, default=450, help="clips in the synthetic retrieval index")
    parser.add_argument("--questions", type=int, default=20, help="timed retrieval questions")
    parser.add_argument("--repeats", type=int, default=3, help="runs per question (its best time counts)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--full-hidden",
        type=int,
        default=4096,
        help="also time the cache for the 450-clip index with the 8B profile's [96, HIDDEN] fp16 clip embeddings "
        "(0: skip)",
    )


def _quantiles_ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(p95 * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def build_synthetic_memory(
    runtime: Runtime, n_clips: int = 450, clip_seconds: float = 8.0, seed: int = 0
) -> tuple[VideoMemory, list[str]]:
    """A `n_clips`-clip memory (one spoken line per clip, a sign in some) indexed with the runtime's text
    embedder, and questions about random clips of it (no time references, no "when": nothing decodes)."""
    from model.media import VideoInfo
    from model.memory.records import ClipRecord, VideoMemory
    from model.speech import Segment, Transcript

    rng = random.Random(seed)
    duration = n_clips * clip_seconds
    fps = 8.0 / clip_seconds  # 8 frames per clip
    clips: list[ClipRecord] = []
    segments: list[Segment] = []
    facts: list[tuple[str, str, str, str]] = []
    for i in range(n_clips):
        start = i * clip_seconds
        fact = (rng.choice(_SUBJECTS), rng.choice(_ACTIONS), rng.choice(_OBJECTS), rng.choice(_PLACES))
        facts.append(fact)
        text = f"The {fact[0]} {fact[1]} the {fact[2]} near the {fact[3]}."
        segments.append(Segment(start + 1.0, start + 4.0, text))
        ocr = [rng.choice(_SIGNS)] if rng.random() < 0.4 else []
        clips.append(
            ClipRecord(
                index=i,
                start=start,
                end=start + clip_seconds,
                frame_times=[start + j / fps for j in range(8)],
                transcript=text,
                ocr=ocr,
                ocr_times=[start] * len(ocr),
            )
        )
    transcript = Transcript(segments=segments, language="en", duration=duration)
    info = VideoInfo("synthetic-450-clips.mp4", duration, 30.0, int(duration * 30), 640, 360, 0, "h264", True)
    emb = runtime.text_embedder
    memory = VideoMemory(
        key="bench-synthetic",
        path=Path(info.path),
        profile=runtime.profile.name,
        info=info,
        transcript=transcript,
        clips=clips,
        sampling={"fps": fps, "frames_per_clip": 8, "max_frames": 3600, "short_side": 224},
        text_embeddings=None if emb is None else emb.embed([c.search_text for c in clips]),
        segment_embeddings=None if emb is None else emb.embed([s.text for s in segments]),
    )
    templates = (
        "What does the {0} do with the {2}?",
        "Who {1} the {2} near the {3}?",
        "Is there a {2} at the {3}?",
        "What happens to the {2} by the {3}?",
    )
    questions = []
    for j in range(64):  # more than needed: callers take a prefix
        fact = facts[rng.randrange(n_clips)]
        questions.append(templates[j % len(templates)].format(*fact))
    return memory, questions


def _ingest_timings(runtime: Runtime, video_path: Path, duration: float, cache_dir: Path) -> dict[str, Any]:
    from model.memory import keys as keys_module

    if cache_dir.exists():
        shutil.rmtree(cache_dir)
    first = runtime.assistant(cache_dir=cache_dir)
    t = time.perf_counter()
    memory = first.ingest(video_path)
    ingest_s = time.perf_counter() - t
    assert not memory.from_cache

    # A new Assistant (as another session or a restarted process) on the same cache directory. The content-hash
    # memo is per process: clearing it makes this reopen hash the file like the first open after a restart.
    keys_module._hash_memo.clear()
    t = time.perf_counter()
    reopener = runtime.assistant(cache_dir=cache_dir)
    again = reopener.ingest(video_path)
    reopen_s = time.perf_counter() - t
    t = time.perf_counter()
    warm = runtime.assistant(cache_dir=cache_dir).ingest(video_path)  # hash memoised: same process, same file
    reopen_warm_s = time.perf_counter() - t
    return {
        "video_s": duration,
        "clips": len(memory.clips),
        "ingest_s": round(ingest_s, 3),
        "video_s_per_s": round(duration / ingest_s, 2),
        "stages_s": {k: round(v, 3) for k, v in memory.timings.items()},
        "reopen_s": round(reopen_s, 4),
        "reopen_from_cache": again.from_cache,
        "reopen_encoded_clips": reopener.encoder_calls,  # 0: nothing recomputed
        "reopen_warm_s": round(reopen_warm_s, 4),
        "reopen_warm_from_cache": warm.from_cache,
        "cache_bytes": sum(p.stat().st_size for p in cache_dir.rglob("*") if p.is_file()),
    }


def _retrieval_timings(
    runtime: Runtime, memory: VideoMemory, questions: list[str], build_s: float, n_questions: int, repeats: int = 3
) -> dict[str, Any]:
    questions = questions[: max(1, n_questions)]
    assistant = runtime.assistant(cache_dir=None)
    # Warm-up: first calls pay for lazy imports and allocator growth, not for retrieval.
    assistant.prepare(memory, "What does the chef do with the lantern?")

    # Each question runs `repeats` times and keeps its best time: the machine is shared, and a neighbour's burst
    # would otherwise decide the p95. The median over every run is reported beside it.
    best: dict[str, list[float]] = {"score_clips": [], "find_moments": [], "prepare": []}
    every: dict[str, list[float]] = {k: [] for k in best}
    for q in questions:
        runs: dict[str, list[float]] = {k: [] for k in best}
        for _ in range(max(1, repeats)):
            t = time.perf_counter()
            scores = assistant.score_clips(memory, q)
            runs["score_clips"].append(time.perf_counter() - t)
            t = time.perf_counter()
            assistant.find_moments(memory, q, scores, refine=False)
            runs["find_moments"].append(time.perf_counter() - t)
            t = time.perf_counter()
            assistant.prepare(memory, q)
            runs["prepare"].append(time.perf_counter() - t)
        for k, v in runs.items():
            best[k].append(min(v))
            every[k].extend(v)
    score_s, moments_s, prepare_s = best["score_clips"], best["find_moments"], best["prepare"]
    ranking = _quantiles_ms(score_s)
    return {
        "clips": len(memory.clips),
        "index_build_s": round(build_s, 3),
        "questions": len(questions),
        "repeats": repeats,
        "score_clips": ranking,
        "find_moments": _quantiles_ms(moments_s),
        "prepare": _quantiles_ms(prepare_s),
        "median_ms_over_all_runs": {k: round(statistics.median(v) * 1000, 2) for k, v in every.items()},
        "target_ms": RETRIEVAL_TARGET_MS,
        "meets_target": ranking["p95_ms"] < RETRIEVAL_TARGET_MS,
        "prepare_meets_target": _quantiles_ms(prepare_s)["median_ms"] < RETRIEVAL_TARGET_MS,
    }


def _full_profile_reopen(memory: VideoMemory, hidden: int, cache_dir: Path) -> dict[str, Any]:
    """Write and reopen the 450-clip memory as the GPU profile stores it: every clip with its bridge embeddings
    (fp16 [96, hidden], 354 MB for an hour at 4096) and a [N, 512] retrieval index. The file is in the OS page
    cache when it is read back, as on a server that wrote it earlier."""
    import numpy as np
    import torch

    from model.memory.cache import MemoryCache

    if cache_dir.exists():
        shutil.rmtree(cache_dir)
    gen = torch.Generator().manual_seed(0)
    for c in memory.clips:
        c.embeddings = torch.randn(96, hidden, generator=gen).to(torch.float16)
    rng = np.random.default_rng(0)
    ret = rng.standard_normal((len(memory.clips), 512)).astype(np.float32)
    memory.retrieval_embeddings = ret / np.linalg.norm(ret, axis=1, keepdims=True)
    memory.key = f"bench-synthetic-full-{hidden}"
    cache = MemoryCache(cache_dir)
    t = time.perf_counter()
    cache.put(memory)
    put_s = time.perf_counter() - t
    size = sum(p.stat().st_size for p in cache_dir.rglob("*") if p.is_file())
    t = time.perf_counter()
    loaded = MemoryCache(cache_dir).get(memory.key)  # a new cache object, as after a restart
    get_s = time.perf_counter() - t
    ok = loaded is not None and loaded.has_video_embeddings and len(loaded.clips) == len(memory.clips)
    for c in memory.clips:
        c.embeddings = None
    memory.retrieval_embeddings = None
    shutil.rmtree(cache_dir, ignore_errors=True)
    return {
        "clips": len(memory.clips),
        "embedding_shape": [96, hidden],
        "bytes": size,
        "write_s": round(put_s, 3),
        "reopen_s": round(get_s, 3),
        "reopened_ok": ok,
    }


def run(args: argparse.Namespace) -> dict:
    import torch

    from model.assets import data_dir
    from tools.eval_memory import load_lite_runtime, make_eval_video

    work = Path(args.work_dir) if args.work_dir else data_dir() / "eval"
    video = make_eval_video(work, args.minutes, args.seed)
    t = time.perf_counter()
    runtime = load_lite_runtime(args.profile, args.engine)
    load_s = time.perf_counter() - t
    try:
        ingest = _ingest_timings(runtime, video.path, video.duration, work / "bench-memory-cache")
        t = time.perf_counter()
        memory, questions = build_synthetic_memory(runtime, args.clips, seed=args.seed)
        build_s = time.perf_counter() - t
        retrieval = _retrieval_timings(runtime, memory, questions, build_s, args.questions, args.repeats)
        full = _full_profile_reopen(memory, args.full_hidden, work / "bench-full-cache") if args.full_hidden else None
    finally:
        asyncio.run(runtime.close())
    return {
        "profile": runtime.profile.name,
        "load_average_1m": round(os.getloadavg()[0], 2),  # the machine is shared: timings depend on it
        "engine": runtime.engine_name,
        "device": runtime.device,
        "torch_threads": torch.get_num_threads(),
        "load_models_s": round(load_s, 2),
        "ingest": ingest,
        "retrieval": retrieval,
        "reopen_450_clips_full_profile": full,
    }
