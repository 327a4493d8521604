"""CTranslate2 Whisper folder -> openai-whisper `.pt` checkpoint, so openai-whisper can run offline.

openai-whisper's `load_model` downloads its checkpoints; the only Whisper weights that install offline ship
in CTranslate2 format (faster-whisper's). Those folders hold the unquantized float16 weights of the same
network, so they convert back losslessly: read `model.bin` (CTranslate2's binary spec format), split the fused
q/k/v projections, rename to openai-whisper's state dict and keep the alignment heads from `config.json`.
The tokenizer is not needed: openai-whisper ships its own (same token ids).
"""

from __future__ import annotations

import json
import logging
import re
import struct
from pathlib import Path

import numpy as np

from model.errors import ModelAccessError

log = logging.getLogger(__name__)

# Order of CTranslate2's DataType enum (include/ctranslate2/types.h).
_CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
_SUPPORTED_BINARY_VERSIONS = (5, 6)


def read_ct2_model(path: str | Path) -> dict[str, np.ndarray]:
    """Every variable of a CTranslate2 `model.bin` as numpy arrays (aliases resolved)."""
    path = Path(path)
    buf = memoryview(path.read_bytes())
    offset = 0

    def take(fmt: str):
        nonlocal offset
        values = struct.unpack_from("<" + fmt, buf, offset)
        offset += struct.calcsize("<" + fmt)
        return values[0]

    def string() -> str:
        nonlocal offset
        n = take("H")  # length including the trailing NUL
        text = bytes(buf[offset : offset + n - 1]).decode("utf-8")
        offset += n
        return text

    try:
        version = take("I")
        if version not in _SUPPORTED_BINARY_VERSIONS:
            raise ModelAccessError(f"{path}: CTranslate2 binary version {version} is not supported (5 or 6).")
        spec_name = string()
        take("I")  # spec revision
        variables: dict[str, np.ndarray] = {}
        for _ in range(take("I")):
            name = string()
            shape = [take("I") for _ in range(take("B"))]
            type_id = take("B")
            num_bytes = take("I")
            if type_id >= len(_CT2_DTYPES):
                raise ModelAccessError(f"{path}: unknown data type id {type_id} for {name}.")
            dtype = _CT2_DTYPES[type_id]
            raw = bytes(buf[offset : offset + num_bytes])
            offset += num_bytes
            if len(raw) != num_bytes:
                raise struct.error(f"{name} needs {num_bytes} bytes, {len(raw)} left")
            if dtype == "bfloat16":  # numpy has no bfloat16: widen the 16 high bits to float32
                array = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                array = np.frombuffer(raw, dtype)
            variables[name] = array.reshape(shape)
        for _ in range(take("I")):
            alias, target = string(), string()
            variables[alias] = variables[target]
    except struct.error as err:
        raise ModelAccessError(f"{path} is truncated or not a CTranslate2 model: {err}") from None
    if offset != len(buf):
        raise ModelAccessError(f"{path}: {len(buf) - offset} unexpected bytes after the model.")
    if spec_name != "WhisperSpec":
        raise ModelAccessError(f"{path} is a CTranslate2 {spec_name}, not a Whisper model.")
    return variables


def _float(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype not in (np.float16, np.float32):
        raise ModelAccessError(
            f"The CTranslate2 variable {name} is {array.dtype} (a quantized model); only float16/float32 "
            f"CTranslate2 models convert back to openai-whisper."
        )
    return array.astype(np.float32)


def _layer_count(variables: dict[str, np.ndarray], prefix: str) -> int:
    pattern = re.compile(rf"^{prefix}/layer_(\d+)/")
    layers = [int(m.group(1)) for name in variables if (m := pattern.match(name))]
    if not layers:
        raise ModelAccessError(f"The CTranslate2 Whisper model has no {prefix} layers.")
    return 1 + max(layers)


def ct2_to_openai_state(variables: dict[str, np.ndarray]) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """(dims, state_dict) of openai-whisper's `Whisper` for the variables of a CTranslate2 `WhisperSpec`."""
    state: dict[str, np.ndarray] = {}

    def get(name: str) -> np.ndarray:
        if name not in variables:
            raise ModelAccessError(f"The CTranslate2 Whisper model has no variable {name}.")
        return _float(variables[name], name)

    def linear(dst: str, src: str, bias: bool = True) -> None:
        state[f"{dst}.weight"] = get(f"{src}/weight")
        if bias:
            state[f"{dst}.bias"] = get(f"{src}/bias")

    def norm(dst: str, src: str) -> None:
        state[f"{dst}.weight"] = get(f"{src}/gamma")
        state[f"{dst}.bias"] = get(f"{src}/beta")

    def split(dst: str, names: tuple[str, ...], src: str) -> None:
        """A fused projection (rows of q, k, v stacked) back into openai-whisper's separate layers."""
        weight, bias = get(f"{src}/weight"), get(f"{src}/bias")
        n = weight.shape[0] // len(names)
        for i, part in enumerate(names):
            state[f"{dst}.{part}.weight"] = weight[i * n : (i + 1) * n]
            if part == "key":  # openai-whisper's key projection has no bias; the fused one holds zeros there
                if np.any(bias[i * n : (i + 1) * n]):
                    raise ModelAccessError("The CTranslate2 Whisper model has a key bias; openai-whisper has none.")
            else:
                state[f"{dst}.{part}.bias"] = bias[i * n : (i + 1) * n]

    n_audio_layer = _layer_count(variables, "encoder")
    n_text_layer = _layer_count(variables, "decoder")
    for conv in ("conv1", "conv2"):
        linear(f"encoder.{conv}", f"encoder/{conv}")
    state["encoder.positional_embedding"] = get("encoder/position_encodings/encodings")

    def self_attention_and_mlp(dst: str, src: str) -> None:  # what encoder and decoder blocks share
        norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        split(f"{dst}.attn", ("query", "key", "value"), f"{src}/self_attention/linear_0")
        linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")
        norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")
        linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
        linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")

    for i in range(n_audio_layer):
        self_attention_and_mlp(f"encoder.blocks.{i}", f"encoder/layer_{i}")
    norm("encoder.ln_post", "encoder/layer_norm")

    state["decoder.token_embedding.weight"] = get("decoder/embeddings/weight")
    state["decoder.positional_embedding"] = get("decoder/position_encodings/encodings")
    for i in range(n_text_layer):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        self_attention_and_mlp(dst, src)
        norm(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
        linear(f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
        split(f"{dst}.cross_attn", ("key", "value"), f"{src}/attention/linear_1")
        linear(f"{dst}.cross_attn.out", f"{src}/attention/linear_2")
    norm("decoder.ln", "decoder/layer_norm")

    projection = variables.get("decoder/projection/weight")
    if projection is not None and not np.array_equal(projection, variables["decoder/embeddings/weight"]):
        raise ModelAccessError("The CTranslate2 Whisper model has an untied output projection; openai-whisper ties it.")

    conv1 = state["encoder.conv1.weight"]  # [n_audio_state, n_mels, 3]
    dims = {
        "n_mels": int(conv1.shape[1]),
        "n_audio_ctx": int(state["encoder.positional_embedding"].shape[0]),
        "n_audio_state": int(conv1.shape[0]),
        "n_audio_head": int(variables["encoder/num_heads"]),
        "n_audio_layer": n_audio_layer,
        "n_vocab": int(state["decoder.token_embedding.weight"].shape[0]),
        "n_text_ctx": int(state["decoder.positional_embedding"].shape[0]),
        "n_text_state": int(state["decoder.token_embedding.weight"].shape[1]),
        "n_text_head": int(variables["decoder/num_heads"]),
        "n_text_layer": n_text_layer,
    }
    return dims, state


def convert_ct2_to_openai(ct2_dir: str | Path, out_file: str | Path) -> Path:
    """Write an openai-whisper checkpoint (`dims`, `model_state_dict`, `alignment_heads`) for a CTranslate2 folder.

    The state dict is stored in float16 (as openai-whisper's own checkpoints); `alignment_heads` is a list of
    [layer, head] pairs from the folder's config.json (openai-whisper's word timestamps need them).
    """
    import torch

    ct2_dir, out_file = Path(ct2_dir), Path(out_file)
    if not (ct2_dir / "model.bin").is_file():
        raise ModelAccessError(f"{ct2_dir} is not a CTranslate2 Whisper folder: no model.bin inside.")
    dims, state = ct2_to_openai_state(read_ct2_model(ct2_dir / "model.bin"))
    config_path = ct2_dir / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    heads = [[int(layer), int(head)] for layer, head in config.get("alignment_heads") or []]
    checkpoint = {
        "dims": dims,
        "model_state_dict": {k: torch.from_numpy(np.ascontiguousarray(v)).half() for k, v in state.items()},
        "alignment_heads": heads,
    }
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(f".{out_file.name}.tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(out_file)  # atomic: a reader never sees half a checkpoint
    return out_file


def openai_checkpoint_for(ct2_dir: str | Path, name: str) -> Path:
    """The converted checkpoint of a CTranslate2 folder, cached under the data dir (built once)."""
    from model.assets import data_dir

    ct2_dir = Path(ct2_dir)
    model_bin = ct2_dir / "model.bin"
    stat = model_bin.stat()
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "model"
    out = data_dir() / "models" / "openai-whisper" / f"{safe}-{stat.st_size}-{int(stat.st_mtime)}.pt"
    if not out.is_file():
        log.warning("Converting the CTranslate2 Whisper model %s for openai-whisper into %s (once)", ct2_dir, out)
        convert_ct2_to_openai(ct2_dir, out)
    return out
