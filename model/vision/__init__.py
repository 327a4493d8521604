"""Vision models beside InternVideo2: on-screen text (OCR)."""

from model.vision.ocr import OCRReader

__all__ = ["OCRReader"]
