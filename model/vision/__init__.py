"""Vision models beside InternVideo2: on-screen text (OCR) and visual tags (COCO objects + ImageNet labels)."""

from model.vision.ocr import OCRReader
from model.vision.tags import Tag, TaggerConfig, VisualTagger

__all__ = ["OCRReader", "Tag", "TaggerConfig", "VisualTagger"]
