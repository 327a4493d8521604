"""`launch.py ingest` and `launch.py ask`: the memory pipeline from the command line, with tqdm progress."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from model.errors import VideoChatError

Progress = Callable[[str, float], None]
MAX_UPLOAD_MB = 2048.0  # the limits of every entry point (the app's uploads and `ask`/`ingest`): one rule
MAX_DURATION_MIN = 180.0


class StageBar:
    """`progress(stage, fraction)` callbacks as one tqdm bar per stage, on stderr so --json stays clean."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.stage: str | None = None
        self.bar: Any = None

    def __call__(self, stage: str, fraction: float) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=100, desc=stage, unit="%", file=sys.stderr, leave=False)
        self.bar.n = int(max(0.0, min(1.0, fraction)) * 100)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.n = self.bar.total
            self.bar.refresh()
            self.bar.close()
            self.bar = None


def _check_file(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise VideoChatError(f"No such file: {path}")
    if p.is_dir():
        raise VideoChatError(f"{path} is a folder, not a video file")
    return p


def reserve_stdout_for_json() -> TextIO:
    """`--json`: from now on whatever writes to stdout (print, vLLM's logs, C libraries, the engine's child
    processes) lands on stderr; the returned stream is the real stdout, for the JSON alone."""
    sys.stdout.flush()
    real = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    return real


def json_stream(args: argparse.Namespace) -> TextIO:
    return getattr(args, "json_out", None) or sys.stdout


def check_video(path: Path, max_upload_mb: float | None, max_duration_min: float | None) -> Any:
    """The probe of a video every entry point accepts: within the size and length limits (None: no limit), and not
    a GIF animation (the player cannot show one). A MediaError with the reason otherwise."""
    from model.media import MediaError, probe
    from model.timecode import format_time

    size = os.path.getsize(path)
    if max_upload_mb is not None and size > max_upload_mb * 2**20:
        raise MediaError(f"The file is {size / 2**20:.0f} MB; this server accepts up to {max_upload_mb:g} MB.")
    info = probe(path)
    if str(info.codec).lower() == "gif":
        raise MediaError(
            "GIF animations are not supported (the player cannot show them). Convert it to a video first, "
            "e.g. ffmpeg -i in.gif -pix_fmt yuv420p out.mp4"
        )
    if max_duration_min is not None and info.duration > max_duration_min * 60:
        raise MediaError(
            f"The video is {format_time(info.duration, info.duration)} long; this server accepts up to "
            f"{max_duration_min:g} minutes."
        )
    return info


def _limits(args: argparse.Namespace) -> tuple[float | None, float | None]:
    """`--max-upload-mb` / `--max-duration-min`, or none with `--no-limits`."""
    if getattr(args, "no_limits", False):
        return None, None
    mb = float(getattr(args, "max_upload_mb", None) or MAX_UPLOAD_MB)
    minutes = float(getattr(args, "max_duration_min", None) or MAX_DURATION_MIN)
    if mb <= 0 or minutes <= 0:
        raise VideoChatError("--max-upload-mb and --max-duration-min must be positive")
    return mb, minutes


def load_runtime(args: argparse.Namespace, bar: StageBar) -> Any:
    """The profile's models; from here on SIGTERM/SIGHUP unwind like Ctrl-C so `close_runtime` runs."""
    from model.llm.lifecycle import interrupt_on_termination
    from model.offline import hub_offline_if_local
    from model.profiles import get_profile
    from model.runtime import Runtime

    interrupt_on_termination()
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # vLLM logs to stdout unless told
    profile = get_profile(getattr(args, "profile", "auto"))
    hub_offline_if_local(profile)  # every model local or packaged: the hub is not asked about updates either
    runtime = Runtime.load(profile, llm_url=getattr(args, "llm_url", None), progress=bar)
    bar.close()
    return runtime


def check_cache_dir(cache_dir: str | None) -> None:
    """Before any model loads: a cache folder that cannot be created stops here (CacheError); one that cannot be
    written only warns (memories then live as long as the process)."""
    from model.memory import MemoryCache

    problem = MemoryCache(cache_dir).writable()
    if problem:
        print(f"warning: {problem} Memories will not be kept after this run.", file=sys.stderr)


def _cache_warning(memory: Any) -> None:
    if getattr(memory, "cache_note", ""):
        print(f"warning: {memory.cache_note}", file=sys.stderr)


def close_runtime(runtime: Any) -> None:
    """Stop the LLM engine and its processes (idempotent: engines ignore a second close)."""
    asyncio.run(runtime.close())


def stream_config(args: argparse.Namespace) -> Any:
    """The chunking `--chunk-seconds` / `--first-chunk-seconds` ask for (None: the default chunks)."""
    from dataclasses import replace

    from model.memory.stream import StreamConfig

    chunk = getattr(args, "chunk_seconds", None)
    first = getattr(args, "first_chunk_seconds", None)
    if chunk is None and first is None:
        return None
    if (chunk is not None and chunk <= 0) or (first is not None and first <= 0):
        raise VideoChatError("--chunk-seconds and --first-chunk-seconds must be positive")
    config = StreamConfig()
    return replace(config, chunk_s=chunk or config.chunk_s, first_chunk_s=first or chunk or config.first_chunk_s)


async def _chapters_then_close(assistant: Any, runtime: Any, memory: Any) -> Any:
    """The video's chapters (written by the LLM unless cached), then the engine closed in the same event loop."""
    try:
        return await assistant.chapters(memory)
    finally:
        await runtime.close()


def ingest_command(args: argparse.Namespace) -> int:
    """Probe + clip plan + what a damaged file lost (fast, no models: the audio is decoded once to find damaged
    stretches); with --full also transcribe, encode and cache the memory."""
    from model.media import damage_note, decode_audio, merge_lost, plan_clips, probe, probe_damage
    from model.profiles import get_profile
    from model.qa.chapters import to_youtube

    path = _check_file(args.video)
    check_video(path, *_limits(args))  # the app's limits; --no-limits lifts size and length
    info = probe(path)
    profile = get_profile(args.profile)
    fps = float(args.fps or profile.sampling.fps)
    per_clip = int(args.frames_per_clip or profile.sampling.frames_per_clip)
    if fps <= 0 or per_clip <= 0:
        raise VideoChatError("--fps and --frames-per-clip must be positive")
    plans = plan_clips(info, fps=fps, frames_per_clip=per_clip, max_frames=profile.sampling.max_frames)
    out: dict[str, Any] = {
        "probe": {k: (str(v) if isinstance(v, Path) else v) for k, v in info.to_dict().items()},
        "profile": profile.name,
        "sampling": {"fps": fps, "frames_per_clip": per_clip, "max_frames": profile.sampling.max_frames},
        "clips": [p.to_dict() for p in plans],
    }
    track = decode_audio(path) if info.has_audio else None
    damage = merge_lost(probe_damage(path) + (track.lost if track is not None else []))
    out["damage"] = [s.to_dict(digits=3) for s in damage]
    out["damage_note"] = damage_note(damage, info.duration)
    if args.full:
        check_cache_dir(args.cache_dir)
        bar = StageBar()
        runtime = load_runtime(args, bar)
        try:
            assistant = runtime.assistant(cache_dir=args.cache_dir, stream=stream_config(args))
            memory = assistant.ingest(path, progress=bar, fps=fps, frames_per_clip=per_clip)
            bar.close()
            _cache_warning(memory)
            out["memory"] = {**memory.summary(), "cache_note": memory.cache_note}
            job = assistant.streams.job(memory.key)
            if job is not None:
                out["chunks"] = {"count": len(job.spans), "built": job.built, "reused": job.reused}
            if not getattr(args, "no_chapters", False):
                chapters = asyncio.run(_chapters_then_close(assistant, runtime, memory))
                if chapters is not None:
                    out["chapters"] = {**chapters.to_dict(), "youtube": to_youtube(chapters, memory.duration)}
        finally:
            close_runtime(runtime)
    if args.json:
        print(json.dumps(out, indent=2, default=str), file=json_stream(args), flush=True)
    else:
        d = out["probe"]
        print(
            f"{path.name}: {d['duration']:.2f} s, {d['width']}x{d['height']} @ {d['fps']:.3f} fps, "
            f"{d['frame_count']} frames, codec {d['codec']}, rotation {d['rotation']}, audio {d['has_audio']}"
        )
        print(f"{len(plans)} clips of {per_clip} frames at {fps:g} fps")
        for p in plans[:10]:
            print(f"  clip {p.index}: {p.start:.2f}-{p.end:.2f} s")
        if len(plans) > 10:
            print(f"  ... {len(plans) - 10} more")
        if "memory" in out:
            m = out["memory"]
            print(f"memory {m['key']} ({'cached' if m['from_cache'] else 'built'}): {len(m['transcript'])} lines")
        if "chapters" in out:
            print("chapters:\n" + out["chapters"]["youtube"].rstrip())
            if out["chapters"]["summary"]:
                print(f"summary: {out['chapters']['summary']}")
        note = out["memory"].get("damage_note") if "memory" in out else out["damage_note"]
        if note:
            print(f"note: {note}")
    return 0


def ask_command(args: argparse.Namespace) -> int:
    """Answer one question: {answer, citations, evidence, moments, notes, timings} with --json."""
    from model.qa import AnswerDelta, AnswerDone, ChatSettings, check_question

    args.question = check_question(args.question)  # an empty or overlong question: refused before anything loads
    path = _check_file(args.video)
    check_video(path, *_limits(args))  # so is a bad file, or one over the app's limits
    check_cache_dir(args.cache_dir)  # so does a cache folder that cannot be made
    bar = StageBar()
    t0 = time.perf_counter()
    runtime = load_runtime(args, bar)
    load_s = time.perf_counter() - t0

    async def run(assistant: Any, memory: Any, settings: Any) -> Any:
        try:
            if args.json:
                return await assistant.answer(memory, args.question, settings=settings)
            answer = None  # stream the text as it comes
            async for event in assistant.ask(memory, args.question, settings=settings):
                if isinstance(event, AnswerDelta):
                    print(event.text, end="", flush=True)
                elif isinstance(event, AnswerDone):
                    answer = event.answer
            print()
            return answer
        finally:
            await runtime.close()  # in the loop the engine streamed in

    try:
        assistant = runtime.assistant(cache_dir=args.cache_dir)
        t = time.perf_counter()
        # In the main thread: Ctrl-C or SIGTERM stops a long ingest at once (a worker thread would finish it first).
        memory = assistant.ingest(path, bar)
        bar.close()
        _cache_warning(memory)
        ingest_s = time.perf_counter() - t
        settings = ChatSettings.from_values(max_tokens=args.max_tokens, temperature=args.temperature)
        answer = asyncio.run(run(assistant, memory, settings))
    finally:
        close_runtime(runtime)  # after an error or an interrupt before the answer (else a no-op)
    if args.json:
        result = answer.to_dict()
        out = {
            "question": args.question,
            "answer": result["text"],
            "citations": result["citations"],
            "evidence": result["evidence"],
            "moments": result["moments"],
            "notes": result["notes"] + ([memory.damage_note] if memory.damage_note else []),
            "damage": [s.to_dict(digits=3) for s in memory.damage],
            "timings": {"load_s": round(load_s, 3), "ingest_s": round(ingest_s, 3), **result["timings"]},
            "video": {
                "path": str(path),
                "duration": memory.duration,
                "from_cache": memory.from_cache,
                "cache_note": memory.cache_note,
            },
            "profile": runtime.profile.name,
        }
        print(json.dumps(out, indent=2, default=str), file=json_stream(args), flush=True)
    else:
        if answer.evidence:
            spans = ", ".join(f"{e.start:.0f}-{e.end:.0f}s" for e in answer.evidence)
            print(f"evidence: {spans}", file=sys.stderr)
        if memory.damage_note:
            print(f"note: {memory.damage_note}", file=sys.stderr)
    return 0
