"""Demo model: a class-conditional rectified-flow U-Net on scikit-learn's 8x8 digits.

Conventions (fixed project-wide):
  * data: `sklearn.datasets.load_digits` images (values 0..16) scaled to [-1, 1] as `x / 8 - 1`;
    one sample has shape (1, 8, 8).
  * flow: `x_t = (1 - t) * x_0 + t * eps`, t in [0, 1], t = 1 is pure noise, t = 0 is data.
    The network predicts the velocity `v = dx_t/dt = eps - x_0`, so an Euler step from t to
    t_next < t is `x + (t_next - t) * v`.
  * labels: 0..9 are digit classes; 10 (= NUM_CLASSES) is the null class for classifier-free
    guidance, and `class_labels=None` means the null class. Training drops labels with
    probability `label_dropout` so one network gives both the conditional and unconditional field.

Call: `net(x: [N, 1, 8, 8], t: [N] (or a scalar), class_labels: Long[N] | None) -> v: [N, 1, 8, 8]`.
The network computes in its parameter dtype and returns the dtype of `x`.

References: Liu et al. 2022 (rectified flow); Lipman et al. 2023 (flow matching);
Ho & Salimans 2022 (classifier-free guidance); Dhariwal & Nichol 2021 (ADM residual blocks).
"""

from __future__ import annotations

import copy
import importlib.resources
import math
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.models.checkpoint import load_state_dict

NUM_CLASSES = 10
NULL_CLASS = NUM_CLASSES
SHAPE = (1, 8, 8)
WEIGHTS_FILE = "digits_flow.safetensors"


def load_digits_data(dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """The 1797 scikit-learn digits: images [1797, 1, 8, 8] in [-1, 1] and labels Long[1797]."""
    from sklearn.datasets import load_digits  # training/evaluation only; not a runtime dependency

    digits = load_digits()
    x = torch.as_tensor(digits.images, dtype=dtype).reshape(-1, *SHAPE) / 8 - 1
    y = torch.as_tensor(digits.target, dtype=torch.long)
    return x, y


def shipped_weights_path(name: str) -> str:
    """Filesystem path of a weights file shipped in `pipeline/models/weights/`."""
    return str(importlib.resources.files("pipeline.models").joinpath("weights", name))


class FourierEmbedding(nn.Module):
    """Sinusoidal embedding of t in [0, 1]: [N] -> [N, dim] (frequencies 1..max_freq, log-spaced)."""

    def __init__(self, dim: int, max_freq: float = 1000.0):
        super().__init__()
        assert dim % 2 == 0, f"embedding dim must be even, got {dim}"
        freqs = torch.exp(torch.linspace(0.0, math.log(max_freq), dim // 2))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        """t: [N] -> [N, dim]."""
        arg = t[:, None] * self.freqs[None, :]
        return torch.cat([arg.cos(), arg.sin()], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv residual block with adaptive scale/shift from the embedding (ADM style)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int = 8, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """x: [N, c_in, H, W], emb: [N, emb_dim] -> [N, c_out, H, W]."""
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class DigitsFlowNet(nn.Module):
    """Two-level U-Net (8x8 -> 4x4 -> 8x8) predicting the flow velocity; see the module docstring."""

    def __init__(
        self,
        channels: int = 32,
        emb_dim: int = 128,
        num_classes: int = NUM_CLASSES,
        dropout: float = 0.0,
    ):
        super().__init__()
        c, c2 = channels, 2 * channels
        self.num_classes = num_classes
        self.time_embed = nn.Sequential(
            FourierEmbedding(emb_dim), nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.label_embed = nn.Embedding(num_classes + 1, emb_dim)  # last row: null class
        self.conv_in = nn.Conv2d(1, c, 3, padding=1)
        self.down1 = ResBlock(c, c, emb_dim, dropout=dropout)  # 8x8
        self.downsample = nn.Conv2d(c, c2, 3, stride=2, padding=1)  # 8x8 -> 4x4
        self.down2 = ResBlock(c2, c2, emb_dim, dropout=dropout)  # 4x4
        self.mid = ResBlock(c2, c2, emb_dim, dropout=dropout)  # 4x4
        self.up2 = ResBlock(2 * c2, c2, emb_dim, dropout=dropout)  # 4x4, skip from down2
        self.upsample = nn.ConvTranspose2d(c2, c, 2, stride=2)  # 4x4 -> 8x8
        self.up1 = ResBlock(2 * c, c, emb_dim, dropout=dropout)  # 8x8, skip from down1
        self.norm_out = nn.GroupNorm(8, c)
        self.conv_out = nn.Conv2d(c, 1, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: Tensor, t: Tensor | float, class_labels: Tensor | None = None) -> Tensor:
        """x: [N, 1, 8, 8], t: [N] or scalar in [0, 1], class_labels: Long[N] or None -> v: [N, 1, 8, 8]."""
        assert x.ndim == 4 and x.shape[1:] == SHAPE, f"expected x of shape [N, 1, 8, 8], got {tuple(x.shape)}"
        n, dtype = x.shape[0], self.conv_in.weight.dtype
        t = torch.as_tensor(t, device=x.device).to(dtype).reshape(-1)
        t = t.expand(n) if t.numel() == 1 else t
        assert t.shape == (n,), f"expected t of shape [{n}] or a scalar, got {tuple(t.shape)}"
        if class_labels is None:
            class_labels = torch.full((n,), self.num_classes, dtype=torch.long, device=x.device)
        assert class_labels.shape == (n,), f"expected class_labels [{n}], got {tuple(class_labels.shape)}"
        emb = F.silu(self.time_embed(t) + self.label_embed(class_labels.long()))

        h0 = self.conv_in(x.to(dtype))
        h1 = self.down1(h0, emb)
        h2 = self.down2(self.downsample(h1), emb)
        h = self.mid(h2, emb)
        h = self.up2(torch.cat([h, h2], dim=1), emb)
        h = self.up1(torch.cat([self.upsample(h), h1], dim=1), emb)
        return self.conv_out(F.silu(self.norm_out(h))).to(x.dtype)


def build_demo(weights: str | None = None, *, pretrained: bool = True, **kw) -> DigitsFlowNet:
    """The demo flow net in eval mode, with the shipped weights (weights=None) or a checkpoint path/URL.

    `kw` are DigitsFlowNet architecture arguments; `pretrained=False` (with weights=None) leaves it
    randomly initialised.
    """
    net = DigitsFlowNet(**kw)
    if weights is not None or pretrained:
        net.load_state_dict(load_state_dict(weights or shipped_weights_path(WEIGHTS_FILE)))
    return net.eval().requires_grad_(False)


def flow_matching_loss(
    net: nn.Module, x0: Tensor, labels: Tensor, generator: torch.Generator, label_dropout: float
) -> Tensor:
    """Rectified-flow loss E ||net(x_t, t, y) - (eps - x0)||^2 with t ~ U(0, 1); x0: [B, 1, 8, 8]."""
    b = x0.shape[0]
    t = torch.rand(b, generator=generator)
    eps = torch.randn(x0.shape, generator=generator)
    drop = torch.rand(b, generator=generator) < label_dropout
    labels = torch.where(drop, torch.full_like(labels, NULL_CLASS), labels)
    tb = t[:, None, None, None]
    x_t = (1 - tb) * x0 + tb * eps
    return F.mse_loss(net(x_t, t, labels), eps - x0)


def train_flow(
    steps: int = 4000,
    seed: int = 0,
    batch_size: int = 128,
    lr: float = 2e-3,
    ema_decay: float = 0.999,
    label_dropout: float = 0.12,
    log: Callable[[str], None] = print,
    log_every: int = 500,
    **net_kwargs,
) -> tuple[DigitsFlowNet, float]:
    """Train DigitsFlowNet on all 1797 digits; returns (EMA network in eval mode, mean loss of the last 10% steps)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, y = load_digits_data()
    net = DigitsFlowNet(**net_kwargs).train()
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    warmup = max(1, steps // 50)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min(1.0, (k + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(k, steps) / steps))
    )
    tail, running, t0 = [], 0.0, time.perf_counter()
    for step in range(1, steps + 1):
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=gen)
        loss = flow_matching_loss(net, x[idx], y[idx], gen, label_dropout)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            decay = min(ema_decay, (1 + step) / (10 + step))
            for p_ema, p in zip(ema.parameters(), net.parameters()):
                p_ema.lerp_(p, 1 - decay)
        running += loss.item()
        if step > steps - max(1, steps // 10):
            tail.append(loss.item())
        if step % log_every == 0 or step == steps:
            n_avg = log_every if step % log_every == 0 else step % log_every
            log(f"flow step {step}/{steps} loss {running / n_avg:.4f} ({time.perf_counter() - t0:.0f}s)")
            running = 0.0
    return ema, sum(tail) / len(tail)
