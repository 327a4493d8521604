"""Questions across several videos on hand-built memories: one index, per-video moments, one prompt naming each
clip's video (pure parts; the real models answer in tests/test_api_mcp.py and the browser test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.llm import PromptBuilder
from model.media import VideoInfo
from model.memory import ClipRecord, VideoMemory
from model.qa import RetrievalSettings, parse_time_refs
from model.qa.multi import (
    WHICH,
    label_videos,
    mentioned_videos,
    plan_multi,
    pool_scores,
    videos_about,
)
from model.qa.search import QuestionVectors, score_clips
from model.speech import Segment, Transcript
from model.timecode import find_video_times

COOKING = [
    "we chop the onions finely",
    "the onions go into the hot pan",
    "add salt and a little pepper",
    "stir the sauce until it thickens",
    "serve the pasta with the sauce",
    "wash the pan after dinner",
]
PHYSICS = [
    "today we talk about motion",
    "a ball falls because of gravity",
    "gravity pulls every mass toward the earth",
    "the moon orbits the earth",
    "friction slows the sliding block",
    "next week we study light",
]


def memory(key: str, lines: list[str], signs: list[str] | None = None, embeddings: bool = False) -> VideoMemory:
    n = len(lines)
    clips = [
        ClipRecord(
            index=i,
            start=10.0 * i,
            end=10.0 * (i + 1),
            frame_times=[10.0 * i + 2 * j for j in range(5)],
            transcript=said,
            ocr=[signs[i]] if signs else [],
            ocr_times=[10.0 * i + 4] if signs else [],
            embeddings=torch.randn(96, 576) if embeddings else None,
        )
        for i, said in enumerate(lines)
    ]
    segments = [Segment(10.0 * i + 2, 10.0 * i + 6, said) for i, said in enumerate(lines)]
    info = VideoInfo(
        path=f"/{key}.mp4", duration=10.0 * n, fps=10.0, frame_count=100 * n, width=320, height=240,
        rotation=0, codec="h264", has_audio=True,
    )  # fmt: skip
    return VideoMemory(
        key=key,
        path=Path(f"/{key}.mp4"),
        profile="lite",
        info=info,
        transcript=Transcript(segments=segments, language="en", duration=10.0 * n),
        clips=clips,
        sampling={},
    )


NO_VECTORS = QuestionVectors()


def refs(*, embeddings: bool = False):
    return label_videos(
        [
            ("cooking.mp4", memory("k1", COOKING, embeddings=embeddings)),
            ("physics lecture.mp4", memory("k2", PHYSICS, embeddings=embeddings)),
        ]
    )


def test_one_index_ranks_clips_of_all_videos_on_one_scale() -> None:
    r = refs()
    q = "What is said about gravity?"
    pooled = pool_scores(r, q, NO_VECTORS)
    assert pooled is not None and len(pooled.owner) == 12
    best = pooled.top(3)
    assert best[0][0] == 1 and best[0][1] in (1, 2) and {v for v, _ in best[:2]} == {1}
    # alone, each video's own standardised ranking puts some cooking clip high too: the pool does not
    alone = score_clips(r[0].memory, q, NO_VECTORS)
    assert alone is not None and float(alone.combined.max()) >= 0.0
    assert float(pooled.for_video(0).combined.max()) < float(pooled.for_video(1).combined.max())


def test_which_videos_talk_about_x_lists_moments_per_video() -> None:
    r = refs()
    q = "Which of my videos talks about gravity?"
    assert WHICH.search(q)
    pooled = pool_scores(r, q, NO_VECTORS)
    found = videos_about(r, q, NO_VECTORS, pooled)
    assert [f.name for f in found] == ["physics lecture.mp4"]
    starts = sorted(m.start for m in found[0].moments)
    assert starts[0] == pytest.approx(12.0) and all(m.video == "physics lecture.mp4" for m in found[0].moments)
    both = videos_about(r, "Which videos mention the earth or the pan?", NO_VECTORS, None)
    assert {f.name for f in both} == {"cooking.mp4", "physics lecture.mp4"}
    assert videos_about(r, "Which video shows a giraffe?", NO_VECTORS, None) == []


def test_a_named_video_narrows_the_question() -> None:
    r = refs()
    assert mentioned_videos("What is said at 0:20 in physics lecture.mp4?", r) == [1]
    assert mentioned_videos("what does the cooking video say about salt", r) == [0]
    assert mentioned_videos("what is said about salt", r) == []


def test_one_prompt_names_each_clip_and_line_by_its_video() -> None:
    r = refs()
    q = "What do the videos say about the earth and the pan?"
    pooled = pool_scores(r, q, NO_VECTORS)
    said = [(0, 12.0, 16.0), (1, 32.0, 36.0)]
    inputs, evidence, focus = plan_multi(
        r, q, [None, None], pooled, [], said, RetrievalSettings(), 800, lambda s, d: 20, lambda t: len(t.split())
    )
    cited = find_video_times(inputs.subtitles)
    assert {v for v, _ in cited} == {"cooking.mp4", "physics lecture.mp4"}
    assert "[cooking.mp4 00:12-00:16] the onions go into the hot pan" in inputs.subtitles
    assert "[physics lecture.mp4 00:32-00:36] the moon orbits the earth" in inputs.subtitles
    assert "cite the video and the time" in inputs.instructions and "[cooking.mp4 02:15]" in inputs.instructions
    assert inputs.duration == 0.0 and focus == said
    assert evidence and all(e.video in ("cooking.mp4", "physics lecture.mp4") for e in evidence)


def test_asked_times_apply_per_video() -> None:
    r = refs()
    q = "What happens at 0:45?"
    tqs = [parse_time_refs(q, x.duration) for x in r]
    inputs, evidence, _focus = plan_multi(
        r, q, tqs, None, [], [], RetrievalSettings(), 800, lambda s, d: 20, lambda t: len(t.split())
    )
    assert {(e.video, e.start) for e in evidence if e.reason == "asked"} == {
        ("cooking.mp4", 40.0),
        ("physics lecture.mp4", 40.0),
    }
    assert "stir the sauce" not in inputs.subtitles  # focused: only lines near 0:45 in each video
    assert "serve the pasta" in inputs.subtitles and "friction slows" in inputs.subtitles


def test_embedding_clips_are_introduced_with_their_video() -> None:
    """The GPU-profile path: clips carry encoder embeddings; each block is introduced with its video's name."""
    from model.assets import smollm2_dir

    builder = PromptBuilder("chatml", smollm2_dir())
    r = refs(embeddings=True)
    q = "Which video talks about gravity?"
    pooled = pool_scores(r, q, NO_VECTORS)
    inputs, _, _ = plan_multi(
        r, q, [None, None], pooled, [], [], RetrievalSettings(top_k=2, overview_clips=1), 1500,
        builder.segment_cost, builder.count_tokens,
    )  # fmt: skip
    layout = builder.layout(inputs)
    text = "".join(p for p in layout if isinstance(p, str))
    blocks = [p for p in layout if isinstance(p, torch.Tensor)]
    assert len(blocks) == len(inputs.segments) >= 2
    assert all(isinstance(s.embeddings, torch.Tensor) for s in inputs.segments)
    assert "[physics lecture.mp4 00:10-00:20]" in text or "[physics lecture.mp4 00:20-00:30]" in text
    assert any("cooking.mp4" in s.video for s in inputs.segments)  # the overview covers every video
    embeds = builder.build(inputs, 16)
    assert embeds.shape[1] == 576 and bool(np.isfinite(embeds.float().numpy()).all())
