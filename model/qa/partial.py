"""Questions about a video still being ingested: say how far the memory has seen, and what to do with asked times
it has not seen yet (wait for them when they come soon, else say they are not ingested yet).

Pure: the Assistant decides about waiting (it knows the ingest job); these functions only read times.
"""

from __future__ import annotations

from dataclasses import replace

from model.memory.records import VideoMemory
from model.qa.timeparse import TimeQuery, TimeWindow
from model.timecode import format_time

AHEAD_S = 1.0  # a moment is answerable once the memory has seen this far past it


def seen_note(memory: VideoMemory) -> str:
    """'I have seen up to 12:30 of 1:00:00 so far; the rest is still being processed.' ('' when complete)."""
    if memory.complete:
        return ""
    d = memory.duration
    return (
        f"I have seen up to {format_time(memory.seen_until, d)} of {format_time(d, d)} so far; "
        "the rest of the video is still being processed."
    )


def needed_until(window: TimeWindow, duration: float) -> float:
    """How far the memory must have seen to answer about `window`."""
    end = window.start + AHEAD_S if window.is_moment else window.end
    return min(float(duration), end)


def split_unseen(tq: TimeQuery, seen: float) -> tuple[TimeQuery, list[TimeWindow]]:
    """(the query with only windows that start before `seen`, ranges cut at `seen`; the windows not seen at all)."""
    kept: list[TimeWindow] = []
    unseen: list[TimeWindow] = []
    for w in tq.windows:
        if w.start >= seen:
            unseen.append(w)
        elif not w.is_moment and w.end > seen:
            kept.append(replace(w, end=seen))
        else:
            kept.append(w)
    return replace(tq, windows=kept), unseen


def unseen_note(unseen: list[TimeWindow], memory: VideoMemory, eta_s: float | None = None) -> str:
    """'03:20 is not ingested yet (I have seen up to 01:00 so far); ask again in about 2 minutes.'"""
    if not unseen:
        return ""
    d = memory.duration
    times = ", ".join(format_time(w.start, d) for w in unseen)
    verb = "is" if len(unseen) == 1 else "are"
    note = f"{times} {verb} not ingested yet (I have seen up to {format_time(memory.seen_until, d)} so far)"
    if eta_s is not None and eta_s > 0:
        note += f"; ask again in about {_human(eta_s)}"
    return note + "."


def waited_note(window: TimeWindow, seconds: float, memory: VideoMemory) -> str:
    return f"Waited {seconds:.0f} s for {format_time(window.start, memory.duration)} to be ingested."


def _human(seconds: float) -> str:
    if seconds < 90:
        return f"{max(5, round(seconds / 5) * 5):.0f} seconds"
    return f"{round(seconds / 60):.0f} minutes"
