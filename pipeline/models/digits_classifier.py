"""A small CNN digit classifier: the feature extractor for the demo's FID (the digits' "Inception").

Input: images [N, 1, 8, 8] in [-1, 1] (the demo model's convention, see `pipeline.models.digits`).
`features(x)` returns the penultimate layer, [N, FEATURE_DIM] (SiLU activations, so no dead
units and a well-conditioned covariance); `forward(x)` returns the 10 class logits.
Trained on a fixed 80% split of the 1797 scikit-learn digits; the other 20% measure accuracy.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.models.checkpoint import load_state_dict
from pipeline.models.digits import NUM_CLASSES, load_digits_data, shipped_weights_path

FEATURE_DIM = 64
WEIGHTS_FILE = "digits_classifier.safetensors"


class DigitsClassifier(nn.Module):
    """conv(32)-conv(64)-pool-conv(128)-pool-fc(64)-fc(10) with SiLU; 8x8 -> 4x4 -> 2x2."""

    def __init__(self, feature_dim: int = FEATURE_DIM, num_classes: int = NUM_CLASSES, dropout: float = 0.3):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1)
        self.fc1 = nn.Linear(128 * 2 * 2, feature_dim)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(feature_dim, num_classes)
        self.dim = feature_dim

    def features(self, x: Tensor) -> Tensor:
        """x: [N, 1, 8, 8] in [-1, 1] -> penultimate features [N, feature_dim]."""
        assert x.ndim == 4 and x.shape[1:] == (1, 8, 8), f"expected [N, 1, 8, 8], got {tuple(x.shape)}"
        h = F.silu(self.conv1(x.to(self.conv1.weight.dtype)))
        h = F.max_pool2d(F.silu(self.conv2(h)), 2)
        h = F.max_pool2d(F.silu(self.conv3(h)), 2)
        return F.silu(self.fc1(h.flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        """x: [N, 1, 8, 8] in [-1, 1] -> class logits [N, num_classes]."""
        return self.fc2(self.dropout(self.features(x)))


def build_digits_classifier(weights: str | None = None) -> DigitsClassifier:
    """The classifier in eval mode with the shipped weights (weights=None) or a checkpoint path/URL."""
    net = DigitsClassifier()
    net.load_state_dict(load_state_dict(weights or shipped_weights_path(WEIGHTS_FILE)))
    return net.eval().requires_grad_(False)


def split_indices(n: int, seed: int = 0, holdout: float = 0.2) -> tuple[Tensor, Tensor]:
    """A fixed random (train, held-out) split of range(n)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = int(round(n * holdout))
    return perm[k:], perm[:k]


def random_shift(x: Tensor, generator: torch.Generator, max_shift: int = 1) -> Tensor:
    """Translate each image [B, 1, 8, 8] by up to `max_shift` pixels, filling with background (-1)."""
    b, p = x.shape[0], max_shift
    padded = F.pad(x, (p, p, p, p), value=-1.0)
    dy, dx = torch.randint(0, 2 * p + 1, (2, b), generator=generator)
    rows = (dy[:, None] + torch.arange(8))[:, None, :, None].expand(b, 1, 8, 8 + 2 * p)
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(8))[:, None, None, :].expand(b, 1, 8, 8)
    return out.gather(3, cols)


@torch.no_grad()
def accuracy(net: nn.Module, x: Tensor, y: Tensor) -> float:
    """Fraction of x: [N, 1, 8, 8] classified as y: Long[N]."""
    return (net(x).argmax(1) == y).double().mean().item()


def train_classifier(
    epochs: int = 60,
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 2e-3,
    log: Callable[[str], None] = print,
    log_every: int = 10,
) -> tuple[DigitsClassifier, float, float]:
    """Train on the fixed 80% split; returns (net in eval mode, final train loss, held-out accuracy)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, y = load_digits_data()
    train, held = split_indices(len(x), seed=0)
    net = DigitsClassifier().train()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = (len(train) + batch_size - 1) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    t0, loss_avg = time.perf_counter(), 0.0
    for epoch in range(1, epochs + 1):
        perm = train[torch.randperm(len(train), generator=gen)]
        total = 0.0
        for k in range(steps_per_epoch):
            idx = perm[k * batch_size : (k + 1) * batch_size]
            loss = F.cross_entropy(net(random_shift(x[idx], gen)), y[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        loss_avg = total / len(train)
        if epoch % log_every == 0 or epoch == epochs:
            net.eval()
            acc = accuracy(net, x[held], y[held])
            net.train()
            log(f"classifier epoch {epoch}/{epochs} loss {loss_avg:.4f} held-out acc {acc:.4f} "
                f"({time.perf_counter() - t0:.0f}s)")
    net.eval().requires_grad_(False)
    return net, loss_avg, accuracy(net, x[held], y[held])
