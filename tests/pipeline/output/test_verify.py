"""`seedshard verify` / pipeline.output.verify.verify_output on outputs written in this process (no Ray needed)."""

import json
import os
import shutil

import numpy as np
import pyarrow.dataset
import pytest

from pipeline.output.fs import open_output
from pipeline.output.layout import side_path
from pipeline.output.shards import commit_shard, decode_shard, encode_shard
from pipeline.cli import main
from pipeline.output.manifest import read_manifest, write_manifest
from pipeline.output.verify import verify_output
from tests.pipeline.jobs import gaussian_job, write_output_in_process


@pytest.fixture(params=[2, 1], ids=["v2", "v1"])
def written(tmp_path, request):
    """(url, manifest) of a complete 4-shard output on local disk, in both layouts."""
    cfg = gaussian_job(str(tmp_path / "out"), sampler={"steps": 2})
    return cfg.run.output, write_output_in_process(cfg, request.param)


def test_a_whole_output_verifies_and_the_cli_says_ok(written, capsys):
    url, manifest = written
    assert verify_output(url) == []
    assert main(["verify", url]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"seedshard: {url}: OK, 70 samples in 4 shards")


def test_every_kind_of_damage_is_reported_and_the_cli_exits_1(written, capsys):
    url, manifest = written
    path = lambda name: os.path.join(url, name)  # noqa: E731
    data = bytearray(open(path("shard-00001.parquet"), "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path("shard-00001.parquet"), "wb").write(data)                        # flipped byte
    os.remove(path("shard-00002.parquet"))                                      # missing file
    open(path("shard-00003.parquet"), "r+b").truncate(100)                      # truncated
    sidecar = side_path(url, "shard-00000.json", manifest.format_version)
    side = json.load(open(sidecar))
    open(sidecar, "w").write(json.dumps({**side, "rows": 19}))                   # sidecar disagrees
    open(path(".shard-00002.parquet.tmp-0123"), "wb").write(b"partial")          # crashed writer
    open(side_path(url, ".shard-00003.parquet.tmp-4567", manifest.format_version), "wb").write(b"partial")
    open(path("shard-00009.parquet"), "wb").write(b"stray")                      # not in the plan
    open(side_path(url, "shard-00008.json", manifest.format_version), "w").write(json.dumps(
        {**side, "index": 8, "path": "shard-00008.parquet"}))                  # a sidecar of no listed shard
    problems = verify_output(url)
    text = "\n".join(problems)
    assert "shard-00001.parquet: sha256" in text
    assert "shard-00002.parquet: missing" in text
    assert "shard-00003.parquet: size 100 bytes, expected" in text
    assert "shard-00000.json: disagrees with the manifest on rows" in text
    assert ".shard-00002.parquet.tmp-0123: temp file" in text
    assert "shard-00009.parquet: not in the complete manifest" in text
    assert "shard-00008.json: shard 8 is not in the complete manifest" in text
    assert ".shard-00003.parquet.tmp-4567: temp file" in text
    assert main(["verify", url]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == problems
    assert f"{len(problems)} problem(s)" in captured.err
    if manifest.format_version == 2:  # side files beside the shards do not belong to a version-2 output
        open(path("shard-00001.json"), "w").write(json.dumps(side))
        open(path("__seedshard__/shard-00007.parquet"), "wb").write(b"stray")
        text = "\n".join(verify_output(url))
        assert "\nshard-00001.json: not in the complete manifest" in text
        assert "__seedshard__/shard-00007.parquet: not in the complete manifest" in text


def test_a_consistent_forgery_is_caught_by_indices_schema_and_metadata(written):
    """A shard re-encoded with wrong content whose sha256 was updated in the manifest and sidecar."""
    url, manifest = written
    fs, root = open_output(url)
    old = decode_shard(fs.cat_file(f"{root}/shard-00001.parquet"), "parquet")
    forged = encode_shard(old.indices + 1, None, old.samples.astype(np.float16), "parquet",
                          {**old.metadata, "seedshard.seed": "2"})
    record = commit_shard(fs, root, "shard-00001.parquet", forged, {"index": 1, "start": 20, "stop": 40})
    write_manifest(fs, root, manifest.model_copy(update={"shards": [record if s.index == 1 else s for s in manifest.shards]}))
    text = "\n".join(verify_output(url))
    assert "shard-00001.parquet: indices are not exactly range(20, 40)" in text
    assert "shard-00001.parquet: schema differs: dtype 'float16' (expected: 'float32')" in text
    assert "shard-00001.parquet: metadata seedshard.seed is '2', expected '1'" in text
    assert "sha256" not in text


def test_incomplete_or_unloadable_manifests_are_problems(written):
    url, manifest = written
    fs, root = open_output(url)
    state = {**manifest.sampler_state, "version": 0}
    write_manifest(fs, root, manifest.model_copy(update={
        "status": "failed", "error": "shard 3 [60, 70): boom", "shards": manifest.shards[:3], "sampler_state": state}))
    problems = verify_output(url)
    assert problems[0] == "manifest status is 'failed', not 'complete' (60 of 70 samples written): shard 3 [60, 70): boom"
    assert any("sampler_state cannot be loaded: heun: version must be a positive int, got 0" in p for p in problems)
    assert not any("shard-00003" in p for p in problems)  # a failed job's unlisted shard is no problem


def test_a_sampler_state_edited_in_the_manifest_disagrees_with_every_shard(written):
    """verify checks the manifest's sampler state without torch (name and version only); a state that is
    well-formed but differs from the one the shards were written with (here a newer version) is caught by
    every shard's metadata, and by the manifest's fingerprint, which is no longer that of its contents."""
    url, manifest = written
    fs, root = open_output(url)
    write_manifest(fs, root, manifest.model_copy(update={"sampler_state": {**manifest.sampler_state, "version": 99}}))
    fingerprint, *problems = verify_output(url)
    assert fingerprint.startswith(f"manifest fingerprint {manifest.fingerprint[:12]} is not that of its own config")
    assert len(problems) == 4
    assert all(p.startswith(f"shard-0000{i}.parquet: metadata seedshard.sampler_state is ") for i, p in enumerate(problems))


def test_no_manifest_is_a_problem_and_verify_writes_nothing(tmp_path, capsys):
    url = str(tmp_path / "absent" / "out")
    assert verify_output(url) == [f"{url}: no manifest.json (not a seedshard output, or its job never started)"]
    assert main(["verify", url]) == 1
    assert not os.path.exists(tmp_path / "absent")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    assert "is not valid JSON" in verify_output(str(tmp_path / "bad"))[0]
    assert main(["verify", str(tmp_path), "--storage-options", "[1, 2]"]) == 2
    assert "seedshard: error: --storage-options: must be a mapping" in capsys.readouterr().err


def test_verify_on_s3_finds_a_corrupt_shard(s3, s3_secret, capsys):
    prefix, options = s3
    url = f"{prefix}/verify-{os.getpid()}"
    cfg = gaussian_job(url, sampler={"steps": 2}, run={"storage_options": options})
    write_output_in_process(cfg)
    assert verify_output(url, options) == []
    fs, root = open_output(url, options)
    fs.pipe_file(f"{root}/shard-00002.parquet", b"not parquet")
    problems = verify_output(url, options)
    assert problems[0] == f"shard-00002.parquet: size 11 bytes, expected {read_manifest(fs, root).shards[2].bytes}"
    assert problems[1].startswith("shard-00002.parquet: sha256") and "cannot decode" in problems[2]
    assert main(["verify", url, "--storage-options", json.dumps(options)]) == 1
    assert s3_secret not in capsys.readouterr().out


def _edit_json(path, edit):
    data = json.load(open(path))
    edit(data)
    open(path, "w").write(json.dumps(data))


def test_coverage_is_checked_against_the_stored_config_not_the_manifests_num_samples(written):
    """Issue 14 case 7: shrink the manifest's num_samples and drop the shards past it."""
    url, manifest = written
    fs, root = open_output(url)
    write_manifest(fs, root, manifest.model_copy(update={"num_samples": 40, "shards": manifest.shards[:2]}))
    for name in ("shard-00002", "shard-00003"):
        os.remove(os.path.join(url, f"{name}.parquet"))
        os.remove(side_path(url, f"{name}.json", manifest.format_version))
    problems = verify_output(url)
    assert "manifest num_samples is 40, its config's run.num_samples 70" in problems
    assert "2 shard(s) of the plan missing from the complete manifest: 2, 3" in problems


def test_fingerprints_of_shards_and_of_the_manifest_are_checked(written, tmp_path):
    url, manifest = written
    fs, root = open_output(url)
    other = gaussian_job(str(tmp_path / "other"), sampler={"steps": 2}, run={"batch_size": 5})
    write_output_in_process(other, manifest.format_version)
    # another job's shard 1, re-registered consistently in this manifest and sidecar: only the fingerprint tells
    data = open(os.path.join(other.run.output, "shard-00001.parquet"), "rb").read()
    record = commit_shard(fs, root, "shard-00001.parquet", data, {"index": 1, "start": 20, "stop": 40,
                                                                  "fingerprint": manifest.fingerprint},
                          manifest.format_version)
    forged = manifest.model_copy(update={"shards": [record if s.index == 1 else s for s in manifest.shards]})
    write_manifest(fs, root, forged)
    problems = verify_output(url)
    assert len(problems) == 1 and problems[0].startswith("shard-00001.parquet: metadata seedshard.fingerprint is "
                                                         f"'{read_manifest(*open_output(other.run.output)).fingerprint[:40]}")
    write_manifest(fs, root, manifest.model_copy(update={"config": {**manifest.config, "run": {**manifest.config["run"], "seed": 2}}}))
    text = "\n".join(verify_output(url))
    assert "manifest fingerprint" in text and "is not that of its own config" in text


def test_malformed_sidecars_and_manifests_are_one_line_problems(written):
    """Issue 14 case 7: a sidecar with "index": "4", a manifest without sampler_state.name or with a list
    for config.run: reported, never a crash."""
    url, manifest = written
    _edit_json(side_path(url, "shard-00002.json", manifest.format_version), lambda d: d.update(index="4"))
    problems = verify_output(url)
    assert "shard-00002.json: unreadable sidecar: index must be int (got '4')" in problems
    _edit_json(side_path(url, "manifest.json", manifest.format_version), lambda d: d["sampler_state"].pop("name"))
    problems = verify_output(url)
    assert any(p.startswith("manifest sampler_state cannot be loaded") for p in problems)
    assert any(p.startswith("manifest model or sampler_state is malformed (KeyError") for p in problems)
    _edit_json(side_path(url, "manifest.json", manifest.format_version), lambda d: d["config"].update(run=[1, 2]))
    problems = verify_output(url)
    assert any(p.startswith("manifest config is not a valid job config") for p in problems)
    assert "manifest has no valid config; shard placement and coverage not checked" in problems
    assert all("\n" not in p for p in problems)


def test_every_unexpected_data_file_is_reported(written):
    url, _ = written
    for name in ("extra.parquet", "Shard-00009.parquet", "_hidden.parquet", "notes.txt", ".dotted.parquet"):
        open(os.path.join(url, name), "wb").write(b"x")
    problems = verify_output(url)
    assert [p.split(":")[0] for p in problems] == ["Shard-00009.parquet", "_hidden.parquet", "extra.parquet"]
    assert problems[0] == "Shard-00009.parquet: a data file not in the complete manifest (readers of the output would pick it up)"


def test_data_in_a_subfolder_or_under_another_name_is_reported(written):
    """pyarrow (and pandas, HF datasets) read every file below the folder, whatever its extension, in folders too:
    a copied shard in extra/ or named extra.data adds rows to what readers see, so verify reports it."""
    url, manifest = written
    shard = os.path.join(url, manifest.shards[0].path)
    for name in ("extra/part.parquet", "extra.data", ".cache/part.parquet", "__pycache__/part.parquet"):
        os.makedirs(os.path.dirname(os.path.join(url, name)), exist_ok=True)
        shutil.copy(shard, os.path.join(url, name))
    if manifest.format_version == 2:  # readers open a version-1 folder only with a glob
        assert pyarrow.dataset.dataset(url).count_rows() == 70 + 2 * manifest.shards[0].rows
    problems = verify_output(url)
    assert [p.split(":")[0] for p in problems] == ["extra.data", "extra/part.parquet"], problems


def test_data_files_in_a_subfolder_are_reported(written):
    """pyarrow, pandas and HF datasets read an output's subfolders too (an output written inside it, a copy):
    their data files are the output's rows for those readers; folders starting with '.' are skipped by all."""
    url, _ = written
    for name in ("inner/shard-00000.parquet", "inner/deep/x.tar", "inner/notes.txt", ".cache/y.parquet", "docs/a.md"):
        os.makedirs(os.path.dirname(os.path.join(url, name)), exist_ok=True)
        open(os.path.join(url, name), "wb").write(b"x")
    assert verify_output(url) == [f"{name}: a data file not in the complete manifest (readers of the output would "
                                  "pick it up)" for name in ("inner/deep/x.tar", "inner/shard-00000.parquet")]


def test_data_behind_a_symlinked_subfolder_is_reported(written, tmp_path):
    """pyarrow and pandas follow a symlinked folder inside the output and read its data files as the output's rows;
    fsspec lists the link as type 'other', so verify said the output was whole."""
    url, manifest = written
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(os.path.join(url, manifest.shards[0].path), elsewhere / "part.parquet")
    os.symlink(elsewhere, os.path.join(url, "linked"))
    if manifest.format_version == 2:  # readers open a version-1 folder only with a glob
        assert pyarrow.dataset.dataset(url).count_rows() == 70 + manifest.shards[0].rows
    assert verify_output(url) == ["linked/part.parquet: a data file not in the complete manifest (readers of the "
                                  "output would pick it up)"]
