"""Randomly initialised networks for the benchmarks: an EDM/DDPM++-style U-Net of any size.

`build_unet(...)` is a `model.factory` (`benchmarks.nets:build_unet`) for the `edm` interface
with `precond: true`: it is EDM's raw network F(c_in x, c_noise, class_labels), x: (N, C, H, W),
c_noise: a scalar or (N,), returning (N, C, H, W) in the dtype of x. The weights are random
(`torch.manual_seed(seed)`): the benchmarks measure speed, not quality.

Sizes: `build_unet()` (channels 64, mult (1, 2, 2), 1 block per level, attention at 8x8) is
about 4 M parameters on 3x32x32, a compute-bound network for a CPU; `EDM_CIFAR10` (channels 128,
mult (2, 2, 2), 4 blocks per level, attention at 16x16) is about 56 M parameters, the size of
EDM's CIFAR-10 DDPM++ network (Karras et al. 2022; Song et al. 2021).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EDM_CIFAR10 = dict(channels=128, channel_mult=(2, 2, 2), num_blocks=4, attn_resolutions=(16,))
SMALL = dict(channels=64, channel_mult=(1, 2, 2), num_blocks=1, attn_resolutions=(8,))
TINY = dict(channels=16, channel_mult=(1, 2), num_blocks=1, attn_resolutions=(8,))


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, c // 4), c)


class PositionalEmbedding(nn.Module):
    """Sinusoidal embedding of c_noise: (N,) -> (N, dim)."""

    def __init__(self, dim: int, max_positions: int = 10000):
        super().__init__()
        freqs = torch.exp(-math.log(max_positions) * torch.arange(dim // 2) / (dim // 2))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        x = t.float()[:, None] * self.freqs[None]
        return torch.cat([x.cos(), x.sin()], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the embedding added in between; optional self-attention."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, attention: bool = False):
        super().__init__()
        self.norm0, self.conv0 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.affine = nn.Linear(emb_dim, c_out)
        self.norm1, self.conv1 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.attention = attention
        if attention:
            self.norm2, self.qkv, self.proj = _norm(c_out), nn.Conv2d(c_out, 3 * c_out, 1), nn.Conv2d(c_out, c_out, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        h = h + self.affine(emb)[:, :, None, None]
        x = self.skip(x) + self.conv1(F.silu(self.norm1(h)))
        if self.attention:
            n, c, hh, ww = x.shape
            q, k, v = self.qkv(self.norm2(x)).reshape(n, 3, c, hh * ww).transpose(2, 3).unbind(1)
            a = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
            x = x + self.proj(a.transpose(1, 2).reshape(n, c, hh, ww))
        return x


class UNet(nn.Module):
    """Encoder-decoder with skip connections; resolution halves per level after the first."""

    def __init__(self, in_channels: int = 3, resolution: int = 32, channels: int = 64,
                 channel_mult: tuple[int, ...] = (1, 2, 2), num_blocks: int = 1,
                 attn_resolutions: tuple[int, ...] = (8,), num_classes: int | None = None):
        super().__init__()
        emb_dim = 4 * channels
        self.embed = PositionalEmbedding(channels)
        self.emb_mlp = nn.Sequential(nn.Linear(channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_embed = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.down, skips, c, res = nn.ModuleList(), [channels], channels, resolution
        for level, mult in enumerate(channel_mult):
            if level > 0:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                res //= 2
                skips.append(c)
            for _ in range(num_blocks):
                self.down.append(ResBlock(c, channels * mult, emb_dim, res in attn_resolutions))
                c = channels * mult
                skips.append(c)
        self.mid = nn.ModuleList([ResBlock(c, c, emb_dim, True), ResBlock(c, c, emb_dim)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for _ in range(num_blocks + 1):
                self.up.append(ResBlock(c + skips.pop(), channels * mult, emb_dim, res in attn_resolutions))
                c = channels * mult
            if level > 0:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
                res *= 2
        self.norm_out, self.conv_out = _norm(c), nn.Conv2d(c, in_channels, 3, padding=1)

    def forward(self, x: Tensor, c_noise: Tensor | float, class_labels: Tensor | None = None) -> Tensor:
        dtype = x.dtype
        x = x.to(self.conv_in.weight.dtype)
        t = torch.as_tensor(c_noise, device=x.device).reshape(-1).expand(x.shape[0])
        emb = self.emb_mlp(self.embed(t).to(x.dtype))
        if self.label_embed is not None and class_labels is not None:
            emb = emb + self.label_embed(class_labels)
        h = self.conv_in(x)
        hs = [h]
        for block in self.down:
            h = block(h, emb) if isinstance(block, ResBlock) else block(h)
            hs.append(h)
        for block in self.mid:
            h = block(h, emb)
        for block in self.up:
            h = block(torch.cat([h, hs.pop()], dim=1), emb) if isinstance(block, ResBlock) else block(h)
        return self.conv_out(F.silu(self.norm_out(h))).to(dtype)


def build_unet(size: str = "small", seed: int = 0, **overrides) -> UNet:
    """A randomly initialised U-Net: size 'tiny' | 'small' | 'edm' (EDM_CIFAR10), with overrides."""
    sizes = {"tiny": TINY, "small": SMALL, "edm": EDM_CIFAR10}
    if size not in sizes:
        raise ValueError(f"size must be one of {sorted(sizes)}, got {size!r}")
    torch.manual_seed(seed)
    return UNet(**{**sizes[size], **overrides}).eval().requires_grad_(False)


def num_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
