"""A diffusers `UNet2DModel` as a job's model (needs `pip install diffusers`):

    model:
      factory: pipeline.models.diffusers_unet:build_unet2d
      kwargs: {sample_size: 32, in_channels: 3, out_channels: 3, ...}   # the model's config.json
      checkpoint: .../unet/diffusion_pytorch_model.safetensors          # diffusers' own key names
      interface: vp_eps
      interface_kwargs: {num_train_timesteps: 1000, beta_start: 0.0001, beta_end: 0.02, beta_schedule: linear}

The module is a `UNet2DModel` whose forward returns the epsilon prediction as a tensor (the
`vp_eps` interface's raw-network convention), so checkpoints load with their own key names.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from samplers.adapters.diffusers import eps_of


@functools.cache
def _eps_unet_class() -> type:
    from diffusers import UNet2DModel

    class EpsUNet2DModel(UNet2DModel):
        """UNet2DModel returning eps (N, C, H, W) for net(x_vp, timestep, class_labels=...)."""

        def forward(self, x: torch.Tensor, timestep: torch.Tensor, class_labels: torch.Tensor | None = None,
                    **kwargs: Any) -> torch.Tensor:
            return eps_of(super().forward(x, timestep, class_labels=class_labels, **kwargs).sample, x)

    return EpsUNet2DModel


def build_unet2d(**config: Any) -> torch.nn.Module:
    """A randomly initialised UNet2DModel of `config` (load weights with model.checkpoint)."""
    return _eps_unet_class()(**config)
