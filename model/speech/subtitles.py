"""Transcripts as subtitles: SRT/WebVTT files, and budgeted timed lines for the LLM prompt."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

from model.speech.transcript import Segment, SpeechError, Transcript
from model.timecode import format_range

_WS = re.compile(r"\s+")


def _cue_text(text: str) -> str:
    # One line per cue: a blank line would end the cue early in both formats.
    return _WS.sub(" ", text).strip()


def _clock(seconds: float, sep: str) -> str:
    """HH:MM:SS<sep>mmm (SRT uses ",", WebVTT ".")."""
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _cues(transcript: Transcript) -> list[tuple[float, float, str]]:
    cues = []
    for seg in transcript.segments:
        text = _cue_text(seg.text)
        if not text:
            continue
        start = max(0.0, seg.start)
        end = max(seg.end, start + 0.001)  # players drop zero-length cues
        cues.append((start, end, text))
    return cues


def to_srt(transcript: Transcript) -> str:
    """SubRip: numbered cues, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, a blank line after each."""
    blocks = []
    for i, (start, end, text) in enumerate(_cues(transcript), start=1):
        text = text.replace("-->", "->")  # the only sequence an SRT parser would mistake for timing
        blocks.append(f"{i}\n{_clock(start, ',')} --> {_clock(end, ',')}\n{text}\n")
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(transcript: Transcript) -> str:
    """WebVTT (what browsers and gr.Video show): header, numbered cues, `HH:MM:SS.mmm --> HH:MM:SS.mmm`."""
    blocks = ["WEBVTT\n"]
    for i, (start, end, text) in enumerate(_cues(transcript), start=1):
        blocks.append(f"{i}\n{_clock(start, '.')} --> {_clock(end, '.')}\n{_vtt_escape(text)}\n")
    return "\n".join(blocks)


def save_subtitles(transcript: Transcript, path: str | Path) -> Path:
    """Write `.srt` or `.vtt` (chosen by the extension) as UTF-8."""
    path = Path(path)
    writers = {".srt": to_srt, ".vtt": to_vtt}
    writer = writers.get(path.suffix.lower())
    if writer is None:
        raise SpeechError(f"Cannot write subtitles to {path.name!r}: use a .srt or .vtt file name.")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(writer(transcript), encoding="utf-8")
    return path


def subtitle_line(segment: Segment, duration: float) -> str:
    # The start floored and the end rounded up, so the printed range always covers the speech.
    return f"[{format_range(segment.start, segment.end, duration)}] {_cue_text(segment.text)}"


def _overlaps(seg: Segment, window: tuple[float, float]) -> bool:
    t0, t1 = window
    if t1 <= t0:  # a moment: the segment must contain it
        return seg.start <= t0 <= seg.end
    return seg.start < t1 and seg.end > t0


def subtitle_lines(
    transcript: Transcript,
    budget_tokens: int,
    count_tokens: Callable[[str], int],
    priority_windows: Sequence[tuple[float, float]] = (),
) -> str:
    """Timed lines "[01:05-01:09] text" that fit in `budget_tokens`, in time order, one per line.

    Lines that overlap `priority_windows` (the clips chosen for the question, best first) are taken first,
    in window order; then the other lines in time order while budget remains. A line that does not fit is
    skipped, so a shorter later one can still be used.
    """
    segs = [s for s in transcript.segments if _cue_text(s.text)]
    if budget_tokens <= 0 or not segs:
        return ""
    duration = max(transcript.duration, max(s.end for s in segs))
    lines = [subtitle_line(s, duration) for s in segs]

    def rank(i: int) -> tuple[int, int]:
        hits = [w for w, window in enumerate(priority_windows) if _overlaps(segs[i], window)]
        return (hits[0] if hits else len(priority_windows), i)

    order = sorted(range(len(segs)), key=rank)
    newline = count_tokens("\n") if len(segs) > 1 else 0
    chosen: list[int] = []
    used = 0
    for i in order:
        cost = count_tokens(lines[i]) + (newline if chosen else 0)
        if used + cost <= budget_tokens:
            chosen.append(i)
            used += cost

    def render(idx: list[int]) -> str:
        return "\n".join(lines[i] for i in sorted(idx))

    # Tokenizers may merge across line breaks: check the joined text, dropping the least wanted lines.
    text = render(chosen)
    while chosen and count_tokens(text) > budget_tokens:
        chosen.pop()
        text = render(chosen)
    return text
