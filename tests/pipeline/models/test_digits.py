"""Tests for the shipped demo flow net and the digits classifier (FID feature extractor)."""

import os

import pytest
import torch

from pipeline.models.digits import (
    NULL_CLASS,
    WEIGHTS_FILE,
    DigitsFlowNet,
    build_demo,
    shipped_weights_path,
    train_flow,
)
from pipeline.models.digits_classifier import (
    WEIGHTS_FILE as CLASSIFIER_FILE,
    accuracy,
    build_digits_classifier,
    train_classifier,
)


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    from pipeline.models.digits import load_digits_data

    return load_digits_data()


@pytest.mark.parametrize("name", [WEIGHTS_FILE, CLASSIFIER_FILE])
def test_shipped_weights_are_small(name):
    path = shipped_weights_path(name)
    assert os.path.isfile(path), path
    assert os.path.getsize(path) < 5 * 2**20


def test_demo_net_loads_and_has_the_right_shapes():
    net = build_demo()
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    x = torch.randn(6, 1, 8, 8)
    t = torch.rand(6)
    labels = torch.tensor([0, 1, 2, 9, NULL_CLASS, 3])
    v = net(x, t, labels)
    assert v.shape == (6, 1, 8, 8) and v.dtype == torch.float32 and torch.isfinite(v).all()
    # None means the null class; a scalar t broadcasts; float64 in -> float64 out.
    torch.testing.assert_close(net(x, t), net(x, t, torch.full((6,), NULL_CLASS)))
    torch.testing.assert_close(net(x, torch.tensor(0.5)), net(x, torch.full((6,), 0.5)))
    assert net(x.double(), t.double(), labels).dtype == torch.float64


def test_build_demo_from_path_and_random_init(tmp_path):
    from safetensors.torch import save_file

    rand = build_demo(pretrained=False)
    path = tmp_path / "w.safetensors"
    save_file(rand.state_dict(), str(path))
    again = build_demo(str(path))
    x, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    torch.testing.assert_close(again(x, t), rand(x, t))


@torch.no_grad()
def test_guided_euler_samples_are_the_requested_digits(digits):
    """32 Euler steps with CFG w=2 from the shipped weights: the classifier recognises the labels."""
    net, clf = build_demo(), build_digits_classifier()
    labels = torch.arange(100) % 10
    x = torch.randn(100, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    ts = torch.linspace(1, 0, 33)
    null = torch.full_like(labels, NULL_CLASS)
    for t, t_next in zip(ts[:-1], ts[1:]):
        v_cond, v_uncond = net(x, t.expand(100), labels), net(x, t.expand(100), null)
        x = x + (t_next - t) * (v_uncond + 2.0 * (v_cond - v_uncond))
    assert accuracy(clf, x.clamp(-1, 1), labels) > 0.9


def test_classifier_accuracy_from_shipped_weights(digits):
    x, y = digits
    clf = build_digits_classifier()
    assert accuracy(clf, x, y) > 0.95
    assert clf.features(x[:4]).shape == (4, 64)


def test_shipped_digits_reference_matches_the_data(digits):
    from pipeline.fid.extractors import build_extractor
    from pipeline.fid.features import compute_stats
    from pipeline.fid.reference import default_reference, fid_from_stats, load_reference

    ref = default_reference("digits")
    mu, sigma = load_reference(ref)
    assert mu.shape == (64,) and sigma.shape == (64, 64)
    stats = compute_stats(build_extractor("digits"), digits[0])
    assert stats.n == 1797
    assert abs(fid_from_stats(stats, ref)) < 1e-4
    assert default_reference("inception") is None


def test_training_is_deterministic(digits):
    a, loss_a = train_flow(steps=3, seed=1, batch_size=8, log=lambda s: None)
    b, loss_b = train_flow(steps=3, seed=1, batch_size=8, log=lambda s: None)
    assert isinstance(a, DigitsFlowNet) and loss_a == loss_b
    for (k, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), k
    c1, _, acc1 = train_classifier(epochs=1, seed=1, log=lambda s: None)
    c2, _, acc2 = train_classifier(epochs=1, seed=1, log=lambda s: None)
    assert acc1 == acc2 and torch.equal(c1.fc2.weight, c2.fc2.weight)
