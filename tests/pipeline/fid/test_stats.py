"""Tests for pipeline.fid: streaming statistics, Frechet distance, reference files, extractors."""

import io
import json
import pickle

import numpy as np
import pytest
import scipy.linalg
import torch

from pipeline.fid.extractors import build_extractor
from pipeline.fid.features import compute_stats
from pipeline.fid.reference import fid_from_stats, load_reference, save_reference
from pipeline.fid.stats import FeatureStats, frechet_distance


def pytorch_fid_reference(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """pytorch-fid's calculate_frechet_distance, re-implemented here with scipy only."""
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        assert np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3)
        covmean = covmean.real
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


def symmetric_fid(mu1, sigma1, mu2, sigma2):
    """FID via tr((S1 S2)^1/2) = sum sqrt(eig(S1^1/2 S2 S1^1/2)), using only symmetric eigendecompositions."""
    w, v = np.linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    lam = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    diff = mu1 - mu2
    return diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.sqrt(np.clip(lam, 0, None)).sum()


def random_spd(rng, d, scale=1.0):
    a = rng.standard_normal((d, 2 * d))
    return scale * (a @ a.T) / (2 * d) + 1e-3 * np.eye(d)


# ---------------------------------------------------------------------------------------------
# FeatureStats


def test_streaming_stats_merged_from_pieces_equal_one_shot():
    rng = np.random.default_rng(0)
    feats = 3.0 + rng.standard_normal((1000, 16)) @ rng.standard_normal((16, 16))
    cuts = [0, 1, 7, 7, 300, 650, 1000]  # uneven pieces, including an empty one and a single row
    pieces = [FeatureStats().update(feats[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
    merged = FeatureStats()
    for p in pieces:
        merged.merge(p)
    summed = sum(pieces[1:], pieces[0])
    for stats in (merged, summed):
        assert stats.n == 1000 and stats.dim == 16
        np.testing.assert_allclose(stats.mu, feats.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(stats.sigma, np.cov(feats, rowvar=False), rtol=1e-9, atol=1e-12)
    assert np.array_equal(merged.sigma, merged.sigma.T)


def test_stats_accept_torch_tensors_and_round_trip_dict():
    rng = np.random.default_rng(1)
    feats = rng.standard_normal((50, 8))
    a = FeatureStats().update(torch.from_numpy(feats[:20]).float())
    b = FeatureStats(8).update(feats[20:].astype(np.float32))
    total = a + b
    np.testing.assert_allclose(total.sigma, np.cov(feats.astype(np.float32), rowvar=False), rtol=1e-6)
    for restored in (FeatureStats.from_dict(json.loads(json.dumps(total.to_dict()))),
                     pickle.loads(pickle.dumps(total)),
                     FeatureStats.from_dict(pickle.loads(pickle.dumps(total.to_dict())))):
        assert restored.n == total.n
        assert np.array_equal(restored.sum, total.sum) and np.array_equal(restored.sum_outer, total.sum_outer)
    empty = FeatureStats.from_dict(FeatureStats().to_dict())
    assert empty.n == 0 and empty.dim is None
    assert (empty + total).n == 50


def test_stats_errors():
    with pytest.raises(ValueError, match="dimension"):
        FeatureStats(4).update(np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"shape \(n, D\)"):
        FeatureStats().update(np.zeros(5))
    with pytest.raises(ValueError, match="at least 2"):
        FeatureStats(3).update(np.zeros((1, 3))).sigma
    with pytest.raises(ValueError, match="merge"):
        FeatureStats(3).merge(FeatureStats(4))


# ---------------------------------------------------------------------------------------------
# Frechet distance


def test_fid_of_a_set_against_its_own_stats_is_zero():
    rng = np.random.default_rng(2)
    stats = FeatureStats().update(rng.standard_normal((500, 32)) * 2 + 1)
    assert abs(frechet_distance(stats.mu, stats.sigma, stats.mu, stats.sigma)) < 1e-8 * np.trace(stats.sigma)
    assert abs(fid_from_stats(stats, stats)) < 1e-8 * np.trace(stats.sigma)


def test_fid_diagonal_covariances_closed_form():
    rng = np.random.default_rng(3)
    mu1, mu2 = rng.standard_normal(10), rng.standard_normal(10)
    a, b = rng.uniform(0.1, 3.0, 10), rng.uniform(0.1, 3.0, 10)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)
    # 1-d Gaussians: (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]])) == \
        pytest.approx(9.0 + 1.0, rel=1e-12)


def test_fid_known_gaussians_closed_form():
    rng = np.random.default_rng(4)
    d = 12
    s = random_spd(rng, d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    # Equal covariances: only the means differ.
    assert frechet_distance(mu1, s, mu2, s) == pytest.approx(np.sum((mu1 - mu2) ** 2), rel=1e-9, abs=1e-9)
    # S1 = c I: (S1 S2)^1/2 = sqrt(c) S2^1/2, with S2^1/2 from an eigendecomposition.
    c = 2.5
    w, v = np.linalg.eigh(s)
    root = (v * np.sqrt(w)) @ v.T
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(c * np.eye(d) + s - 2 * np.sqrt(c) * root)
    assert frechet_distance(mu1, c * np.eye(d), mu2, s) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("d", [2, 16, 64])
def test_fid_matches_pytorch_fid_on_random_spd(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d) * 0.5
    s1, s2 = random_spd(rng, d), random_spd(rng, d, scale=3.0)
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert isinstance(ours, float)
    assert ours == pytest.approx(pytorch_fid_reference(mu1, s1, mu2, s2), rel=1e-6)
    assert ours == pytest.approx(symmetric_fid(mu1, s1, mu2, s2), rel=1e-6)


def test_fid_near_singular_covariances_are_finite():
    rng = np.random.default_rng(5)
    feats = rng.standard_normal((10, 32))  # rank-deficient covariance (n < D)
    s1 = FeatureStats().update(feats)
    s2 = FeatureStats().update(rng.standard_normal((10, 32)) + 0.1)
    value = frechet_distance(s1.mu, s1.sigma, s2.mu, s2.sigma)
    assert np.isfinite(value)
    assert value == pytest.approx(symmetric_fid(s1.mu, s1.sigma, s2.mu, s2.sigma), rel=1e-3)


def test_fid_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape mismatch"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# ---------------------------------------------------------------------------------------------
# Reference files


def test_reference_npz_round_trip(tmp_path):
    rng = np.random.default_rng(6)
    stats = FeatureStats().update(rng.standard_normal((100, 8)))
    path = tmp_path / "ref.npz"
    stats.save_npz(path)
    with np.load(path) as f:  # the plain pytorch-fid / EDM format
        assert sorted(f.files) == ["mu", "sigma"]
    mu, sigma = load_reference(str(path))
    np.testing.assert_array_equal(mu, stats.mu)
    np.testing.assert_array_equal(sigma, stats.sigma)
    assert fid_from_stats(stats, path) == pytest.approx(0.0, abs=1e-10)
    # fsspec URL and file object
    stats.save_npz("memory://refs/ref.npz")
    np.testing.assert_array_equal(load_reference("memory://refs/ref.npz")[1], stats.sigma)
    buf = io.BytesIO()
    stats.save_npz(buf)
    (tmp_path / "buf.npz").write_bytes(buf.getvalue())
    np.testing.assert_array_equal(load_reference(tmp_path / "buf.npz")[0], stats.mu)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"mu": np.zeros(4)}, r"missing key\(s\) \['sigma'\]"),
        ({"mean": np.zeros(4), "cov": np.eye(4)}, r"missing key\(s\) \['mu', 'sigma'\]"),
        ({"mu": np.zeros((4, 1)), "sigma": np.eye(4)}, r"'mu' must have shape \(D,\)"),
        ({"mu": np.zeros(4), "sigma": np.eye(5)}, r"'sigma' must have shape \(D, D\) = \(4, 4\)"),
        ({"mu": np.zeros(4), "sigma": np.zeros(4)}, r"'sigma' must have shape"),
        ({"mu": np.full(4, np.nan), "sigma": np.eye(4)}, "NaN or inf"),
    ],
)
def test_reference_errors_name_file_and_problem(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message) as info:
        load_reference(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_reference_not_an_npz(tmp_path):
    path = tmp_path / "ref.npz"
    path.write_bytes(b"definitely not a zip file")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_reference(path)
    with pytest.raises(FileNotFoundError):
        load_reference(tmp_path / "missing.npz")


def test_save_reference_writes_float64(tmp_path):
    save_reference(tmp_path / "r.npz", np.zeros(3, np.float32), np.eye(3, dtype=np.float32))
    mu, sigma = load_reference(tmp_path / "r.npz")
    assert mu.dtype == sigma.dtype == np.float64


# ---------------------------------------------------------------------------------------------
# Extractors


def test_unknown_extractor_lists_known():
    with pytest.raises(ValueError, match=r"unknown feature extractor 'vgg'; known: \['digits', 'inception'\]"):
        build_extractor("vgg")


def test_digits_extractor_shapes():
    ext = build_extractor("digits")
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    f = ext(x)
    assert ext.dim == 64 and f.shape == (5, 64) and torch.isfinite(f).all()
    as_uint8 = ((x + 1) * 127.5).round().to(torch.uint8)
    torch.testing.assert_close(ext(as_uint8), f, atol=0.05, rtol=0.05)
    stats = compute_stats(ext, x, batch_size=2)
    assert stats.n == 5 and stats.dim == 64
    with pytest.raises(ValueError, match=r"\[N, 1, 8, 8\]"):
        ext(torch.zeros(2, 3, 8, 8))


@pytest.fixture(scope="module")
def random_inception_file(tmp_path_factory):
    from safetensors.torch import save_file

    from pipeline.models.inception import FIDInceptionV3

    torch.manual_seed(0)
    state = FIDInceptionV3().state_dict()
    # pytorch-fid's pt_inception file predates BatchNorm's num_batches_tracked buffer.
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path_factory.mktemp("inception") / "inception_random.safetensors"
    save_file(state, str(path))
    return path, state


def test_inception_state_dict_has_pytorch_fid_keys(random_inception_file):
    _, state = random_inception_file
    assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert state["Mixed_6e.branch7x7dbl_5.conv.weight"].shape == (192, 192, 1, 7)
    assert state["Mixed_7c.branch3x3dbl_3b.bn.running_var"].shape == (384,)
    assert state["fc.weight"].shape == (1008, 2048)
    assert not any(k.startswith("AuxLogits") for k in state)


def test_inception_extractor_from_random_weights(random_inception_file, tmp_path):
    path, state = random_inception_file
    ext = build_extractor("inception", weights=str(path), batch_size=2)
    assert ext.dim == 2048
    gray = torch.rand(2, 1, 8, 8) * 2 - 1
    rgb = torch.rand(2, 3, 32, 32) * 2 - 1
    f_gray, f_rgb = ext(gray), ext(rgb)
    assert f_gray.shape == (2, 2048) and f_rgb.shape == (2, 2048)
    assert torch.isfinite(f_gray).all() and torch.isfinite(f_rgb).all()
    assert f_gray.std() > 0 and not torch.allclose(f_rgb[0], f_rgb[1])
    # Grayscale is the same image repeated to RGB.
    torch.testing.assert_close(ext(gray[:1].repeat(1, 3, 1, 1)), f_gray[:1])
    # The same weights as a torch file (loaded with weights_only=True) give the same features.
    pt = tmp_path / "inception.pth"
    torch.save(state, pt)
    torch.testing.assert_close(build_extractor("inception", weights=str(pt))(rgb[:1]), f_rgb[:1])


def test_inception_rejects_wrong_weights(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not an FID Inception-v3 state dict"):
        build_extractor("inception", weights=str(path))
