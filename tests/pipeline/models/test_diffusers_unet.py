"""A diffusers UNet2DModel driven by a job config gives the adapter's samples, loading diffusers' own keys."""

import pytest
import torch
from safetensors.torch import save_file

import samplers
from pipeline.config import validate_config
from pipeline.handle import SamplingHandle
from samplers.adapters.diffusers import wrap_diffusers_unet

diffusers = pytest.importorskip("diffusers")
CONFIG = dict(sample_size=8, in_channels=2, out_channels=2, block_out_channels=[8, 16], layers_per_block=1,
              down_block_types=["DownBlock2D", "DownBlock2D"], up_block_types=["UpBlock2D", "UpBlock2D"],
              norm_num_groups=4, attention_head_dim=4, num_class_embeds=3)


def test_job_config_with_a_diffusers_checkpoint_matches_the_adapter(tmp_path):
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(**CONFIG).eval().requires_grad_(False)
    save_file(unet.state_dict(), tmp_path / "unet.safetensors")  # diffusers' own key names
    cfg = validate_config({
        "run": {"num_samples": 4, "seed": 2, "shard_size": 4, "batch_size": 4, "output": str(tmp_path / "out"),
                "labels": "balanced"},
        "model": {"factory": "pipeline.models.diffusers_unet:build_unet2d", "kwargs": CONFIG,
                  "checkpoint": str(tmp_path / "unet.safetensors"), "interface": "vp_eps", "shape": [2, 8, 8],
                  "num_classes": 3},
        "sampler": {"name": "dpmpp_2m", "steps": 5, "time_dist": "karras",
                    "time_kwargs": {"sigma_min": 0.03, "sigma_max": 80.0}},
    })
    from_config = SamplingHandle.from_config(cfg).sample(4)
    field = wrap_diffusers_unet(unet)
    direct = samplers.build("dpmpp_2m", steps=5, time_dist="karras", time_kwargs={"sigma_min": 0.03, "sigma_max": 80.0}
                            ).sample(4, "cpu", net=field, shape=(2, 8, 8), seed=2, labels=torch.arange(4) % 3)
    assert torch.equal(from_config, direct)
