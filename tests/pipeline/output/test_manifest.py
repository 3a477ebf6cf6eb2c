"""manifest.json: round trip, validation, atomic write, both layouts (pipeline.output.manifest)."""

from __future__ import annotations

import json
import math
import os

import pytest

from pipeline.output import fs as output_fs
from pipeline.output.fs import open_output
from pipeline.output.layout import SIDE_DIR
from pipeline.output.manifest import FORMAT_VERSION, MANIFEST_NAME, Manifest, ManifestError, read_manifest, write_manifest
from pipeline.output.shards import ShardRecord, shard_schema


def shard(index, size=5):
    return ShardRecord(index, index * size, (index + 1) * size, f"shard-{index:05d}.parquet", size, 100 + index, "ab" * 32)


def make_manifest(**kw):
    fields = dict(
        status="running",
        config={"run": {"num_samples": 15, "seed": 0}},
        sampler_state={"name": "heun", "version": 1, "steps": 18},
        model={"factory": "pipeline.models:tiny", "checkpoint_sha256": "cd" * 32},
        schema=shard_schema("parquet", "uint8", (3, 8, 8), labeled=True),
        noise_scheme="philox-per-index-v1",
        num_samples=15,
        shards=[shard(2), shard(0)],
    )
    return Manifest(**{**fields, **kw})


@pytest.mark.parametrize("backend", ["local", "memory"])
def test_round_trip(backend, tmp_path):
    url = str(tmp_path) if backend == "local" else f"memory://manifest-test/{tmp_path.name}"
    fs, root = open_output(url)
    assert read_manifest(fs, root) is None
    written = write_manifest(fs, root, make_manifest())
    assert written.updated >= written.created
    back = read_manifest(fs, root)
    assert back == written
    assert [s.index for s in back.shards] == [0, 2] and isinstance(back.shards[0], ShardRecord)
    raw = json.loads(fs.cat_file(f"{root}/{SIDE_DIR}/{MANIFEST_NAME}"))
    assert FORMAT_VERSION == 2 and not fs.exists(f"{root}/{MANIFEST_NAME}")
    assert raw["format_version"] == FORMAT_VERSION and raw["schema"]["shape"] == [3, 8, 8]
    assert raw["shards"][0] == {"index": 0, "start": 0, "stop": 5, "path": "shard-00000.parquet", "rows": 5, "bytes": 100, "sha256": "ab" * 32, "fingerprint": None}


def test_non_finite_floats_are_strict_json_and_read_back(tmp_path):
    """A diffusers scheduler_config holds -inf, a config may hold .inf: the file parses with a strict parser (no
    -Infinity / NaN literals) and reads back equal, so fingerprints, verify and resume see the same values."""
    fs, root = open_output(str(tmp_path))
    state = {"name": "dpmpp_2m", "version": 2, "scheduler": {"lambda_min_clipped": -math.inf, "x": [math.inf, 1.5]}}
    written = write_manifest(fs, root, make_manifest(sampler_state=state, metrics={"fid": {"fid": math.nan}}))
    text = (tmp_path / SIDE_DIR / MANIFEST_NAME).read_text()

    def no_constants(name):
        raise AssertionError(f"{name} in manifest.json")

    raw = json.loads(text, parse_constant=no_constants)
    assert raw["sampler_state"]["scheduler"] == {"lambda_min_clipped": {"$float": "-Infinity"},
                                                 "x": [{"$float": "Infinity"}, 1.5]}
    assert raw["metrics"] == {"fid": {"fid": {"$float": "NaN"}}}
    back = read_manifest(fs, root)
    assert back.sampler_state == state and math.isnan(back.metrics["fid"]["fid"])
    assert back.model_dump(exclude={"metrics"}) == written.model_dump(exclude={"metrics"})


def test_manifests_with_bare_infinity_literals_still_read(tmp_path):
    """Manifests written before the tag held -Infinity as Python's json writes it."""
    fs, root = open_output(str(tmp_path))
    write_manifest(fs, root, make_manifest())
    path = tmp_path / SIDE_DIR / MANIFEST_NAME
    raw = json.loads(path.read_text())
    raw["sampler_state"]["lambda_min_clipped"] = -math.inf
    path.write_text(json.dumps(raw, indent=2))
    assert "-Infinity" in path.read_text()
    assert read_manifest(fs, root).sampler_state["lambda_min_clipped"] == -math.inf


def test_validation():
    with pytest.raises(ValueError, match="status"):
        make_manifest(status="done")
    with pytest.raises(ValueError, match="extra"):
        make_manifest(surprise=1)
    with pytest.raises(ValueError, match="duplicate shard"):
        make_manifest(shards=[shard(0), shard(0)])
    with pytest.raises(ValueError, match="overlaps"):
        make_manifest(shards=[shard(0), ShardRecord(1, 4, 10, "shard-00001.parquet", 6, 1, "x")])
    with pytest.raises(ValueError, match="leaves"):
        make_manifest(num_samples=12)
    with pytest.raises(ValueError, match="plain file name"):
        make_manifest(shards=[ShardRecord(0, 0, 5, "../x.parquet", 5, 1, "x")])


def test_format_version_1_lies_beside_the_shards(tmp_path):
    fs, root = open_output(str(tmp_path))
    written = write_manifest(fs, root, make_manifest(format_version=1))
    assert os.listdir(tmp_path) == [MANIFEST_NAME]
    assert read_manifest(fs, root) == written and written.format_version == 1


def write_raw(tmp_path, obj, where=SIDE_DIR):
    (tmp_path / where).mkdir(exist_ok=True)
    (tmp_path / where / MANIFEST_NAME).write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return open_output(str(tmp_path))


def test_corrupt_or_unknown_manifest_is_a_clear_error(tmp_path):
    fs, root = write_raw(tmp_path, '{"format_version": 2, "status": ')
    with pytest.raises(ManifestError, match="manifest.json is not valid JSON"):
        read_manifest(fs, root)

    good = json.loads(make_manifest().model_dump_json())
    write_raw(tmp_path, {**good, "format_version": 3, "new_field": 1})
    with pytest.raises(ManifestError, match="format_version 3; this seedshard reads format_version 1 or 2"):
        read_manifest(fs, root)

    write_raw(tmp_path, {**good, "format_version": 1})  # a version-1 manifest in the version-2 place
    with pytest.raises(ManifestError, match=f"format_version 1, whose manifest lies at .*{tmp_path.name}/{MANIFEST_NAME}"):
        read_manifest(fs, root)
    with pytest.raises(ValueError, match="format_version 3"):
        make_manifest(format_version=3)

    write_raw(tmp_path, {**good, "num_samples": "many"})
    with pytest.raises(ManifestError, match="invalid: num_samples"):
        read_manifest(fs, root)


def test_failed_write_keeps_the_previous_manifest(tmp_path, monkeypatch):
    fs, root = open_output(str(tmp_path))
    first = write_manifest(fs, root, make_manifest())

    def crash(src, dst):
        raise OSError("killed")

    monkeypatch.setattr(output_fs.os, "replace", crash)
    with pytest.raises(OSError):
        write_manifest(fs, root, make_manifest(status="complete"))
    assert read_manifest(fs, root) == first
    assert os.listdir(tmp_path) == [SIDE_DIR] and os.listdir(tmp_path / SIDE_DIR) == [MANIFEST_NAME]
