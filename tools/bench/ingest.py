"""`launch.py bench ingest`: a long video as users meet it, on this machine.

On a generated slide talk (tools/synth_lecture.py: continuous espeak speech, a still slide per topic, topics
changing at known times; 60 minutes by default) with the chosen profile:

1. in process, as the app does it: upload -> first chunk -> the first answer (asked at once, over what is ingested
   so far), a question about a later time (waits or is told it is not ingested yet), the whole video ingested
   (each stage's seconds and share, OCR/tagger frames read vs reused), then the chapters: boundary hit rate
   within 10 s of the known topic changes;
2. as a real `launch.py ingest --full` process: SIGKILL at about half of the chunks, then the same command again:
   how long the rest takes, and that no finished chunk was computed again (its own log and --json say which).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("audio_decode_s", "transcribe_s", "decode_s", "encode_s", "retrieval_s", "ocr_s", "tags_s", "index_s")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", nargs="?", default=None, help="default: a generated slide talk")
    parser.add_argument("--profile", default="lite")
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds of generated talk")
    parser.add_argument("--scene-s", type=float, default=300.0, help="seconds per topic of the generated talk")
    parser.add_argument("--work", default=None, help="folder for the video and caches (default: a temp folder)")
    parser.add_argument("--kill-at", type=float, default=0.5, help="fraction of chunks done when SIGKILL comes")
    parser.add_argument("--skip-kill", action="store_true", help="only the in-process part")
    parser.add_argument("--skip-stream", action="store_true", help="only the SIGKILL part")
    parser.add_argument("--no-overlap", action="store_true", help="transcribe in the build loop, not ahead of it")
    parser.add_argument("--no-gate", action="store_true", help="OCR and the tagger read every frame")
    parser.add_argument("--question", default="What is this video about so far?")
    parser.add_argument("--later-question", default="What is said at 45:00?")
    parser.add_argument("--timeout-s", type=float, default=7200.0)


def _video(args: argparse.Namespace, work: Path) -> tuple[Path, list[float], dict[str, Any]]:
    if args.video:
        return Path(args.video), [], {"generated": False}
    from tools.synth_lecture import make_lecture_video

    path = work / f"talk-{int(args.duration)}s.mp4"
    truth_file = path.with_suffix(".json")
    t = time.perf_counter()
    if path.is_file() and truth_file.is_file():
        truth = json.loads(truth_file.read_text())
        return path, truth["boundaries"], {"generated": True, "reused": True, **truth["about"]}
    v = make_lecture_video(path, duration=args.duration, scene_s=args.scene_s)
    about = {
        "duration_s": v.duration,
        "scenes": len(v.scenes),
        "sentences": len(v.sentences),
        "speech_s": round(sum(s.end - s.start for s in v.sentences), 1),
        "size": list(v.size),
        "fps": v.fps,
        "generate_s": round(time.perf_counter() - t, 1),
    }
    truth_file.write_text(json.dumps({"boundaries": v.extra["boundaries"], "about": about}))
    return path, v.extra["boundaries"], {"generated": True, **about}


def hit_rate(starts: list[float], truth: list[float], within: float = 10.0) -> dict[str, Any]:
    """Recall: known changes with a chapter start within `within` s; precision: chapter starts (after 0) near one."""
    found = [s for s in starts if s > 0]
    recall = sum(any(abs(s - t) <= within for s in found) for t in truth) / len(truth) if truth else None
    precision = sum(any(abs(s - t) <= within for t in truth) for s in found) / len(found) if found else None
    errors = [min(abs(s - t) for s in found) for t in truth] if found and truth else []
    return {
        "within_s": within,
        "hit_rate": None if recall is None else round(recall, 3),
        "precision": None if precision is None else round(precision, 3),
        "median_error_s": round(sorted(errors)[len(errors) // 2], 2) if errors else None,
        "chapters": len(starts),
        "true_changes": len(truth),
    }


def _stages(timings: dict[str, float], wall: float) -> dict[str, Any]:
    busy = {k: round(float(timings.get(k, 0.0)), 2) for k in STAGES if timings.get(k)}
    total = sum(busy.values()) or 1.0
    return {
        "seconds": busy,
        "share_of_stage_time": {k: round(v / total, 3) for k, v in busy.items()},
        "stage_time_over_wall": round(total / max(wall, 1e-9), 2),  # > 1: speech overlapped the frame work
        "ocr_frames": {"read": timings.get("ocr_reads"), "reused": timings.get("ocr_reused")},
        "tag_frames": {"read": timings.get("tag_reads"), "reused": timings.get("tag_reused")},
        "transcribe_wait_s": round(float(timings.get("transcribe_wait_s", 0.0)), 2),
    }


async def _streamed(
    args: argparse.Namespace, runtime: Any, load_s: float, video: Path, truth: list[float], work: Path
) -> dict[str, Any]:
    from model.memory.stream import StreamConfig
    from model.qa.chapters import to_youtube

    stream = StreamConfig(overlap_speech=not args.no_overlap, ocr_gate=None if args.no_gate else 0.03)
    try:
        assistant = runtime.assistant(cache_dir=work / f"cache-stream-{time.time_ns()}", stream=stream)
        t0 = time.perf_counter()  # "upload": the file is there, the models are loaded
        job = assistant.start_ingest(video)
        first = await asyncio.to_thread(job.wait_first)
        first_chunk_s = time.perf_counter() - t0
        out: dict[str, Any] = {
            "load_models_s": round(load_s, 1),
            "first_chunk_s": round(first_chunk_s, 1),
            "first_chunk_until_s": first.seen_until,
        }
        try:  # the LLM steps: a machine out of memory may kill the engine; the ingest figures still count
            answer = await assistant.answer(first, args.question)
            out["upload_to_first_answer_s"] = round(time.perf_counter() - t0, 1)
            out["first_answer"] = answer.text[:400]
            out["first_answer_timings"] = {k: round(v, 2) for k, v in answer.timings.items()}
            t = time.perf_counter()
            later = await assistant.answer(job.memory or first, args.later_question)
            out.update(later_question=args.later_question, later_answer=later.text[:300])
            out["later_answer_s"] = round(time.perf_counter() - t, 1)
        except Exception as err:
            out["answer_error"] = f"{type(err).__name__}: {err}"[:300]
        _save(work, {"stream": out})
        memory = await asyncio.to_thread(job.wait_done, args.timeout_s)
        whole_s = time.perf_counter() - t0
        out["whole_video_s"] = round(whole_s, 1)
        out["stages"] = _stages(memory.timings, whole_s)
        _save(work, {"stream": out})
        t = time.perf_counter()
        try:
            chapters = await assistant.chapters(memory)
        except Exception as err:
            out["chapters_error"] = f"{type(err).__name__}: {err}"[:300]
            from model.qa.chapters import Chapter, Chapters, chapter_bounds

            starts = chapter_bounds(memory)  # the boundaries need no LLM: they are still measured
            ends = [*starts[1:], memory.duration]
            chapters = Chapters([Chapter(a, b, "") for a, b in zip(starts, ends, strict=True)])
        chapters_s = time.perf_counter() - t
    finally:
        await runtime.close()
    starts = chapters.starts if chapters is not None else [0.0]
    return {
        **out,
        "video_s_per_s": round(memory.duration / whole_s, 2),
        "chunks": len(job.spans),
        "stages": _stages(memory.timings, whole_s),
        "transcript_lines": len(memory.transcript.segments),
        "clips": len(memory.clips),
        "chapters_s": round(chapters_s, 1),
        "chapters": hit_rate(starts, truth),
        "chapter_list": to_youtube(chapters, memory.duration).splitlines() if chapters else [],
        "summary": chapters.summary if chapters else "",
    }


def _save(work: Path, part: dict[str, Any]) -> None:
    """What is measured so far (a long run killed by the machine keeps its figures)."""
    path = work / "partial.json"
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        data = {}
    path.write_text(json.dumps({**data, **part}, indent=1, default=str))


def _cmd(args: argparse.Namespace, video: Path, cache: Path) -> list[str]:
    return [
        sys.executable, "launch.py", "ingest", str(video), "--full", "--json", "--profile", args.profile,
        "--cache-dir", str(cache), "--no-chapters", "-v",
    ]  # fmt: skip


def _killed(args: argparse.Namespace, video: Path, work: Path) -> dict[str, Any]:
    cache = work / f"cache-kill-{time.time_ns()}"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    log_path = work / "killed.log"
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            _cmd(args, video, cache), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log, env=env, start_new_session=True
        )
        total = finished = 0
        folder: Path | None = None
        try:
            while time.perf_counter() - t0 < args.timeout_s:
                layouts = list((cache / ".partial").glob("*/layout.json"))
                if layouts:
                    folder = layouts[0].parent
                    total = len(json.loads(layouts[0].read_text())["spans"])
                    finished = len(list(folder.glob("chunk-*.safetensors")))
                    if finished >= max(1, round(total * args.kill_at)):
                        break
                if proc.poll() is not None:
                    raise RuntimeError(f"ingest ended before the kill: {log_path.read_text()[-2000:]}")
                time.sleep(0.5)
            os.killpg(proc.pid, signal.SIGKILL)  # the process and the engine it started: kill -9, no cleanup
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    killed_s = time.perf_counter() - t0
    assert folder is not None
    done_before = sorted(int(p.name.split("-")[1]) for p in folder.glob("chunk-*.safetensors"))
    t = time.perf_counter()
    out = subprocess.run(_cmd(args, video, cache), cwd=ROOT, capture_output=True, text=True, env=env)
    resume_s = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"the resumed ingest failed: {out.stderr[-3000:]}")
    data = json.loads(out.stdout)
    built_again = [i for i in done_before if re.search(rf"chunk {i} of \w+ \[[^\]]*\] built", out.stderr) is not None]
    timings = data["memory"]["timings"]
    return {
        "chunks": total,
        "killed_after_s": round(killed_s, 1),
        "chunks_done_at_kill": len(done_before),
        "resume_process_s": round(resume_s, 1),  # model loading included
        "resume_ingest_s": round(float(timings.get("ingest_wall_s", 0.0)), 1),
        "reused": data["chunks"]["reused"],
        "built_after_resume": data["chunks"]["built"],
        "finished_chunks_recomputed": built_again,
        "none_recomputed": not built_again and data["chunks"]["reused"] == done_before,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    work.mkdir(parents=True, exist_ok=True)
    video, truth, about = _video(args, work)
    result: dict[str, Any] = {
        "profile": args.profile,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "video": {"path": video.name, **about},
        "targets": {"upload_to_first_answer_s": 60, "whole_hour_s": 360, "chapter_hit_rate_10s": 0.8},
    }
    if not args.skip_stream:
        from model.profiles import get_profile
        from model.runtime import Runtime

        t = time.perf_counter()
        runtime = Runtime.load(get_profile(args.profile))  # in the main thread, as the app and CLI do
        result["stream"] = asyncio.run(_streamed(args, runtime, time.perf_counter() - t, video, truth, work))
    _save(work, result)
    if not args.skip_kill:
        result["sigkill"] = _killed(args, video, work)
        _save(work, {"sigkill": result["sigkill"]})
    result["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    return result
