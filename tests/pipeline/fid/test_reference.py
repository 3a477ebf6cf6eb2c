"""EDM2 `.pkl` reference statistics: read by an unpickler that builds only NumPy arrays."""

import os
import pickle

import numpy as np
import pytest

from pipeline.fid.reference import load_reference


def test_edm2_reference_pickle_gives_its_inception_statistics(tmp_path):
    rng = np.random.default_rng(0)
    mu, sigma = rng.standard_normal(4), np.eye(4) * 2
    stats = {"fid": {"mu": mu.astype(np.float32), "sigma": sigma}, "fd_dinov2": {"mu": np.zeros(3), "sigma": np.eye(3)}}
    (tmp_path / "ref.pkl").write_bytes(pickle.dumps(stats))  # as EDM2's calculate_metrics.py ref writes it
    got_mu, got_sigma = load_reference(tmp_path / "ref.pkl")
    np.testing.assert_array_equal(got_mu, mu.astype(np.float32).astype(np.float64))
    np.testing.assert_array_equal(got_sigma, sigma)
    (tmp_path / "flat.pkl").write_bytes(pickle.dumps({"mu": mu, "sigma": sigma}))
    np.testing.assert_array_equal(load_reference(tmp_path / "flat.pkl")[0], mu)


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("obj,match", [
    ({"fid": {"mu": Exploit(), "sigma": np.eye(2)}}, r"not a reference .pkl of arrays \(refuses posix.system"),
    ([np.zeros(2)], "a reference .pkl must hold a dict, got list"),
    ({"fd_dinov2": {"mu": np.zeros(2), "sigma": np.eye(2)}}, r"missing key\(s\) \['mu', 'sigma'\]"),
])
def test_a_pickle_that_is_not_plain_statistics_is_refused_unrun(tmp_path, obj, match):
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps(obj))
    with pytest.raises(ValueError, match=match):
        load_reference(tmp_path / "bad.pkl")
