"""EDM/EDM2 network pickles load only with model.trust_pickle: true, using the user's importable code (here a tiny
EDM-style preconditioned network defined in this module)."""

import pickle

import pytest
import torch

import samplers
from pipeline.config import ConfigError
from pipeline.handle import SamplingHandle
from tests.pipeline.jobs import gaussian_job


class TinyPrecond(torch.nn.Module):
    """EDM's `EDMPrecond` interface: forward(x, sigma, class_labels one-hot (N, label_dim)) -> D(x; sigma)."""

    def __init__(self, label_dim: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.label_dim, self.sigma_data = label_dim, 0.5
        self.mix = torch.nn.Linear(4, 4)
        self.label_emb = torch.nn.Linear(label_dim, 4, bias=False)

    def forward(self, x, sigma, class_labels=None):
        class_labels = class_labels.to(torch.float32).reshape(-1, self.label_dim)  # EDM's own check of one-hot
        sigma = sigma.reshape(-1, 1, 1)
        c_skip = self.sigma_data**2 / (sigma**2 + self.sigma_data**2)
        c_in = 1 / (self.sigma_data**2 + sigma**2).sqrt()
        return c_skip * x + self.mix(c_in * x) + self.label_emb(class_labels)[:, None, :]


def pickle_job(tmp_path, trust=True):
    net = TinyPrecond()
    with open(tmp_path / "network-snapshot.pkl", "wb") as f:
        pickle.dump({"ema": net, "augment_pipe": None}, f)  # EDM's snapshot layout
    model = {"factory": "pipeline.models.trusted_pickle:load",
             "kwargs": {"url": str(tmp_path / "network-snapshot.pkl")},
             "interface": "edm", "shape": [2, 4], "num_classes": 3}
    if trust:
        model["trust_pickle"] = True
    return gaussian_job(str(tmp_path / "out"), model=model, run={"labels": "balanced"}), net


def test_a_trusted_pickle_samples_like_its_network(tmp_path):
    cfg, net = pickle_job(tmp_path)
    ours = SamplingHandle.from_config(cfg).sample(6)
    labels = torch.arange(6) % 3
    field = samplers.wrap(lambda x, sigma, class_labels: net(x, sigma, torch.nn.functional.one_hot(class_labels, 3)),
                          "edm")
    direct = samplers.build("heun", steps=8, time_dist="karras").sample(6, "cpu", net=field, shape=(2, 4),
                                                                         seed=cfg.run.seed, labels=labels)
    assert torch.allclose(ours, direct, rtol=0, atol=1e-6)


def test_a_pickle_without_trust_is_refused_before_it_is_read(tmp_path):
    with pytest.raises(ConfigError, match=r"model.trust_pickle: must be true to load a network pickle"):
        pickle_job(tmp_path, trust=False)
