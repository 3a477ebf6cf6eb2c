"""run/owned.py: overwrite removes only what a seedshard run wrote; an output without a manifest that holds
foreign shard-like files is refused (exit 2, nothing changed)."""

import os

import pytest
import yaml

from pipeline.cli import main
from pipeline.config import ConfigError
from pipeline.output.fs import open_output
from pipeline.output.layout import SIDE_DIR, side_path
from pipeline.output.manifest import Manifest, write_manifest
from pipeline.output.shards import commit_shard
from pipeline.run.driver import run_job
from pipeline.run.owned import owned_files, refuse_foreign_shards, remove_owned
from tests.pipeline.jobs import digests, gaussian_job, reference_digests, snapshot

FOREIGN = ("shard-000000.tar", "shard-notes.txt", "README.md")


def _previous_run(root: str, version: int) -> None:
    """What a seedshard run of format `version` leaves: shard 0 in the manifest, shard 1 committed after it
    (sidecar only), the FID report, the grid, a crashed writer's temp file; plus files seedshard never wrote
    (at the root and, for version 2, a foreign file in its side folder)."""
    fs, root = open_output(root)
    record = commit_shard(fs, root, "shard-00000.parquet", b"zero", {"index": 0, "start": 0, "stop": 10}, version=version)
    commit_shard(fs, root, "shard-00001.parquet", b"one", {"index": 1, "start": 10, "stop": 20}, version=version)
    write_manifest(fs, root, Manifest(status="failed", config={}, sampler_state={}, model={}, schema={},
                                      noise_scheme="v1", num_samples=20, shards=[record], format_version=version))
    for name in ("fid.json", "grid.png", ".shard-00002.parquet.tmp-0a1b"):
        with open(side_path(root, name, version), "w") as f:
            f.write("x")
    for name in (*FOREIGN, *((f"{SIDE_DIR}/notes.txt",) if version == 2 else ())):
        with open(os.path.join(root, name), "w") as f:
            f.write("x")


@pytest.mark.parametrize("version", [1, 2])
def test_remove_owned_keeps_foreign_files(tmp_path, version):
    _previous_run(str(tmp_path), version)
    fs, root = open_output(str(tmp_path))
    side = f"{SIDE_DIR}/" if version == 2 else ""
    assert sorted(owned_files(fs, root)) == sorted(
        [f"{side}{name}" for name in (".shard-00002.parquet.tmp-0a1b", "fid.json", "grid.png", "manifest.json",
                                      "shard-00000.json", "shard-00001.json")] + ["shard-00000.parquet", "shard-00001.parquet"])
    remove_owned(fs, root)
    assert sorted(os.listdir(tmp_path)) == sorted(FOREIGN + ((SIDE_DIR,) if version == 2 else ()))
    if version == 2:
        assert os.listdir(tmp_path / SIDE_DIR) == ["notes.txt"]


def test_an_output_without_manifest_holding_shard_like_files_is_refused(tmp_path):
    for name in FOREIGN:
        (tmp_path / name).write_text("x")
    fs, root = open_output(str(tmp_path))
    with pytest.raises(ConfigError, match=r"holds files that look like shards but no seedshard manifest: "
                                          r"shard-000000.tar, shard-notes.txt; choose an empty folder"):
        refuse_foreign_shards(fs, root, str(tmp_path))


@pytest.mark.parametrize("overwrite", [False, True])
def test_generate_refuses_foreign_shards_with_exit_2_and_changes_nothing(tmp_path, capsys, overwrite):
    out = tmp_path / "out"
    out.mkdir()
    for name in FOREIGN:
        (out / name).write_text("x")
    before = snapshot(out)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(gaussian_job(str(out)).resolved()))
    assert main(["generate", str(path), f"run.overwrite={str(overwrite).lower()}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "shard-000000.tar, shard-notes.txt" in err[0], err
    assert snapshot(out) == before


@pytest.mark.parametrize("version", [1, 2])
def test_an_output_inside_another_output_is_refused_and_changes_nothing(tmp_path, capsys, version):
    """Readers of the outer output (pyarrow, pandas, HF datasets) descend into folders: the inner output's shards
    would be read as the outer's samples (34 rows for a 30-sample output, indices twice)."""
    outer = tmp_path / "outer"
    _previous_run(str(outer), version)
    before = snapshot(outer)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(gaussian_job(str(outer / "a" / "inner")).resolved()))
    assert main(["generate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"lies inside the seedshard output {outer}" in err[0], err
    assert snapshot(outer) == before


def test_an_output_around_data_files_is_refused_and_changes_nothing(tmp_path, capsys):
    """The reverse: a job written into a folder whose subfolders hold data (an earlier output, copied shards) would
    have its readers read those too; '.x' and '__x__' folders are skipped by every reader, other files are not data."""
    _previous_run(str(tmp_path / "out" / "run1"), 2)
    (tmp_path / "out" / ".cache").mkdir()
    (tmp_path / "out" / ".cache" / "x.parquet").write_text("x")
    (tmp_path / "out" / "notes").mkdir()
    (tmp_path / "out" / "notes" / "README.md").write_text("x")
    before = snapshot(tmp_path / "out")
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(gaussian_job(str(tmp_path / "out")).resolved()))
    assert main(["generate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has data files in subfolders (run1/shard-00000.parquet, run1/shard-000000.tar, " in err[0]
    assert snapshot(tmp_path / "out") == before


@pytest.mark.parametrize("version", [1, 2])
def test_an_output_around_another_output_is_refused_and_changes_nothing(tmp_path, capsys, version):
    """The other way round: run.output a parent folder of an existing output. The new output's readers descend
    into the inner one and read its shards as their own (40 rows for a 20-sample output); it was written without
    a word, and only a later seedshard verify named the inner shards."""
    outer = tmp_path / "outer"
    _previous_run(str(outer / "a" / "inner"), version)
    before = snapshot(outer)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(gaussian_job(str(outer)).resolved()))
    assert main(["generate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has data files in subfolders (a/inner/shard-00000.parquet" in err[0], err
    assert snapshot(outer) == before


def test_overwrite_replaces_the_previous_job_and_keeps_foreign_files(ray2, tmp_path):
    out = str(tmp_path / "out")
    run_job(gaussian_job(out))
    for name in ("grid.png", "fid.json"):  # the side files of a job with run.grid and metrics.fid
        (tmp_path / "out" / SIDE_DIR / name).write_text("x")
    for name in FOREIGN[1:]:  # shard-notes.txt, README.md: written beside a seedshard output
        (tmp_path / "out" / name).write_text("x")
    cfg = gaussian_job(out, run={"seed": 2, "overwrite": True})
    manifest = run_job(cfg)
    assert digests(manifest) == reference_digests(cfg)
    names = set(os.listdir(out))
    assert set(FOREIGN[1:]) <= names and not {"grid.png", "fid.json", "lease.json"} & names
    assert not {"grid.png", "fid.json", "lease.json"} & set(os.listdir(tmp_path / "out" / SIDE_DIR))


@pytest.mark.parametrize("version", [1, 2])
def test_an_output_reached_through_a_symlink_into_another_output_is_refused(tmp_path, capsys, version):
    """run.output a symlink to a folder inside another output: the parent walk followed the link's own path, so the
    job wrote its shards into the other output (its verify then failed and its resume was refused)."""
    outer = tmp_path / "outer"
    _previous_run(str(outer), version)
    (outer / "inner").mkdir()
    os.symlink(outer / "inner", tmp_path / "link")
    before = snapshot(outer)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(gaussian_job(str(tmp_path / "link")).resolved()))
    assert main(["generate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"lies inside the seedshard output {outer}" in err[0], err
    assert snapshot(outer) == before


def test_an_output_named_with_dot_dot_resumes_as_itself(tmp_path):
    """run.output 'out/sub/..' is 'out': the parent walk started from the unnormalised path, found out's own manifest
    above 'out/sub' and refused to resume it as 'inside' itself."""
    from pipeline.run.owned import refuse_nested_output

    _previous_run(str(tmp_path / "out"), 2)
    (tmp_path / "out" / "sub").mkdir()
    url = str(tmp_path / "out" / "sub" / "..")
    fs, root = open_output(url, create=False)
    refuse_nested_output(fs, root, url)
