"""EDM / EDM2 network pickles (`network-snapshot-*.pkl`) as a job's model, only with `model.trust_pickle: true`:

    model:
      factory: pipeline.models.trusted_pickle:load
      kwargs: {url: /nets/edm2-img64-s-1073741-0.075.pkl}   # key: ema (the pickle's dict entry)
      trust_pickle: true
      interface: edm
      shape: [3, 64, 64]
      num_classes: 1000

A pickle holds code references: unpickling imports the classes it names (EDM's `training.networks`,
`torch_utils.persistence`, ...) and may run any code they and the file choose. `trust_pickle: true` says you
trust the file as you trust code you run; the EDM/EDM2 repository must be importable on every worker (e.g. on
PYTHONPATH, or in `ray job submit --working-dir`). Everything else seedshard loads stays safetensors or
`weights_only` torch files. The network is EDM's preconditioned denoiser D(x, sigma, class_labels): the `edm`
interface with no preconditioning of its own; integer class labels become EDM's one-hot labels.
"""

from __future__ import annotations

import pickle
from typing import Any

import torch

from .checkpoint import read_bytes

FACTORY = "pipeline.models.trusted_pickle:load"


class EDMNet(torch.nn.Module):
    """D(x, sigma, class_labels) of an EDM/EDM2 network, taking integer labels (N,) as well as one-hot (N, C)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """x: (N, C, H, W), sigma: (N,) -> denoised (N, C, H, W)."""
        label_dim = getattr(self.net, "label_dim", 0)
        if class_labels is not None and class_labels.ndim == 1 and label_dim:
            class_labels = torch.nn.functional.one_hot(class_labels.long(), label_dim).to(x.dtype)
        return self.net(x, sigma, class_labels)


def load(url: str, key: str = "ema") -> torch.nn.Module:
    """The network in the pickle at `url` (local path or fsspec URL): its `key` entry if it is a dict. Runs the
    pickle's code: reached only through a config with model.trust_pickle: true."""
    obj = pickle.loads(read_bytes(url))  # noqa: S301 - the config said trust_pickle: true
    net = obj[key] if isinstance(obj, dict) else obj
    if not isinstance(net, torch.nn.Module):
        raise ValueError(f"{url}: entry {key!r} is a {type(net).__name__}, not a torch.nn.Module")
    return EDMNet(net)
