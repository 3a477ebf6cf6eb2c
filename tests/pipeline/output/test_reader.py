"""Reading samples back by global index (pipeline.output.reader)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pipeline.output.manifest import Manifest, write_manifest
from pipeline.output.reader import read_dataset, read_samples
from pipeline.output.dtypes import to_stored
from pipeline.output.fs import open_output
from pipeline.output.shards import commit_shard, encode_shard, shard_name, shard_schema

N, SHARD_SIZE, SHAPE = 23, 5, (2, 3, 3)


def expected(dtype="float32"):
    """What the output holds: samples (N, *SHAPE) in ``dtype`` and labels (N,); row i = index i."""
    x = np.tanh(np.random.default_rng(0).standard_normal((N, *SHAPE))).astype(np.float32)
    return to_stored(x, dtype), (np.arange(N) * 7 % 10).astype(np.int64)


def write_output(url, options=None, fmt="parquet", dtype="float32", labeled=True, skip=(), status="complete"):
    """Commit shards of N samples (SHARD_SIZE each, last one short) and a manifest; ``skip`` leaves shards out."""
    fs, root = open_output(url, options)
    samples, labels = expected(dtype)
    records = []
    for k, start in enumerate(range(0, N, SHARD_SIZE)):
        if k in skip:
            continue
        rows = slice(start, min(start + SHARD_SIZE, N))
        data = encode_shard(np.arange(N)[rows], labels[rows] if labeled else None, samples[rows], fmt, {"seed": "0"})
        records.append(commit_shard(fs, root, shard_name(k, fmt), data, {"index": k, "start": rows.start, "stop": rows.stop}))
    manifest = Manifest(
        status=status,
        config={},
        sampler_state={"name": "test", "version": 1},
        model={},
        schema=shard_schema(fmt, dtype, SHAPE, labeled),
        noise_scheme="test",
        num_samples=N,
        shards=records,
    )
    write_manifest(fs, root, manifest)
    return fs, root


@pytest.mark.parametrize("fmt", ["parquet", "safetensors"])
@pytest.mark.parametrize("dtype", ["float16", "uint8"])
def test_read_all_in_index_order(tmp_path, fmt, dtype):
    write_output(str(tmp_path), fmt=fmt, dtype=dtype)
    samples = read_samples(str(tmp_path))
    assert samples.dtype == dtype and samples.shape == (N, *SHAPE)
    np.testing.assert_array_equal(samples, expected(dtype)[0])


def test_arbitrary_order_across_shards_with_labels(output):
    url, options = output
    write_output(url, options, fmt="safetensors")
    indices = [22, 0, 4, 5, 9, 10, 4, 17]  # crosses every shard boundary, one repeat
    samples, labels = read_samples(url, indices, storage_options=options, with_labels=True)
    want_samples, want_labels = expected()
    np.testing.assert_array_equal(samples, want_samples[indices])
    np.testing.assert_array_equal(labels, want_labels[indices])


def test_unlabeled_output_and_empty_selection(tmp_path):
    write_output(str(tmp_path), labeled=False)
    samples, labels = read_samples(str(tmp_path), [3, 1], with_labels=True)
    assert labels is None and samples.shape == (2, *SHAPE)
    assert read_samples(str(tmp_path), []).shape == (0, *SHAPE)


def test_out_of_range_names_the_valid_range(tmp_path):
    write_output(str(tmp_path))
    for bad in ([0, N], [-1]):
        with pytest.raises(IndexError, match=r"holds indices \[0, 23\)"):
            read_samples(str(tmp_path), bad)


def test_only_integer_indices(tmp_path):
    """0.9 is not row 0 and 49.99 not row 49: non-integers are refused, integer numpy arrays accepted."""
    write_output(str(tmp_path))
    for bad in ([0.9, 19.99], [True, False], ["3"]):
        with pytest.raises(TypeError, match=r"sample indices must be integers \(got \["):
            read_samples(str(tmp_path), bad)
    np.testing.assert_array_equal(read_samples(str(tmp_path), np.array([3, 1], dtype=np.int32)),
                                  expected()[0][[3, 1]])


def test_reads_only_the_shards_it_needs(tmp_path):
    write_output(str(tmp_path))
    (tmp_path / shard_name(3, "parquet")).unlink()
    np.testing.assert_array_equal(read_samples(str(tmp_path), [0, 14, 21]), expected()[0][[0, 14, 21]])
    with pytest.raises(FileNotFoundError):
        read_samples(str(tmp_path), [15])


def test_partial_output_and_corrupt_shard(tmp_path):
    write_output(str(tmp_path), skip=(1,), status="running")
    np.testing.assert_array_equal(read_samples(str(tmp_path), [4, 10]), expected()[0][[4, 10]])
    with pytest.raises(IndexError, match=r"\[5, 9\] are in no committed shard .* \(status running\)"):
        read_samples(str(tmp_path), [5, 9])
    path = tmp_path / shard_name(0, "parquet")
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ValueError, match="shard-00000.parquet .* does not match its manifest entry"):
        read_samples(str(tmp_path), [0])


def test_no_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        read_samples(str(tmp_path))


def test_read_dataset(tmp_path, ray_local):
    write_output(str(tmp_path), dtype="uint8")
    temp_dir = ray_local._private.worker._global_node.get_temp_dir_path()
    rows = sorted(read_dataset(str(tmp_path)).take_all(), key=lambda r: r["index"])
    assert ray_local._private.worker._global_node.get_temp_dir_path() == temp_dir  # the Ray it found
    samples, labels = expected("uint8")
    assert [r["index"] for r in rows] == list(range(N))
    assert rows[7]["sample"].shape == SHAPE and rows[7]["sample"].dtype == np.uint8
    np.testing.assert_array_equal(np.stack([r["sample"] for r in rows]), samples)
    np.testing.assert_array_equal([r["label"] for r in rows], labels)


def test_read_dataset_on_s3(s3, ray_local):
    prefix, options = s3
    write_output(f"{prefix}/dataset", options)
    ds = read_dataset(f"{prefix}/dataset", storage_options=options)
    assert ds.count() == N
    assert ds.take(1)[0]["sample"].shape == SHAPE


@pytest.mark.slow
def test_read_dataset_without_ray_starts_a_private_one(tmp_path):
    """No Ray and no RAY_ADDRESS: a private local Ray (own temp dir, removed at exit; no dashboard; auth off),
    nothing written to the user's home."""
    write_output(str(tmp_path / "out"), dtype="uint8")
    home = tmp_path / "home"
    home.mkdir()
    script = textwrap.dedent(f"""
        import json, os, ray
        from pipeline.output.reader import read_dataset
        n = read_dataset({str(tmp_path / "out")!r}).count()
        node = ray._private.worker._global_node
        print(json.dumps({{"n": n, "temp": node.get_temp_dir_path(), "dashboard": node.address_info.get("webui_url"),
                          "auth": os.environ.get("RAY_AUTH_MODE")}}))
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env.update(HOME=str(home), PYTHONPATH=str(Path(__file__).resolve().parents[3]))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300, check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["n"] == N and found["temp"].startswith("/tmp/ss-ray-") and not found["dashboard"]
    assert found["auth"] == "disabled"
    assert not os.path.exists(found["temp"]) and list(home.iterdir()) == []


def test_read_dataset_rejects_safetensors(tmp_path):
    write_output(str(tmp_path), fmt="safetensors")
    with pytest.raises(ValueError, match="reads parquet, webdataset outputs"):
        read_dataset(str(tmp_path))
