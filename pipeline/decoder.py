"""Latent models: `model.decoder` turns each batch of latents into images on the actor, before storage, so stored
samples (and FID) are images:

    model:
      diffusers: {path: /models/dit-256, subfolder: transformer}
      shape: [4, 32, 32]                                            # the latents the sampler integrates
      decoder:
        diffusers: {path: /models/dit-256, subfolder: vae}          # an AutoencoderKL folder, or factory + kwargs
        shape: [3, 256, 256]                                        # one decoded image

images = decode(latents / scaling_factor + shift_factor), the convention of diffusers' pipelines (DiT, Stable
Diffusion; SD3/Flux add the shift). A diffusers folder's factors come from its config (`scaling_factor`,
`shift_factor`) unless the config section sets them; a factory's module is called on the unscaled latents and
returns images (or an output with `.sample`). The decoder runs in float32 (or under `model.autocast`).
"""

from __future__ import annotations

from typing import Any

import torch

from .autocast import AutocastNet


class LatentDecoder(torch.nn.Module):
    """latents (N, *model.shape) -> images (N, *decoder.shape), float32."""

    def __init__(self, module: torch.nn.Module, scaling_factor: float = 1.0, shift_factor: float = 0.0) -> None:
        super().__init__()
        self.module, self.scaling_factor, self.shift_factor = module, float(scaling_factor), float(shift_factor)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        z = latents.float() / self.scaling_factor + self.shift_factor
        out = self.module(z)
        return (out.sample if hasattr(out, "sample") else out).float()


class _Decode(torch.nn.Module):
    """vae.decode as a module call."""

    def __init__(self, vae: torch.nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, z: torch.Tensor) -> Any:
        return self.vae.decode(z)


def decoder_identity(model_cfg: Any, seed: int | None = None) -> dict[str, Any]:
    """{sha256 of its weights, config_sha256 of the diffusers models it holds, a factory's name and kwargs}: what
    the stored images depend on besides the latents (a parameter-free factory changes bytes through its kwargs)."""
    from .network import config_sha256, state_dict_sha256

    decoder = build_decoder(model_cfg, seed=seed)
    identity: dict[str, Any] = {"sha256": state_dict_sha256(decoder.state_dict())}
    if (config := config_sha256(decoder)) is not None:
        identity["config_sha256"] = config
    if model_cfg.decoder.factory is not None:
        identity |= {"factory": model_cfg.decoder.factory, "kwargs": model_cfg.decoder.kwargs}
    return identity


def build_decoder(model_cfg: Any, device: torch.device | str = "cpu", seed: int | None = None) -> LatentDecoder | None:
    """The decoder of `model_cfg.decoder` on `device` (None for a model without one); a factory is called under
    torch's RNG seeded with `seed`, so a randomly initialised one is the same in every process."""
    cfg = model_cfg.decoder
    if cfg is None:
        return None
    if cfg.diffusers is not None:
        from .models.diffusers_folder import load_model

        vae = load_model(cfg.diffusers.path, cfg.diffusers.subfolder)
        config = getattr(vae, "config", {})
        scaling = cfg.scaling_factor if cfg.scaling_factor is not None else (config.get("scaling_factor") or 1.0)
        shift = cfg.shift_factor if cfg.shift_factor is not None else (config.get("shift_factor") or 0.0)
        module: torch.nn.Module = _Decode(vae)
    else:
        from .network import import_factory, seeded

        with seeded(seed):
            module = import_factory(cfg.factory)(**cfg.kwargs)
        scaling = cfg.scaling_factor if cfg.scaling_factor is not None else 1.0
        shift = cfg.shift_factor if cfg.shift_factor is not None else 0.0
    if model_cfg.autocast:
        module = AutocastNet(module, model_cfg.autocast)
    return LatentDecoder(module, scaling, shift).to(device).eval().requires_grad_(False)


def stored_shape(model_cfg: Any) -> list[int]:
    """The shape of one stored sample: the decoder's image shape, else model.shape."""
    return list(model_cfg.decoder.shape if model_cfg.decoder is not None else model_cfg.shape)
