"""WebDataset shards (pipeline.output.codecs.webdataset): round trip, deterministic tar, and the readers it targets."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap

import numpy as np
import pytest

from pipeline.output.dtypes import SAMPLE_DTYPES
from pipeline.output.reader import read_dataset, read_samples
from pipeline.output.shards import decode_shard, encode_shard
from tests.pipeline.output.test_reader import N, write_output
from tests.pipeline.output.test_reader import expected as reader_expected
from tests.pipeline.output.test_shards import META, REPO, SHAPE, encoded, make_shard

WDS = "webdataset"


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


@pytest.mark.parametrize("dtype", SAMPLE_DTYPES)
@pytest.mark.parametrize("labeled", [True, False])
@pytest.mark.parametrize("shape", [SHAPE, (1, 5, 3), (2, 4, 4), (7,)])
def test_round_trip(dtype, labeled, shape):
    rng = np.random.default_rng(3)
    samples = (rng.integers(0, 256, (4, *shape)) if dtype == "uint8" else rng.standard_normal((4, *shape))).astype(dtype)
    labels = np.array([3, 0, 9, 1]) if labeled else None
    shard = decode_shard(encode_shard(np.arange(10, 14), labels, samples, WDS, META), WDS)
    np.testing.assert_array_equal(shard.indices, np.arange(10, 14))
    assert shard.samples.dtype == samples.dtype and shard.samples.shape == samples.shape
    np.testing.assert_array_equal(shard.samples, samples)
    assert shard.labels is None if not labeled else shard.labels.tolist() == [3, 0, 9, 1]
    assert shard.labels is None or shard.labels.dtype == np.int64
    assert shard.metadata == {**META, "seedshard.format_version": "2"}


def test_records_are_png_for_uint8_images_else_npy():
    def names(dtype, shape, labeled=True):
        samples = np.zeros((2, *shape), dtype)
        return [m.name for m in members(encode_shard(np.arange(7, 9), np.array([4, 5]) if labeled else None,
                                                     samples, WDS, {"seedshard.seed": "3"}))]

    assert names("uint8", (3, 2, 2)) == ["0000000007.cls", "0000000007.json", "0000000007.png",
                                         "0000000008.cls", "0000000008.json", "0000000008.png"]
    assert names("uint8", (1, 2, 2), labeled=False) == ["0000000007.json", "0000000007.png",
                                                        "0000000008.json", "0000000008.png"]
    assert names("float32", (3, 2, 2))[2] == "0000000007.npy"
    assert names("uint8", (2, 2, 2))[2] == "0000000007.npy"  # two channels: not an image
    data = encode_shard(np.arange(7, 9), np.array([4, 5]), np.zeros((2, 1, 2, 2), np.uint8), WDS, {"seedshard.seed": "3"})
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert json.loads(tar.extractfile("0000000008.json").read()) == {"index": 8, "label": 5, "seed": 3}
        assert tar.extractfile("0000000008.cls").read() == b"5"


def test_tar_headers_are_fixed():
    data = encoded(WDS, dtype="uint8")
    infos = members(data)
    assert [m.name for m in infos] == sorted(m.name for m in infos)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode, m.type) for m in infos} == {(0, 0, 0, "", "", 0o644, tarfile.REGTYPE)}
    # Only the one global PAX header (the metadata) and no per-file PAX records such as mtime/atime.
    assert data.count(b"././@PaxHeader") == 1 and b"mtime=" not in data and b"atime=" not in data


def test_encoding_is_deterministic_and_identical_in_another_process():
    cases = [(dtype, labeled) for dtype in SAMPLE_DTYPES for labeled in (True, False)]
    here = [hashlib.sha256(encoded(WDS, dtype, labeled)).hexdigest() for dtype, labeled in cases]
    assert encode_shard(*make_shard(), WDS, dict(reversed(META.items()))) == encoded(WDS)
    assert encode_shard(*make_shard(), WDS, {**META, "seed": "8"}) != encoded(WDS)
    script = textwrap.dedent(f"""
        import hashlib
        from tests.pipeline.output.test_shards import encoded
        for dtype, labeled in {cases!r}:
            print(hashlib.sha256(encoded("webdataset", dtype, labeled)).hexdigest())
        """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "54321"}
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == here


def test_decode_rejects_what_is_not_a_shard():
    with pytest.raises(ValueError, match="not a readable tar file"):
        decode_shard(b"not a shard" * 100, WDS)

    def tar_of(files: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"seedshard.format_version": "1"}) as tar:
            for name, content in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        return buf.getvalue()

    good = {"0000000001.json": b'{"index": 1, "label": 2, "seed": 0}', "0000000001.cls": b"2"}
    npy = io.BytesIO()
    np.save(npy, np.zeros(3, np.float32))
    assert decode_shard(tar_of({**good, "0000000001.npy": npy.getvalue()}), WDS).labels.tolist() == [2]
    with pytest.raises(ValueError, match="no records|not a readable tar"):
        decode_shard(tar_of({}), WDS)
    with pytest.raises(ValueError, match="expected json, one of png/npy"):
        decode_shard(tar_of(good), WDS)
    with pytest.raises(ValueError, match="disagrees with .json label"):
        decode_shard(tar_of({**good, "0000000001.cls": b"3", "0000000001.npy": npy.getvalue()}), WDS)
    with pytest.raises(ValueError, match="does not match its key"):
        decode_shard(tar_of({"0000000002.json": good["0000000001.json"], "0000000002.cls": b"2",
                             "0000000002.npy": npy.getvalue()}), WDS)
    with pytest.raises(ValueError, match="cannot read its .png"):
        decode_shard(tar_of({**good, "0000000001.png": b"\x89PNG broken"}), WDS)


def test_read_samples(tmp_path):
    write_output(str(tmp_path), fmt=WDS, dtype="uint8")
    samples, labels = read_samples(str(tmp_path), [22, 0, 4, 5, 9], with_labels=True)
    want_samples, want_labels = reader_expected("uint8")
    np.testing.assert_array_equal(samples, want_samples[[22, 0, 4, 5, 9]])
    np.testing.assert_array_equal(labels, want_labels[[22, 0, 4, 5, 9]])


def test_the_webdataset_library_reads_it(tmp_path):
    wds = pytest.importorskip("webdataset")
    samples, labels = reader_expected("uint8")
    images = samples[:, :1]  # (N, 1, 3, 3) grayscale images
    path = tmp_path / "shard-00000.tar"
    path.write_bytes(encode_shard(np.arange(N), labels, images, WDS, {"seedshard.seed": "5"}))
    rows = list(wds.WebDataset(str(path), shardshuffle=False).decode("l8").to_tuple("__key__", "png", "cls", "json"))
    assert [r[0] for r in rows] == [f"{i:010d}" for i in range(N)]
    np.testing.assert_array_equal(np.stack([r[1] for r in rows]), images[:, 0])
    assert [r[2] for r in rows] == labels.tolist()
    assert rows[4][3] == {"index": 4, "label": int(labels[4]), "seed": 5}


def test_ray_data_reads_it(tmp_path, ray_local):
    write_output(str(tmp_path), fmt=WDS, dtype="uint8")  # samples (2, 3, 3): .npy records
    raw = ray_local.data.read_webdataset(sorted(map(str, tmp_path.glob("*.tar"))), decoder=None).take_all()
    assert sorted(r["__key__"] for r in raw) == [f"{i:010d}" for i in range(N)]
    rows = sorted(read_dataset(str(tmp_path)).take_all(), key=lambda r: r["index"])
    samples, labels = reader_expected("uint8")
    assert [r["index"] for r in rows] == list(range(N))
    np.testing.assert_array_equal(np.stack([r["sample"] for r in rows]), samples)
    np.testing.assert_array_equal([r["label"] for r in rows], labels)


@pytest.mark.slow
def test_a_webdataset_job_resumes_verifies_and_holds_the_parquet_samples(tmp_path, ray_local):
    from pipeline import run_job
    from pipeline.output.verify import verify_output
    from tests.pipeline.jobs import digests, gaussian_job, reference_digests, write_output_in_process

    def job(name, fmt):
        return gaussian_job(str(tmp_path / name), run={"format": fmt, "dtype": "uint8", "labels": "balanced"},
                            model={"shape": [3, 4, 4], "num_classes": 10, "factory": "tests.pipeline.jobs:probe_gaussian",
                                   "kwargs": {}}, cluster={"num_workers": 1})

    cfg = job("wds", WDS)
    first = run_job(cfg)
    assert [s.path for s in first.shards] == [f"shard-0000{k}.tar" for k in range(4)]
    assert digests(first) == reference_digests(cfg)
    assert verify_output(cfg.run.output) == []
    (tmp_path / "wds" / "shard-00001.tar").unlink()
    damaged = tmp_path / "wds" / "shard-00002.tar"
    damaged.write_bytes(damaged.read_bytes()[:-2000])
    assert any("shard-00002.tar" in p for p in verify_output(cfg.run.output))
    assert digests(run_job(cfg)) == digests(first)
    assert verify_output(cfg.run.output) == []
    write_output_in_process(job("pq", "parquet"))
    samples, labels = read_samples(str(tmp_path / "wds"), with_labels=True)
    want_samples, want_labels = read_samples(str(tmp_path / "pq"), with_labels=True)
    np.testing.assert_array_equal(samples, want_samples)
    np.testing.assert_array_equal(labels, want_labels)


def test_read_samples_on_every_backend(output):
    url, options = output
    write_output(url, options, fmt=WDS, dtype="float16")
    np.testing.assert_array_equal(read_samples(url, [3, 21], storage_options=options), reader_expected("float16")[0][[3, 21]])
