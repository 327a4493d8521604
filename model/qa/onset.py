"""When on-screen text first shows: from the OCR'd frames, then a binary search on single decoded frames."""

from __future__ import annotations

import logging

from model.errors import VideoChatError
from model.media import sample_window
from model.memory.records import ClipRecord, VideoMemory
from model.protocols import OCR
from model.qa.search import coarse_onset, words

log = logging.getLogger(__name__)


class OnsetFinder:
    """`find(memory, clip, question) -> (time, line)`: the `Onset` that `search.find_moments` takes.

    Ingest OCR'd a few frames per clip, so the first frame with the text is up to a clip late; this decodes
    frames between the previous OCR'd frame and that one and reads them until the onset is known to ~1 s.
    """

    def __init__(self, ocr: OCR | None, resolution_s: float = 1.0) -> None:
        self.ocr = ocr
        self.resolution_s = resolution_s

    def __call__(self, memory: VideoMemory, clip: ClipRecord, question: str) -> tuple[float, str]:
        best_t, best_line = coarse_onset(memory, clip, question)
        target = set(words(question)) & set(words(best_line))
        if self.ocr is None or not target:
            return best_t, best_line
        # The previous moment OCR looked at: an earlier frame of this clip or the previous clip's last one.
        earlier = [t for t in clip.ocr_times if t < best_t]
        prev_clip = memory.clips[clip.index - 1] if clip.index > 0 else None
        if earlier:
            lo = max(earlier)
        elif prev_clip is not None and prev_clip.ocr_times:
            lo = max(prev_clip.ocr_times)
        else:
            lo = clip.start
        if lo >= best_t:
            return best_t, best_line
        if prev_clip is not None and not earlier and target & set(words(" ".join(prev_clip.ocr))):
            return best_t, best_line  # it was already on screen before this clip
        hi = best_t
        short_side = int(memory.sampling.get("short_side", 224))
        try:
            while hi - lo > self.resolution_s:
                mid = (lo + hi) / 2
                frame = sample_window(str(memory.path), mid, mid, n=1, short_side=short_side)
                seen = set(words(" ".join(t for t, _ in self.ocr.read(frame.images[0]))))
                if target & seen:
                    hi = float(frame.times[0])
                else:
                    lo = max(mid, float(frame.times[0]))
        except (VideoChatError, OSError, ValueError) as err:  # the file moved or changed: keep the coarse time
            log.info("could not refine on-screen onset: %s", err)
        return hi, best_line
