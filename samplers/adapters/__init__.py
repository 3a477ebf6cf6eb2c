"""Adapters at the edge: real model families seen through the `samplers.wrap` interfaces.

Each adapter module imports its model library lazily (or not at all), so `samplers` keeps
depending on torch only. Families the built-in interfaces already cover need no adapter:
  - a k-diffusion denoiser `model(x, sigma, **kw)` is `samplers.wrap(model, "edm")`;
  - a raw EDM network F(c_in x, c_noise) is `samplers.wrap(F, "edm", precond=True, sigma_data=...)`;
  - a diffusers DDPM-trained UNet (eps, v or sample prediction) is
    `samplers.adapters.diffusers.wrap_diffusers_unet(unet, scheduler)`;
  - a diffusers scheduler's own sampling run (grid, clipping, start noise) is
    `samplers.adapters.diffusers_schedule.diffusers_settings(scheduler)`.
"""
