"""Shard encoding, atomic commit and verification (pipeline.output.shards, .fs, .dtypes, .codecs)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import subprocess
import sys
import textwrap
import traceback
import types
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.output import fs as output_fs
from pipeline.output.dtypes import SAMPLE_DTYPES, from_stored, to_stored
from pipeline.output.codecs.parquet import read_ray
from pipeline.output.fs import StorageError, cleanup_temp, is_local, open_output, resolve_url
from pipeline.output.layout import SIDE_DIR
from pipeline.output.shards import (
    ShardRecord,
    commit_shard,
    decode_shard,
    encode_shard,
    load_sidecars,
    shard_metadata,
    shard_name,
    verify_shard,
)
from pipeline.redact import redact_url, scrub

REPO = Path(__file__).resolve().parents[3]
SHAPE = (3, 4, 4)
META = {"seed": "7", "sampler": "heun"}


def make_shard(start=0, rows=6, dtype="float32", labeled=True):
    """(indices, labels, stored samples) for rows [start, start + rows)."""
    rng = np.random.default_rng(start)
    x = np.tanh(rng.standard_normal((rows, *SHAPE))).astype(np.float32)
    indices = np.arange(start, start + rows, dtype=np.int64)
    labels = rng.integers(0, 10, rows).astype(np.int64) if labeled else None
    return indices, labels, to_stored(x, dtype)


def encoded(fmt, dtype="float32", labeled=True, start=0, rows=6, version=2):
    return encode_shard(*make_shard(start, rows, dtype, labeled), fmt, META, version)


# ---------------------------------------------------------------------------- dtypes


def test_uint8_mapping_is_exact_and_clips():
    x = np.array([-1.0, 0.0, 1.0, -3.0, 2.5, 0.999, -0.999], dtype=np.float32)
    assert to_stored(x, "uint8").tolist() == [0, 128, 255, 0, 255, 255, 0]
    assert from_stored(np.array([0, 255], np.uint8), "uint8").tolist() == [-1.0, 1.0]
    y = np.linspace(-1, 1, 1001, dtype=np.float32)
    assert np.abs(from_stored(to_stored(y, "uint8"), "uint8") - y).max() <= 0.5 / 127.5 + 1e-6


def test_float_dtypes_round_trip():
    x = np.linspace(-1, 1, 11, dtype=np.float64)
    assert to_stored(x, "float32").dtype == np.float32
    assert from_stored(to_stored(x, "float16"), "float16").dtype == np.float32
    np.testing.assert_allclose(from_stored(to_stored(x, "float16"), "float16"), x, atol=1e-3)


def test_to_stored_rejects_bad_input():
    with pytest.raises(ValueError, match="allowed: float32, float16, uint8"):
        to_stored(np.zeros(2, np.float32), "bfloat16")
    with pytest.raises(ValueError, match="floating point"):
        to_stored(np.zeros(2, np.int64), "uint8")
    with pytest.raises(ValueError, match="NaN"):
        to_stored(np.array([0.0, np.nan], np.float32), "uint8")


def test_shard_name():
    assert shard_name(0, "parquet") == "shard-00000.parquet"
    assert shard_name(42, "safetensors") == "shard-00042.safetensors"
    assert shard_name(123456, "parquet") == "shard-123456.parquet"
    with pytest.raises(ValueError, match="allowed: parquet, safetensors"):
        shard_name(0, "npz")


# ---------------------------------------------------------------------------- encoding


@pytest.mark.parametrize("fmt", ["parquet", "safetensors"])
@pytest.mark.parametrize("dtype", SAMPLE_DTYPES)
@pytest.mark.parametrize("labeled", [True, False])
@pytest.mark.parametrize("version", [1, 2])
def test_round_trip(fmt, dtype, labeled, version):
    indices, labels, samples = make_shard(10, 6, dtype, labeled)
    shard = decode_shard(encode_shard(indices, labels, samples, fmt, META, version), fmt)
    np.testing.assert_array_equal(shard.indices, indices)
    assert shard.samples.dtype == samples.dtype and shard.samples.shape == (6, *SHAPE)
    np.testing.assert_array_equal(shard.samples, samples)
    if labeled:
        np.testing.assert_array_equal(shard.labels, labels)
    else:
        assert shard.labels is None
    assert shard.metadata == {**META, "seedshard.format_version": str(version)}


@pytest.mark.parametrize("fmt", ["parquet", "safetensors", "webdataset"])
@pytest.mark.parametrize("version", [1, 2])
def test_latents_round_trip_and_verify_against_the_schema(tmp_path, fmt, version):
    from pipeline.output.shards import shard_schema

    indices, labels, samples = make_shard(0, 6, "uint8")
    latents = np.random.default_rng(1).standard_normal((6, 4, 2, 2)).astype(np.float32)
    data = encode_shard(indices, labels, samples, fmt, META, version, latents)
    shard = decode_shard(data, fmt)
    np.testing.assert_array_equal(shard.latents, latents)
    np.testing.assert_array_equal(shard.samples, samples)
    assert decode_shard(encode_shard(indices, labels, samples, fmt, META, version), fmt).latents is None
    name = shard_name(0, fmt)
    record = commit_shard(*open_output(str(tmp_path)), name, data, {"index": 0, "start": 0, "stop": 6}, version)
    schema = shard_schema(fmt, "uint8", SHAPE, True, [4, 2, 2])
    fs, root = open_output(str(tmp_path))
    assert verify_shard(fs, root, record, schema=schema) == []
    wrong = verify_shard(fs, root, record, schema={**schema, "latent": {"shape": [4, 4, 4], "dtype": "float32"}})
    assert wrong == [f"{name}: schema differs: latent {{'shape': [4, 2, 2], 'dtype': 'float32'}} "
                     "(expected: {'shape': [4, 4, 4], 'dtype': 'float32'})"]
    plain = commit_shard(fs, root, name, encode_shard(indices, labels, samples, fmt, META, version),
                         {"index": 0, "start": 0, "stop": 6}, version)
    assert verify_shard(fs, root, plain, schema=schema) == [
        f"{name}: schema differs: latent None (expected: {{'shape': [4, 2, 2], 'dtype': 'float32'}})"]


@pytest.mark.parametrize("fmt", ["parquet", "safetensors"])
def test_encoding_is_deterministic(fmt):
    a = encode_shard(*make_shard(), fmt, META)
    b = encode_shard(*make_shard(), fmt, dict(reversed(META.items())))  # key order does not matter
    assert a == b
    assert a != encode_shard(*make_shard(), fmt, {**META, "seed": "8"})


def test_encoding_is_identical_in_another_process():
    cases = [(fmt, dtype, labeled, 0, 6, version) for fmt in ("parquet", "safetensors") for dtype in SAMPLE_DTYPES
             for labeled in (True, False) for version in (1, 2)]
    here = [hashlib.sha256(encoded(*case)).hexdigest() for case in cases]
    script = textwrap.dedent(
        f"""
        import hashlib
        from tests.pipeline.output.test_shards import encoded
        for case in {cases!r}:
            print(hashlib.sha256(encoded(*case)).hexdigest())
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == here


def test_parquet_opens_with_pyarrow(tmp_path):
    indices, labels, samples = make_shard(0, 6, "float16")
    path = tmp_path / "s.parquet"
    path.write_bytes(encode_shard(indices, labels, samples, "parquet", META))
    table = pq.read_table(path)
    assert table.column_names == ["index", "label", "sample"]  # no image column: not uint8
    sample_type = table.schema.field("sample").type  # nested fixed-size lists, one level per axis
    assert sample_type == pa.list_(pa.list_(pa.list_(pa.float16(), 4), 4), 3)
    assert not table.schema.field("index").nullable and table.schema.field("label").nullable
    values = table["sample"].combine_chunks().flatten().flatten().flatten()
    np.testing.assert_array_equal(values.to_numpy().reshape(6, *SHAPE), samples)
    assert table.schema.metadata[b"sampler"] == b"heun"
    assert table.schema.metadata[b"seedshard.format_version"] == b"2"
    assert b"huggingface" in table.schema.metadata
    assert pq.ParquetFile(path).metadata.num_row_groups == 1


def test_parquet_version_1_is_a_fixed_shape_tensor(tmp_path):
    indices, labels, samples = make_shard(0, 6, "float16")
    path = tmp_path / "s.parquet"
    path.write_bytes(encode_shard(indices, labels, samples, "parquet", META, 1))
    table = pq.read_table(path)
    assert table.column_names == ["index", "label", "sample"]
    sample_type = table.schema.field("sample").type
    assert isinstance(sample_type, pa.FixedShapeTensorType)
    assert sample_type.extension_name == "arrow.fixed_shape_tensor"
    assert tuple(sample_type.shape) == SHAPE and sample_type.value_type == pa.float16()
    assert not table.schema.field("index").nullable and table.schema.field("label").nullable
    np.testing.assert_array_equal(table["sample"].combine_chunks().to_numpy_ndarray(), samples)
    assert table.schema.metadata[b"sampler"] == b"heun"
    assert table.schema.metadata[b"seedshard.format_version"] == b"1"
    assert b"huggingface" not in table.schema.metadata
    assert pq.ParquetFile(path).metadata.num_row_groups == 1


@pytest.mark.parametrize("shape", [(1, 5, 4), (3, 4, 4)])
def test_uint8_images_carry_a_deterministic_png_column(shape):
    from PIL import Image

    samples = np.random.default_rng(0).integers(0, 256, (6, *shape)).astype(np.uint8)
    data = encode_shard(np.arange(6), None, samples, "parquet", META)
    table = pq.read_table(pa.BufferReader(data))
    assert table.column_names == ["index", "label", "sample", "image"]
    for k, cell in enumerate(table["image"].to_pylist()):
        assert cell["path"] is None
        image = Image.open(io.BytesIO(cell["bytes"]))
        assert image.mode == ("L" if shape[0] == 1 else "RGB") and image.size == (shape[2], shape[1])
        np.testing.assert_array_equal(np.asarray(image).reshape(shape[1], shape[2], -1).transpose(2, 0, 1), samples[k])
    assert data == encode_shard(np.arange(6), None, samples, "parquet", META)
    np.testing.assert_array_equal(decode_shard(data, "parquet").samples, samples)


@pytest.mark.parametrize("dtype, shape", [("float32", (3, 4, 4)), ("uint8", (2, 4, 4)), ("uint8", (3, 4)), ("uint8", (1, 2, 4, 4))])
def test_no_image_column_for_other_samples(dtype, shape):
    samples = np.zeros((2, *shape), dtype)
    table = pq.read_table(pa.BufferReader(encode_shard(np.arange(2), None, samples, "parquet", META)))
    assert table.column_names == ["index", "label", "sample"]
    assert pq.read_table(pa.BufferReader(encode_shard(np.arange(2), None, np.zeros((2, 1, 4, 4), np.uint8), "parquet",
                                                      META, 1))).column_names == ["index", "label", "sample"]


def test_parquet_unlabeled_has_null_labels():
    table = pq.read_table(pa.BufferReader(encoded("parquet", labeled=False)))
    assert table["label"].null_count == 6 and table.schema.field("label").type == pa.int64()


def test_parquet_opens_with_pandas(tmp_path):
    pd = pytest.importorskip("pandas")
    indices, labels, samples = make_shard(0, 6, "uint8")
    path = tmp_path / "s.parquet"
    path.write_bytes(encode_shard(indices, labels, samples, "parquet", META))
    df = pd.read_parquet(path)
    assert list(df.columns) == ["index", "label", "sample", "image"] and len(df) == 6
    assert df["index"].tolist() == indices.tolist() and df["label"].tolist() == labels.tolist()
    # pandas holds each sample as nested object arrays (one level per axis).
    np.testing.assert_array_equal(np.array([np.stack([np.stack(c) for c in s]) for s in df["sample"]]), samples)


@pytest.mark.parametrize("version", [1, 2])
def test_parquet_opens_with_ray_data(tmp_path, ray_local, version):
    """Version 1: plain ray.data.read_parquet; version 2: the codec's reader, which makes the
    nested lists an arrow.fixed_shape_tensor again."""
    indices, labels, samples = make_shard(0, 6, "float16")
    path = tmp_path / "s.parquet"
    path.write_bytes(encode_shard(indices, labels, samples, "parquet", META, version))
    ds = ray_local.data.read_parquet(str(path)) if version == 1 else read_ray([str(path)], None)
    assert isinstance(ds.schema().base_schema.field("sample").type, pa.FixedShapeTensorType)
    row = ds.take(1)[0]
    assert row["sample"].shape == SHAPE and row["sample"].dtype == np.float16
    batch = next(iter(ds.iter_batches(batch_size=6, batch_format="numpy")))
    assert batch["sample"].shape == (6, *SHAPE) and batch["sample"].dtype == np.float16
    order = np.argsort(batch["index"])
    np.testing.assert_array_equal(batch["sample"][order], samples)
    np.testing.assert_array_equal(batch["label"][order], labels)


def test_safetensors_metadata_is_readable_by_safetensors(tmp_path):
    from safetensors import safe_open

    path = tmp_path / "s.safetensors"
    path.write_bytes(encoded("safetensors", dtype="uint8"))
    with safe_open(path, framework="np") as f:
        assert f.metadata() == {**META, "seedshard.format_version": "2"}
        assert sorted(f.keys()) == ["index", "label", "sample"]
        assert f.get_tensor("sample").shape == (6, *SHAPE)


def test_decode_rejects_garbage():
    with pytest.raises(ValueError, match="Parquet"):
        decode_shard(b"not a shard", "parquet")
    with pytest.raises(ValueError, match="safetensors"):
        decode_shard(b"not a shard", "safetensors")
    wrong = pa.BufferOutputStream()
    pq.write_table(pa.table({"index": [1], "x": [2]}), wrong)
    with pytest.raises(ValueError, match="columns"):
        decode_shard(wrong.getvalue().to_pybytes(), "parquet")


# ---------------------------------------------------------------------------- commit


def commit(fs, root, index=0, fmt="parquet", rows=6, **record):
    data = encoded(fmt, start=index * rows, rows=rows)
    rec = {"index": index, "start": index * rows, "stop": (index + 1) * rows, **record}
    return commit_shard(fs, root, shard_name(index, fmt), data, rec), data


@pytest.mark.parametrize("fmt", ["parquet", "safetensors"])
def test_commit_verify_and_sidecars_on_every_backend(output, fmt):
    url, options = output
    fs, root = open_output(url, options)
    rec0, data = commit(fs, root, 0, fmt)
    rec1, _ = commit(fs, root, 1, fmt)
    assert rec0 == ShardRecord(0, 0, 6, shard_name(0, fmt), 6, len(data), hashlib.sha256(data).hexdigest())
    assert fs.cat_file(f"{root}/{shard_name(0, fmt)}") == data
    assert json.loads(fs.cat_file(f"{root}/{SIDE_DIR}/shard-00000.json")) == dataclasses.asdict(rec0)
    assert not fs.exists(f"{root}/shard-00000.json")
    assert load_sidecars(fs, root) == {0: rec0, 1: rec1}
    assert verify_shard(fs, root, rec1) == [] and verify_shard(fs, root, rec1, deep=False) == []
    assert cleanup_temp(fs, root) == []


def test_crash_before_rename_leaves_no_final_file(tmp_path, monkeypatch):
    fs, root = open_output(str(tmp_path))

    def crash(src, dst):
        assert Path(src).exists()  # the temp file was written
        raise OSError("disk gone")

    monkeypatch.setattr(output_fs.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        commit(fs, root)
    assert os.listdir(tmp_path) in ([], [SIDE_DIR]) and not os.listdir(tmp_path / SIDE_DIR)  # no final name, no sidecar, temp removed
    assert load_sidecars(fs, root) == {}


def test_crash_before_sidecar_leaves_shard_unfinished(tmp_path, monkeypatch):
    fs, root = open_output(str(tmp_path))
    real, calls = os.replace, []

    def replace_once(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("killed")
        real(src, dst)

    monkeypatch.setattr(output_fs.os, "replace", replace_once)
    with pytest.raises(OSError):
        commit(fs, root)
    assert sorted(os.listdir(tmp_path)) == [SIDE_DIR, "shard-00000.parquet"] and not os.listdir(tmp_path / SIDE_DIR)
    assert load_sidecars(fs, root) == {}


def test_hard_crash_leaves_only_a_temp_file_that_cleanup_removes(tmp_path):
    script = textwrap.dedent(
        f"""
        import os
        from pipeline.output import fs
        from tests.pipeline.output.test_shards import commit
        fs.os.replace = lambda src, dst: os._exit(3)  # the process dies mid-commit
        commit(*fs.open_output({str(tmp_path)!r}))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    assert subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env).returncode == 3
    assert os.listdir(tmp_path) == [SIDE_DIR]  # the dataset folder holds nothing a reader would see
    (leftover,) = os.listdir(tmp_path / SIDE_DIR)
    assert leftover.startswith(".shard-00000.parquet.tmp-")
    fs, root = open_output(str(tmp_path))
    assert load_sidecars(fs, root) == {}
    assert cleanup_temp(fs, root) == [f"{SIDE_DIR}/{leftover}"]
    assert os.listdir(tmp_path / SIDE_DIR) == []


def test_verify_finds_damage(tmp_path):
    fs, root = open_output(str(tmp_path))
    recs = [commit(fs, root, i)[0] for i in range(4)]
    path = [tmp_path / r.path for r in recs]

    data = path[0].read_bytes()
    path[0].write_bytes(data[:-10])  # truncated
    problems = verify_shard(fs, root, recs[0])
    assert any("size" in p for p in problems) and any("sha256" in p for p in problems)
    assert any("cannot decode" in p for p in problems)
    assert verify_shard(fs, root, recs[0], deep=False) == [f"{recs[0].path}: size {len(data) - 10} bytes, expected {len(data)}"]

    data = bytearray(path[1].read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit, same size
    path[1].write_bytes(bytes(data))
    assert verify_shard(fs, root, recs[1], deep=False) == []
    assert any("sha256" in p for p in verify_shard(fs, root, recs[1]))

    path[2].unlink()
    assert verify_shard(fs, root, recs[2]) == [f"{recs[2].path}: missing"]
    assert verify_shard(fs, root, recs[2], deep=False) == [f"{recs[2].path}: missing"]

    # A shard whose file holds 5 rows where its range needs 6 (checksum of what was written).
    short = encoded("parquet", start=18, rows=5)
    rec = commit_shard(fs, root, shard_name(3, "parquet"), short, {"index": 3, "start": 18, "stop": 24})
    problems = verify_shard(fs, root, rec)
    assert any("5 rows" in p for p in problems) and any("range(18, 24)" in p for p in problems)

    # Checksum matches but the bytes are no shard at all.
    rec = commit_shard(fs, root, shard_name(4, "parquet"), b"garbage", {"index": 4, "start": 24, "stop": 30})
    assert [p for p in verify_shard(fs, root, rec) if "cannot decode" in p]


def _no_constants(name):
    raise ValueError(f"{name} is not JSON (RFC 8259)")


@pytest.mark.parametrize("fmt", ["parquet", "safetensors", "webdataset"])
def test_sampler_state_metadata_is_strict_json_and_shards_with_the_bare_literal_still_verify(tmp_path, fmt):
    """A diffusers DPMSolverMultistep state holds lambda_min_clipped = -inf: every shard's seedshard.sampler_state is
    RFC 8259 JSON (JavaScript's JSON.parse and jq reject a bare -Infinity), tagged as in the manifest; shards written
    with the bare literal still verify (and so resume), and another state is still caught."""
    cfg = types.SimpleNamespace(run=types.SimpleNamespace(seed=3, dtype="float32"))
    state = {"name": "dpmpp_2m", "version": 1, "time_kwargs": {"scheduler": {"lambda_min_clipped": -math.inf}}}
    meta = shard_metadata(cfg, state, "v2")
    stored = json.loads(meta["seedshard.sampler_state"], parse_constant=_no_constants)
    assert stored["time_kwargs"]["scheduler"] == {"lambda_min_clipped": {"$float": "-Infinity"}}
    fs, root = open_output(str(tmp_path))
    legacy = {**meta, "seedshard.sampler_state": json.dumps(state, sort_keys=True)}
    other = {**meta, "seedshard.sampler_state": json.dumps({**state, "version": 2}, sort_keys=True)}
    recs = [commit_shard(fs, root, shard_name(i, fmt), encode_shard(*make_shard(6 * i), fmt, m),
                         {"index": i, "start": 6 * i, "stop": 6 * i + 6}) for i, m in enumerate((meta, legacy, other))]
    assert decode_shard((tmp_path / recs[0].path).read_bytes(), fmt).metadata["seedshard.sampler_state"] == \
        meta["seedshard.sampler_state"]
    assert verify_shard(fs, root, recs[0], metadata=meta) == []
    assert verify_shard(fs, root, recs[1], metadata=meta) == []
    assert [p.split(" is ")[0] for p in verify_shard(fs, root, recs[2], metadata=meta)] == \
        [f"{recs[2].path}: metadata seedshard.sampler_state"]


def test_load_sidecars_skips_unreadable_ones(tmp_path):
    fs, root = open_output(str(tmp_path))
    rec, _ = commit(fs, root, 0)
    (tmp_path / SIDE_DIR / "shard-00001.json").write_text("{not json")
    (tmp_path / SIDE_DIR / "shard-00002.json").write_text(json.dumps({**dataclasses.asdict(rec), "index": 2}))  # names shard 0's file
    assert load_sidecars(fs, root) == {0: rec}


# ---------------------------------------------------------------------------- URLs and errors


def test_open_output_creates_local_dir(tmp_path):
    fs, root = open_output(str(tmp_path / "a" / "b"))
    assert root == str(tmp_path / "a" / "b") and (tmp_path / "a" / "b").is_dir()
    assert is_local(fs)


def test_open_output_errors_are_one_clean_line(tmp_path, s3_secret):
    (tmp_path / "file").write_text("x")
    for url, reason in [("nosuchproto://x/y", "nosuchproto"), (str(tmp_path / "file" / "sub"), "file/sub")]:
        with pytest.raises(StorageError) as err:
            open_output(url, {"secret": s3_secret})
        message = str(err.value)
        assert "\n" not in message and url in message and reason in message
        assert s3_secret not in "".join(traceback.format_exception(err.value))


def test_url_credentials_and_option_values_are_redacted(s3_secret):
    assert redact_url("ftp://user:pw@host/x") == "ftp://***@host/x"
    assert redact_url("s3://bucket/x") == "s3://bucket/x"
    assert scrub(f"denied for {s3_secret}!", {"client_kwargs": {"secret": s3_secret}}) == "denied for ***!"


def test_sidecars_and_cleanup_in_a_dir_with_glob_characters(tmp_path):
    fs, root = open_output(str(tmp_path / "run[1]*"))
    rec, _ = commit(fs, root)
    (Path(root) / ".shard-00001.parquet.tmp-abc").write_bytes(b"partial")
    assert load_sidecars(fs, root) == {0: rec}
    assert cleanup_temp(fs, root) == [".shard-00001.parquet.tmp-abc"]
    assert verify_shard(fs, root, rec) == []


def test_s3_bad_bucket_error_hides_secret(s3, s3_secret):
    _, options = s3
    for opts in (options, {**options, "key": "seedshard-fake-key-id", "secret": s3_secret}):
        with pytest.raises(StorageError, match="no-such-bucket") as err:
            open_output("s3://no-such-bucket/run", opts)
        assert s3_secret not in "".join(traceback.format_exception(err.value))


def test_s3_write_to_missing_bucket_hides_secret(s3, s3_secret):
    _, options = s3
    fs, _ = resolve_url("s3://no-such-bucket/run", options)
    with pytest.raises(Exception) as err:
        commit(fs, "no-such-bucket/run")
    assert s3_secret not in "".join(traceback.format_exception(err.value))
    assert verify_shard(fs, "no-such-bucket/run", ShardRecord(0, 0, 6, "shard-00000.parquet", 6, 1, "x")) == [
        "shard-00000.parquet: missing"
    ]


def test_encoding_a_shard_does_not_import_pandas():
    """`pa.array` imports pandas (about 0.3 s) to check its argument; every new worker process would pay it."""
    code = textwrap.dedent("""
        import sys
        import numpy as np
        from pipeline.output.shards import encode_shard
        encode_shard(np.arange(3), np.arange(3), np.zeros((3, 2, 2), np.float32), "parquet", {})
        encode_shard(np.arange(3), np.arange(3), np.zeros((3, 3, 2, 2), np.uint8), "parquet", {})  # with images
        assert "pandas" not in sys.modules, "pandas was imported"
    """)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
