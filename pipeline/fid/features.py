"""Feature extractors: images [N, C, H, W] -> features [N, D] float32, with `.dim`; statistics of images.

Images are floats in [-1, 1] (the samplers' convention) or uint8 in [0, 255]. Built by name
through `extractors.build_extractor`.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from ..output.dtypes import from_stored
from ..output.images import is_image_shape, to_uint8
from .stats import FeatureStats


def to_unit_range(x: Tensor) -> Tensor:
    """Images to float32 in [-1, 1]: uint8 in [0, 255] is rescaled, floats are taken as already in [-1, 1]."""
    if x.dtype == torch.uint8:
        return x.float() / 127.5 - 1
    return x.float()


class DigitsExtractor:
    """Penultimate features [N, 64] of the shipped digits classifier; input [N, 1, 8, 8]."""

    def __init__(self, weights: str | None = None, device: str | torch.device = "cpu", batch_size: int = 4096):
        from ..models.digits_classifier import build_digits_classifier

        self.device = torch.device(device)
        self.net = build_digits_classifier(weights).to(self.device)
        self.dim = self.net.dim
        self.batch_size = batch_size

    @torch.inference_mode()
    def __call__(self, x: Tensor) -> Tensor:
        """x: [N, 1, 8, 8] in [-1, 1] (or uint8) -> features [N, 64] float32 on self.device."""
        x = torch.as_tensor(x)
        if x.ndim != 4 or x.shape[1:] != (1, 8, 8):
            raise ValueError(f"the digits extractor takes images of shape [N, 1, 8, 8], got {tuple(x.shape)}")
        out = [self.net.features(to_unit_range(b.to(self.device))) for b in x.split(self.batch_size)]
        return torch.cat(out) if out else torch.empty(0, self.dim, device=self.device)


class InceptionExtractor:
    """Inception-v3 pool3 features [N, 2048] (pytorch-fid's FID network) from a local or fsspec weights file."""

    def __init__(self, weights: str, device: str | torch.device = "cpu", batch_size: int = 64):
        from ..models.inception import build_fid_inception

        self.device = torch.device(device)
        self.net = build_fid_inception(weights).to(self.device)
        self.dim = 2048
        self.batch_size = batch_size

    @torch.inference_mode()
    def __call__(self, x: Tensor) -> Tensor:
        """x: [N, C in {1, 3}, H, W] in [-1, 1] (or uint8); resized to 299x299 bilinear -> [N, 2048] float32."""
        x = torch.as_tensor(x)
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"the inception extractor takes images [N, 1 or 3, H, W], got {tuple(x.shape)}")
        out = []
        for b in x.split(self.batch_size):
            b = to_unit_range(b.to(self.device))
            if b.shape[1] == 1:
                b = b.repeat(1, 3, 1, 1)  # grayscale -> RGB, as PIL's convert('RGB') in pytorch-fid
            out.append(self.net.pool3(b))
        return torch.cat(out) if out else torch.empty(0, self.dim, device=self.device)


def compute_stats(
    extractor: Callable[[Tensor], Tensor], images: Tensor | np.ndarray, batch_size: int = 1024
) -> FeatureStats:
    """FeatureStats of extractor(images) for images [N, C, H, W], processed in batches."""
    images = torch.as_tensor(images)
    stats = FeatureStats(extractor.dim if hasattr(extractor, "dim") else None)
    for b in images.split(batch_size):
        stats.update(extractor(b))
    return stats


def features_stats(extractor: Any, images: np.ndarray | torch.Tensor, stored_dtype: str | None = None) -> FeatureStats:
    """FeatureStats of a batch of images (n, C, H, W). Stored samples (`stored_dtype` given) that are images go in as
    their canonical uint8 image (`output.images.to_uint8`, what exported PNGs hold: standard FID); other stored
    samples as floats (`from_stored`)."""
    if stored_dtype:
        images = np.asarray(images)
        images = to_uint8(images) if is_image_shape(images.shape[1:]) else from_stored(images, stored_dtype)
    return FeatureStats(extractor.dim).update(extractor(torch.as_tensor(images)))
