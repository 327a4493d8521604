"""`launch.py bench sample VIDEO --json`: our sampler against raw decord get_batch on the same indices."""

from __future__ import annotations

import argparse
import time

import numpy as np

from model.media.probe import _file_key, probe
from model.media.sampling import output_size, sample_indices, segment_indices


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="a video file")
    parser.add_argument("--frames", type=int, default=32, help="frames per call (segment midpoints)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per side (best is reported)")
    parser.add_argument("--short-side", type=int, default=224)
    parser.add_argument("--backend", default="decord", choices=["auto", "decord", "pyav"], help="our sampler's")


def run(args: argparse.Namespace) -> dict:
    import decord

    info = probe(args.video)  # warms the frame-table cache, as the app does once per upload
    path = _file_key(args.video)[0]
    indices = segment_indices(info.frame_count, args.frames)
    stored = (info.height, info.width) if info.rotation in (90, -90) else (info.width, info.height)
    w, h = output_size(*stored, args.short_side)

    def raw() -> np.ndarray:  # what decord alone does: open resized, get_batch, to numpy
        reader = decord.VideoReader(path, ctx=decord.cpu(0), width=w, height=h, num_threads=0)
        return reader.get_batch(indices).asnumpy()

    def ours() -> np.ndarray:
        return sample_indices(path, indices, short_side=args.short_side, backend=args.backend).images

    timings: dict[str, list[float]] = {"decord_raw": [], "ours": []}
    for _ in range(args.repeats):  # interleaved so both sides see the same page cache and CPU load
        for name, fn in (("decord_raw", raw), ("ours", ours)):
            t0 = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in timings.items()}
    fps = {k: args.frames / v for k, v in best.items()}
    return {
        "video": str(args.video),
        "info": info.to_dict(),
        "frames": args.frames,
        "short_side": args.short_side,
        "backend": args.backend,
        "repeats": args.repeats,
        "seconds": timings,
        "frames_per_s": fps,
        "ratio_ours_vs_decord": fps["ours"] / fps["decord_raw"],
        "target_ratio": 0.9,
    }
