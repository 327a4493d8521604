"""faster-whisper that cannot run on CUDA (CTranslate2's wheel links CUDA 12 libraries; a CUDA 13 stack has none)
hands over to openai-whisper at load, and the runtime line says so.

This machine has no CUDA at all, so asking CTranslate2 for device="cuda" fails for real (the same exception path
as a missing libcublas.so.12); the fallback then runs on the CPU, where torch is.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest

from model.profiles import TINY, SpeechSpec
from model.speech import build_transcriber
from model.speech.transcriber import FasterWhisperTranscriber, WhisperBackendError
from tools import synth

SENTENCE = "The red ball rolls under the kitchen table."


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def test_check_transcribes_one_second_on_a_working_backend() -> None:
    model = FasterWhisperTranscriber(SpeechSpec(model="packaged:tiny.en"), "cpu")
    model.check()  # the load-time check runs the real encoder + decoder and raises nothing here


@pytest.mark.slow  # openai-whisper beam search on 2 busy cores: about a minute
def test_faster_whisper_failing_on_cuda_falls_back_to_openai_whisper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIDEOCHAT_HOME", str(tmp_path))  # the one-off CTranslate2 -> .pt conversion stays private
    with pytest.raises(WhisperBackendError, match="cannot load on cuda"):
        FasterWhisperTranscriber(SpeechSpec(model="packaged:tiny.en", compute_type="float16"), "cuda")

    model = build_transcriber(SpeechSpec(model="packaged:tiny.en", compute_type="float16"), "cuda")
    assert model.backend == "openai-whisper" and model.device == "cpu"
    assert model.model_name == "packaged:tiny.en" and Path(model.model_path).is_relative_to(tmp_path)
    assert model.fallback_reason is not None and "faster-whisper cannot load on cuda" in model.fallback_reason
    video = synth.make_speech_video(tmp_path / "said.mp4", [(0.5, SENTENCE)], duration=5.0, clock=False)
    heard = model.transcribe(video.path).text
    assert difflib.SequenceMatcher(a=_words(heard), b=_words(SENTENCE)).ratio() >= 0.8, heard

    # The runtime line (UI and logs) names the backend that really runs, and why.
    from model.assets import smollm2_dir
    from model.llm import PromptBuilder
    from model.llm.hf import TransformersEngine
    from model.runtime import Runtime

    llm_dir = smollm2_dir()
    runtime = Runtime(
        profile=TINY,
        device="cuda",
        engine=TransformersEngine(llm_dir),
        prompt_builder=PromptBuilder("chatml", llm_dir),
        llm_dir=llm_dir,
        transcriber=model,
    )
    line = runtime.describe()
    assert "openai-whisper on cpu (fallback: faster-whisper cannot load on cuda" in line, line


def test_cpu_keeps_faster_whisper_without_the_check() -> None:
    model = build_transcriber(SpeechSpec(model="packaged:tiny.en"), "cpu")
    assert model.backend == "faster-whisper" and model.fallback_reason is None
