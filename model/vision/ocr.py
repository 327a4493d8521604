"""On-screen text with the packaged RapidOCR (PP-OCRv4 ONNX models shipped in rapidocr_onnxruntime)."""

from __future__ import annotations

import numpy as np

from model.errors import ModelAccessError


class OCRReader:
    """`read(image uint8 [H, W, 3] RGB) -> [(text, confidence), ...]` in reading order (top to bottom)."""

    def __init__(self, engine, min_confidence: float = 0.5, min_single_char_confidence: float = 0.9) -> None:
        self.engine = engine
        self.min_confidence = min_confidence
        # A lone character is what the recogniser makes of texture (a cat's fur read as "福", a cup rim as "O"):
        # kept only when the recogniser is sure; a line with no letter or digit at all ("■") is never text.
        self.min_single_char_confidence = min_single_char_confidence

    @classmethod
    def load(cls, min_confidence: float = 0.5) -> OCRReader:
        from model.offline import no_phoning_home

        no_phoning_home()  # onnxruntime reads ORT_DISABLE_TELEMETRY when it starts: before the import
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as err:
            raise ModelAccessError("OCR needs the packaged rapidocr-onnxruntime; run `bash scripts/setup.sh`.") from err
        return cls(RapidOCR(), min_confidence=min_confidence)

    def read(self, image: np.ndarray) -> list[tuple[str, float]]:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"OCRReader.read wants uint8 [H, W, 3] RGB, got {image.dtype} {image.shape}")
        # RapidOCR treats arrays as BGR (OpenCV order).
        result, _ = self.engine(np.ascontiguousarray(image[:, :, ::-1]))
        if not result:
            return []
        lines = []
        for _box, text, score in result:
            text = str(text).strip()
            if not any(ch.isalnum() for ch in text) or float(score) < self.min_confidence:
                continue
            if len(text) == 1 and float(score) < self.min_single_char_confidence:
                continue
            lines.append((text, float(score)))
        return lines
