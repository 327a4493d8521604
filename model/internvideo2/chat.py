"""InternVideo2-Chat vision side: ViT cut before its last block + Q-Former bridge -> LLM embeddings."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.errors import VideoChatError
from model.internvideo2.bridge import BridgeConfig, QFormerBridge
from model.internvideo2.vit import VisionTransformer, VisionTransformerConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FramesError(VideoChatError):
    """Frames given to an encoder have the wrong shape or type."""


def preprocess_frames(
    frames: np.ndarray | torch.Tensor, size: int = 224, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """uint8 RGB frames `[B, T, H, W, 3]` -> normalised float32 `[B, T, 3, size, size]`.

    Resize is bicubic on [0, 1] floats with antialiasing (torchvision's tensor default): the short side to
    `size`, then a center crop, as the official demo's Resize(size) + CenterCrop(size). Then ImageNet mean/std.
    """
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if not isinstance(frames, torch.Tensor) or frames.ndim != 5 or frames.shape[-1] != 3:
        shape = tuple(frames.shape) if hasattr(frames, "shape") else type(frames).__name__
        raise FramesError(f"Expected uint8 frames shaped [clips, frames, height, width, 3]; got {shape}")
    if frames.dtype != torch.uint8:
        raise FramesError(f"Expected uint8 RGB frames; got dtype {frames.dtype}")
    b, t, h, w, _ = frames.shape
    if min(b, t, h, w) == 0:
        raise FramesError(f"Empty frames array {tuple(frames.shape)}")
    x = frames.to(device).reshape(b * t, h, w, 3).permute(0, 3, 1, 2).float().div_(255.0)  # [BT, 3, H, W]
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
        top, left = (nh - size) // 2, (nw - size) // 2
        x = x[:, :, top : top + size, left : left + size]
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x.reshape(b, t, 3, size, size)


class InternVideo2ChatEncoder(nn.Module):
    """`vision_encoder` (first depth-1 blocks) + `bridge` (vision_layernorm, Q-Former, project_up)."""

    def __init__(self, vit_cfg: VisionTransformerConfig, bridge_cfg: BridgeConfig, frames_per_clip: int = 8) -> None:
        super().__init__()
        self.vit_cfg = vit_cfg
        self.bridge_cfg = bridge_cfg
        self.frames_per_clip = frames_per_clip
        self.batch_size = 8  # clips per forward; bounds activation memory for long videos
        self.pad_batches = False  # pad every chunk to `batch_size` (set by `compile_for_inference`)
        # the chat model uses the output of block depth-2 (penultimate of the full ViT): build only those blocks
        self.vision_encoder = VisionTransformer(vit_cfg, num_blocks=vit_cfg.depth - 1)
        self.bridge = QFormerBridge(bridge_cfg)

    @property
    def device(self) -> torch.device:
        return self.bridge.project_up.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.bridge.project_up.weight.dtype

    @property
    def llm_hidden(self) -> int:
        return self.bridge_cfg.llm_hidden

    @property
    def num_queries(self) -> int:
        return self.bridge_cfg.num_queries

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels `[B, T, 3, H, W]` normalised -> `[B, 96, llm_hidden]`."""
        return self.bridge(self.vision_encoder(pixels.to(self.device, self.dtype)))

    def preprocess(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        return preprocess_frames(frames, self.vit_cfg.img_size, self.device)

    def compile_for_inference(self, batch_size: int | None = None, warmup: bool = True) -> None:
        """torch.compile the ViT blocks for one static shape, `batch_size` clips of `frames_per_clip` frames.

        `encode` then pads every smaller chunk (a video's last batch, a one-clip re-sample) to that size, so no new
        shape reaches the compiled blocks and nothing recompiles in the middle of an upload (each clip is computed
        on its own: padding rows change no other row). `warmup` runs one batch now, so the compile is paid at load.
        """
        if batch_size is not None:
            self.batch_size = max(1, int(batch_size))
        self.vision_encoder.compile_blocks(dynamic=False)
        self.pad_batches = True
        if warmup:
            size = self.vit_cfg.img_size
            pixels = torch.zeros(self.batch_size, self.frames_per_clip, 3, size, size, device=self.device)
            with torch.inference_mode():
                self(pixels)

    @torch.inference_mode()
    def encode(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 `[B, T, H, W, 3]` (or normalised float `[B, T, 3, 224, 224]`) -> float32 CPU `[B, 96, llm_hidden]`."""
        if isinstance(frames, torch.Tensor) and frames.is_floating_point():
            if frames.ndim != 5 or frames.shape[2] != 3:
                raise FramesError(f"Expected normalised frames [clips, frames, 3, H, W]; got {tuple(frames.shape)}")
            pixels = frames
        else:
            pixels = None
        n = frames.shape[0]
        outs = []
        for i in range(0, n, self.batch_size):
            chunk = (
                pixels[i : i + self.batch_size]
                if pixels is not None
                else self.preprocess(frames[i : i + self.batch_size])
            )
            rows = chunk.shape[0]
            if self.pad_batches and rows < self.batch_size:  # the compiled shape: repeat the last clip
                chunk = torch.cat([chunk, chunk[-1:].expand(self.batch_size - rows, *chunk.shape[1:])])
            outs.append(self(chunk)[:rows].float().cpu())
        return torch.cat(outs, dim=0)
