"""InternVideo2 vision transformer (the 1B/6B video ViT and its distilled variants), in plain PyTorch.

Parameter names match the official checkpoints (`patch_embed.proj`, `cls_token`, `pos_embed`,
`img_pos_embed`, `blocks.N.{norm1,attn.{qkv,q_norm,k_norm,proj},ls1,norm2,mlp.{fc1,fc2},ls2}`), so the
public weights load unchanged. Attention runs through `F.scaled_dot_product_attention`; flash-attn is
used only when importable and the inputs are half precision on CUDA.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.errors import ConfigError

try:  # optional speed-up only; never required
    from flash_attn import flash_attn_func  # type: ignore[import-not-found]
except Exception:
    flash_attn_func = None


@dataclass(frozen=True)
class VisionTransformerConfig:
    width: int
    depth: int
    heads: int
    mlp_hidden: int
    img_size: int = 224
    patch_size: int = 14
    in_chans: int = 3
    num_frames: int = 8  # frames of the stored `pos_embed` table (T0)
    sep_image_video_pos_embed: bool = True  # separate `img_pos_embed` used when T == 1
    qk_norm: bool = True
    norm_eps: float = 1e-6
    init_values: float = 1e-5  # LayerScale init
    attn_pool_heads: int = 16  # stage-2 attention-pooling head
    clip_embed_dim: int = 768  # stage-2 pooled width

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size

    def replace(self, **changes: object) -> VisionTransformerConfig:
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, VisionTransformerConfig] = {
    "1b": VisionTransformerConfig(width=1408, depth=40, heads=16, mlp_hidden=6144),
    "6b": VisionTransformerConfig(width=3200, depth=48, heads=25, mlp_hidden=12800, attn_pool_heads=25),
    "s14": VisionTransformerConfig(
        width=384, depth=12, heads=6, mlp_hidden=1536, attn_pool_heads=6, clip_embed_dim=384
    ),
    "b14": VisionTransformerConfig(
        width=768, depth=12, heads=12, mlp_hidden=3072, attn_pool_heads=12, clip_embed_dim=512
    ),
    "l14": VisionTransformerConfig(width=1024, depth=24, heads=16, mlp_hidden=4096, clip_embed_dim=768),
    # test-sized: 224 px, patch 14 -> 256 tokens per frame, head_dim 16
    "tiny": VisionTransformerConfig(
        width=64, depth=4, heads=4, mlp_hidden=256, num_frames=4, attn_pool_heads=4, clip_embed_dim=48
    ),
}


def vit_preset(name: str) -> VisionTransformerConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"Unknown InternVideo2 ViT preset {name!r}; choose one of: {', '.join(PRESETS)}") from None


# ---------------------------------------------------------------------------------------------- position tables


def _sincos_1d(dim: int, pos: np.ndarray) -> np.ndarray:
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.einsum("m,d->md", pos.reshape(-1).astype(np.float64), omega)  # [M, dim/2]
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_3d_pos_embed(width: int, grid: int, frames: int) -> torch.Tensor:
    """[1 + frames*grid*grid, width] table: 3/4 of channels encode (h, w), 1/4 time; cls row zero."""
    if width % 4:
        raise ConfigError(f"ViT width {width} must be divisible by 4 for the 3-D sin-cos table")
    d_space, d_time = width // 4 * 3, width // 4
    gw, gh = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))  # w first
    space = np.concatenate([_sincos_1d(d_space // 2, gw), _sincos_1d(d_space // 2, gh)], axis=1)  # [g*g, 3C/4]
    time = _sincos_1d(d_time, np.arange(frames, dtype=np.float32))  # [T, C/4]
    table = np.concatenate(
        [np.repeat(time[:, None], grid * grid, axis=1), np.repeat(space[None], frames, axis=0)], axis=-1
    ).reshape(frames * grid * grid, width)
    table = np.concatenate([np.zeros((1, width)), table], axis=0)
    return torch.from_numpy(table).float()


def interpolate_pos_embed(table: torch.Tensor, frames0: int, frames: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """Resample a `[1, 1 + T0*g*g, C]` table to T frames and a (grid_h, grid_w) grid.

    Linear over time, bicubic over space (align_corners=False, as the official checkpoint converter);
    the cls row is untouched. Computed in float32.
    """
    cls_row, rest = table[:, :1], table[:, 1:].float()
    c = rest.shape[-1]
    grid0 = math.isqrt(rest.shape[1] // frames0)
    if grid0 * grid0 * frames0 != rest.shape[1]:
        raise ConfigError(f"pos_embed of {rest.shape[1]} tokens is not {frames0} frames of a square grid")
    x = rest.reshape(frames0, grid0 * grid0, c)  # [T0, L0, C]
    if frames != frames0:
        x = x.permute(1, 2, 0)  # [L0, C, T0]
        x = F.interpolate(x, size=frames, mode="linear", align_corners=False)
        x = x.permute(2, 0, 1)  # [T, L0, C]
    if (grid_h, grid_w) != (grid0, grid0):
        x = x.reshape(frames, grid0, grid0, c).permute(0, 3, 1, 2)  # [T, C, g0, g0]
        x = F.interpolate(x, size=(grid_h, grid_w), mode="bicubic", align_corners=False)
        x = x.permute(0, 2, 3, 1)  # [T, gh, gw, C]
    x = x.reshape(1, -1, c).to(table.dtype)
    return torch.cat([cls_row, x], dim=1)


# ---------------------------------------------------------------------------------------------- layers


class RMSNorm(nn.Module):
    """RMSNorm computed in float32, weight applied in the input dtype (as the official InternVL norm)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)


class Attention(nn.Module):
    naive: bool = False  # set on the class by the benchmark to compare with the naive path

    def __init__(self, cfg: VisionTransformerConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.head_dim = cfg.head_dim
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width, bias=False)
        # qk-norm over the full width (all heads flattened), before the head split
        self.q_norm = RMSNorm(cfg.width, cfg.norm_eps) if cfg.qk_norm else nn.Identity()
        self.k_norm = RMSNorm(cfg.width, cfg.norm_eps) if cfg.qk_norm else nn.Identity()
        self.proj = nn.Linear(cfg.width, cfg.width, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # 3 x [B, N, C]
        q, k = self.q_norm(q), self.k_norm(k)
        if self.naive:  # benchmark baseline: materialises the [B, heads, N, N] scores
            q, k, v = (t.reshape(b, n, self.heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
            scores = (q * self.head_dim**-0.5) @ k.transpose(-2, -1)  # [B, H, N, N]
            out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c)
        elif flash_attn_func is not None and x.is_cuda and x.dtype in (torch.float16, torch.bfloat16):
            shape = (b, n, self.heads, self.head_dim)
            out = flash_attn_func(q.reshape(shape), k.reshape(shape), v.reshape(shape)).reshape(b, n, c)
        else:
            q, k, v = (t.reshape(b, n, self.heads, self.head_dim).transpose(1, 2) for t in (q, k, v))  # [B, H, N, D]
            out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm block: x + ls1 * attn(norm1(x)), then x + ls2 * mlp(norm2(x)). LayerScale is a bare vector."""

    def __init__(self, cfg: VisionTransformerConfig) -> None:
        super().__init__()
        self.norm1 = RMSNorm(cfg.width, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.ls1 = nn.Parameter(torch.full((cfg.width,), cfg.init_values))
        self.norm2 = RMSNorm(cfg.width, cfg.norm_eps)
        self.mlp = Mlp(cfg.width, cfg.mlp_hidden)
        self.ls2 = nn.Parameter(torch.full((cfg.width,), cfg.init_values))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1 * self.attn(self.norm1(x))
        return x + self.ls2 * self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, cfg: VisionTransformerConfig) -> None:
        super().__init__()
        k = (1, cfg.patch_size, cfg.patch_size)  # tubelet 1
        self.proj = nn.Conv3d(cfg.in_chans, cfg.width, kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, 3, T, H, W] -> [B, C, T, gh, gw] -> [B, T*gh*gw, C] (time-major, then rows, then columns)
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """InternVideo2 ViT. `num_blocks` builds only the first blocks (the chat model uses 39 of 40)."""

    def __init__(self, cfg: VisionTransformerConfig, num_blocks: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_blocks = cfg.depth if num_blocks is None else num_blocks
        if not 1 <= self.num_blocks <= cfg.depth:
            raise ConfigError(f"num_blocks must be in 1..{cfg.depth}, got {self.num_blocks}")
        tokens = cfg.grid * cfg.grid
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + cfg.num_frames * tokens, cfg.width))
        if cfg.sep_image_video_pos_embed:
            self.img_pos_embed = nn.Parameter(torch.zeros(1, 1 + tokens, cfg.width))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(self.num_blocks))
        self._pos_cache: dict[tuple, torch.Tensor] = {}
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        if self.pos_embed.is_meta:
            return
        cfg = self.cfg
        self.pos_embed.copy_(sincos_3d_pos_embed(cfg.width, cfg.grid, cfg.num_frames)[None])
        if cfg.sep_image_video_pos_embed:
            self.img_pos_embed.copy_(sincos_3d_pos_embed(cfg.width, cfg.grid, 1)[None])
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))

    def clear_cache(self) -> None:
        self._pos_cache.clear()

    def compile_blocks(self, **options: object) -> None:
        """torch.compile each block in place: fuses the fp32 RMSNorm, GELU and LayerScale element-wise work
        around the matmuls (GPU inference; weights and state-dict names are unchanged)."""
        for blk in self.blocks:
            blk.compile(**options)

    def position_table(self, frames: int, grid_h: int, grid_w: int) -> torch.Tensor:
        """`[1, 1 + T*gh*gw, C]` table for this input size; cached at inference (keyed by the weights too)."""
        cfg = self.cfg
        if frames == 1 and cfg.sep_image_video_pos_embed:
            table, frames0 = self.img_pos_embed, 1
        elif frames == 1:  # no image table stored: the official fallback averages the video table over time
            rest = self.pos_embed[:, 1:].reshape(1, cfg.num_frames, -1, cfg.width).mean(1)
            table, frames0 = torch.cat([self.pos_embed[:, :1], rest], dim=1), 1
        else:
            table, frames0 = self.pos_embed, cfg.num_frames
        if frames == frames0 and grid_h == grid_w == cfg.grid:
            return table
        cacheable = not torch.is_grad_enabled() or not table.requires_grad
        key = (frames, grid_h, grid_w, table.data_ptr(), table._version, table.dtype, table.device)
        if cacheable and key in self._pos_cache:
            return self._pos_cache[key]
        out = interpolate_pos_embed(table, frames0, frames, grid_h, grid_w)
        if cacheable:
            self._pos_cache = {k: v for k, v in self._pos_cache.items() if k[3] == key[3] and k[4] == key[4]}
            self._pos_cache[key] = out.detach()
        return out

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames `[B, T, 3, H, W]` (normalised) -> tokens `[B, 1 + T*(H/p)*(W/p), C]` after the built blocks."""
        if frames.ndim != 5 or frames.shape[2] != self.cfg.in_chans:
            raise ConfigError(f"expected frames [B, T, {self.cfg.in_chans}, H, W], got {tuple(frames.shape)}")
        b, t, _, h, w = frames.shape
        p = self.cfg.patch_size
        if h % p or w % p:
            raise ConfigError(f"frame size {h}x{w} is not a multiple of the patch size {p}")
        dtype = self.patch_embed.proj.weight.dtype
        x = self.patch_embed(frames.to(dtype).transpose(1, 2))  # [B, T*gh*gw, C]
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1)  # [B, 1 + T*gh*gw, C]
        x = x + self.position_table(t, h // p, w // p)
        for blk in self.blocks:
            x = blk(x)
        return x


def vit_flops(cfg: VisionTransformerConfig, frames: int, num_blocks: int, img_size: int = 224) -> float:
    """Forward FLOPs (2 per multiply-add) of one clip: patch embed + blocks (matmuls and attention)."""
    g = img_size // cfg.patch_size
    n = 1 + frames * g * g
    c = cfg.width
    patch = 2 * frames * g * g * (cfg.in_chans * cfg.patch_size**2) * c
    per_block = 2 * n * (3 * c * c + c * c + 2 * c * cfg.mlp_hidden) + 2 * 2 * n * n * c
    return float(patch + num_blocks * per_block)
