"""Resume on a real local Ray: damaged shards are regenerated and nothing else, to the same bytes; another
job on the same output is refused without a change; run.overwrite replaces it. Local disk and S3 (moto)."""

import logging
import os

import pytest

from pipeline.output.fs import open_output
from pipeline.output.layout import side_path
from pipeline.run.driver import JobError, run_job
from pipeline.output.manifest import read_manifest, write_manifest
from pipeline.output.verify import verify_output
from tests.pipeline.jobs import (
    digests, gaussian_job, payload_digests, reference_digests, snapshot, write_output_in_process,
)

pytestmark = pytest.mark.slow


def damage(url: str, version: int = 2) -> None:
    """Shard 1 deleted, 2 a flipped byte, 3 truncated, 4 a data file without its sidecar, plus a stray temp file."""
    path = lambda name: os.path.join(url, name)  # noqa: E731
    os.remove(path("shard-00001.parquet"))
    with open(path("shard-00002.parquet"), "r+b") as f:
        f.seek(200)
        byte = f.read(1)
        f.seek(200)
        f.write(bytes([byte[0] ^ 0x01]))
    with open(path("shard-00003.parquet"), "r+b") as f:
        f.truncate(os.path.getsize(path("shard-00003.parquet")) // 2)
    os.remove(side_path(url, "shard-00004.json", version))
    with open(path(".shard-00001.parquet.tmp-0badc0de"), "wb") as f:
        f.write(b"half a shard")


def test_resume_regenerates_exactly_the_damaged_shards_to_the_same_bytes(ray2, tmp_path, caplog):
    cfg = gaussian_job(str(tmp_path / "out"), run={"num_samples": 100}, cluster={"num_workers": 1})
    first = run_job(cfg)
    assert digests(first) == reference_digests(cfg)
    damage(cfg.run.output)
    before = snapshot(cfg.run.output)
    with caplog.at_level(logging.WARNING, logger="pipeline.run"):
        second = run_job(cfg)
    after = snapshot(cfg.run.output)
    assert second.status == "complete" and digests(second) == digests(first)
    kept = {"shard-00000.parquet", "__seedshard__/shard-00000.json"}
    assert {name: after[name] for name in kept} == {name: before[name] for name in kept}  # untouched: same mtime
    rewritten = {name for name in after if name in before and after[name] != before[name]} | (set(after) - set(before))
    assert rewritten == ({f"shard-0000{k}.parquet" for k in (1, 2, 3, 4)} | {f"__seedshard__/shard-0000{k}.json" for k in (1, 2, 3, 4)}
                         | {"__seedshard__/manifest.json"})
    assert not [name for name in after if ".tmp-" in name]
    warnings = "\n".join(r.getMessage() for r in caplog.records)
    assert "regenerating shard 2: shard-00002.parquet: sha256" in warnings
    assert "regenerating shard 3: shard-00003.parquet: size" in warnings
    assert verify_output(cfg.run.output) == []


def test_another_job_is_refused_without_a_change_and_overwrite_replaces_it(ray2, tmp_path):
    url = str(tmp_path / "out")
    write_output_in_process(gaussian_job(url))
    with open(os.path.join(url, ".shard-00000.parquet.tmp-feed"), "wb") as f:
        f.write(b"a crashed writer's temp file")
    before = snapshot(url)
    other = gaussian_job(url, run={"seed": 7, "num_samples": 30}, sampler={"time_dist": "uniform"})
    with pytest.raises(JobError, match=r"holds a different job \(run.seed: 1 -> 7; sampler.time_dist: \"karras\" -> \"uniform\"; .*"
                                       r"run.num_samples: 70 -> 30 \(an output grows, never shrinks\)\); "
                                       r"set run.overwrite=true or choose a new run.output"):
        run_job(other)
    with pytest.raises(JobError, match=r"already holds this job and run.resume=false"):
        run_job(gaussian_job(url, run={"resume": False}))
    assert snapshot(url) == before  # bytes and mtimes: nothing written, removed or cleaned up
    replaced = run_job(gaussian_job(url, run={"seed": 7, "num_samples": 30, "overwrite": True}, sampler={"time_dist": "uniform"},
                                    cluster={"num_workers": 1}))
    assert digests(replaced) == reference_digests(other)
    assert sorted(os.listdir(url)) == ["__seedshard__", "shard-00000.parquet", "shard-00001.parquet"]
    assert sorted(os.listdir(os.path.join(url, "__seedshard__"))) == ["manifest.json", "shard-00000.json", "shard-00001.json"]


def test_a_format_version_1_output_is_resumed_in_its_layout_and_overwritten_as_version_2(ray2, tmp_path, caplog):
    cfg = gaussian_job(str(tmp_path / "out"), run={"num_samples": 100}, cluster={"num_workers": 1})
    first = write_output_in_process(cfg, version=1)
    assert first.format_version == 1 and digests(first) != reference_digests(cfg)  # version 1 has other bytes
    damage(cfg.run.output, version=1)
    with caplog.at_level(logging.WARNING, logger="pipeline.driver"):
        second = run_job(cfg)
    assert second.status == "complete" and second.format_version == 1 and digests(second) == digests(first)
    assert "regenerating shard 2: shard-00002.parquet: sha256" in "\n".join(r.getMessage() for r in caplog.records)
    names = sorted(os.listdir(cfg.run.output))
    assert "__seedshard__" not in names and "manifest.json" in names and "shard-00004.json" in names
    assert verify_output(cfg.run.output) == []

    third = run_job(gaussian_job(cfg.run.output, run={"num_samples": 100, "overwrite": True}, cluster={"num_workers": 1}))
    assert third.format_version == 2 and digests(third) == reference_digests(cfg)
    assert sorted(os.listdir(cfg.run.output)) == ["__seedshard__"] + [f"shard-0000{k}.parquet" for k in range(5)]
    assert read_manifest(*open_output(cfg.run.output)) == third and verify_output(cfg.run.output) == []


def test_shard_and_batch_sizes_above_num_samples_are_valid(ray2, tmp_path):
    for n, shard_size, batch_size in ((5, 100, 64), (1, 1, 1)):
        cfg = gaussian_job(str(tmp_path / f"n{n}"), run={"num_samples": n, "shard_size": shard_size, "batch_size": batch_size},
                           cluster={"num_workers": 1})
        manifest = run_job(cfg)
        assert [(s.start, s.stop) for s in manifest.shards] == [(0, n)]
        assert digests(manifest) == reference_digests(cfg)


def test_resume_verify_and_corrupt_shards_on_s3(ray2, s3, caplog):
    prefix, options = s3
    url = f"{prefix}/resume-{os.getpid()}"
    cfg = gaussian_job(url, run={"storage_options": options}, cluster={"num_workers": 1})
    first = run_job(cfg)
    fs, root = open_output(url, options)
    fs.rm_file(f"{root}/shard-00001.parquet")
    fs.pipe_file(f"{root}/shard-00002.parquet", b"PAR1 not really")
    fs.pipe_file(f"{root}/.shard-00003.parquet.tmp-0badc0de", b"half a shard")
    problems = verify_output(url, options)
    assert any(p.startswith("shard-00001.parquet: missing") for p in problems)
    assert any(p.startswith("shard-00002.parquet: size") for p in problems)
    kept = fs.info(f"{root}/shard-00000.parquet")["ETag"]
    with caplog.at_level(logging.WARNING, logger="pipeline.run"):
        second = run_job(cfg)
    assert second.status == "complete" and digests(second) == digests(first) == reference_digests(cfg)
    warnings = "\n".join(r.getMessage() for r in caplog.records)
    assert "regenerating shard 1" in warnings and "regenerating shard 2" in warnings
    assert "regenerating shard 0" not in warnings and "regenerating shard 3" not in warnings
    assert fs.info(f"{root}/shard-00000.parquet")["ETag"] == kept
    assert not fs.exists(f"{root}/.shard-00003.parquet.tmp-0badc0de")
    assert verify_output(url, options) == []
    assert read_manifest(fs, root).status == "complete"


def test_an_output_written_with_noise_v1_resumes_with_v1_and_new_outputs_use_v2(ray2, tmp_path):
    import json

    from samplers import NOISE_SCHEMES

    url, one = str(tmp_path / "old"), {"num_workers": 1}
    first = write_output_in_process(gaussian_job(url, run={"num_samples": 100, "noise_scheme": "v1"}))
    manifest_path = side_path(url, "manifest.json", 2)
    with open(manifest_path) as f:  # as a seedshard before run.noise_scheme wrote it
        old = json.load(f)
    del old["config"]["run"]["noise_scheme"]
    with open(manifest_path, "w") as f:
        json.dump(old, f)
    assert first.noise_scheme == NOISE_SCHEMES["v1"].description
    damage(url)
    second = run_job(gaussian_job(url, run={"num_samples": 100}, cluster=one))  # noise_scheme: auto
    assert second.noise_scheme == first.noise_scheme and digests(second) == digests(first)
    assert second.config["run"]["noise_scheme"] == "v1" and verify_output(url) == []
    with pytest.raises(JobError, match=r"holds a different job \(noise_scheme: \"philox4x64.*; v1\" -> \"philox4x32-7.*; v2\"\)"):
        run_job(gaussian_job(url, run={"num_samples": 100, "noise_scheme": "v2"}, cluster=one))

    new = gaussian_job(str(tmp_path / "new"), run={"num_samples": 100}, cluster=one)
    third = run_job(new)
    assert third.noise_scheme == NOISE_SCHEMES["v2"].description and third.config["run"]["noise_scheme"] == "v2"
    assert digests(third) == reference_digests(new) and verify_output(new.run.output) == []
    assert payload_digests(new.run.output, third) != payload_digests(url, second)  # other noise, other samples


def test_an_output_written_before_newer_identity_fields_resumes_under_its_fingerprint(tmp_path, monkeypatch, caplog):
    """The CPU kernels and a factory decoder's name and kwargs joined the fingerprint after outputs were written
    with fingerprints: such an output resumes under the fingerprint it carries (kept shards, the same bytes for a
    regenerated one, a warning naming what is not checked), and a new output records both."""
    import torch

    from pipeline.decoder import decoder_identity
    from pipeline.run.fingerprint import cpu_kernels
    from tests.pipeline.jobs import run_in_process

    def job(out):
        return gaussian_job(str(tmp_path / out), model={"decoder": {
            "factory": "torch.nn:Hardtanh", "kwargs": {"min_val": -1.0, "max_val": 1.0}, "shape": [3, 4]}})

    with monkeypatch.context() as m:  # the driver of before: neither field recorded
        m.setattr("pipeline.run.driver.job_runtime", lambda cfg: {"torch": torch.__version__, "device": "cpu"})
        m.setattr("pipeline.run.driver.decoder_identity", lambda *a: {"sha256": decoder_identity(*a)["sha256"]})
        old = run_in_process(job("out"))
    assert "cpu" not in old.runtime and set(old.model["decoder"]) == {"sha256"}
    os.remove(tmp_path / "out" / "shard-00001.parquet")
    fs, root = open_output(str(tmp_path / "out"))
    write_manifest(fs, root, read_manifest(fs, root).model_copy(update={"created": "2020-01-01T00:00:00+00:00"}))
    caplog.set_level(logging.WARNING, logger="pipeline.run.resume")
    again = run_in_process(job("out"))
    assert again.fingerprint == old.fingerprint and again.shards == old.shards  # shard 1: the same bytes again
    assert again.created == "2020-01-01T00:00:00+00:00"  # the output's, not this run's
    assert "written before seedshard recorded decoder.factory, decoder.kwargs, runtime.cpu" in caplog.text
    assert verify_output(str(tmp_path / "out")) == []
    fresh = run_in_process(job("fresh"))
    assert fresh.runtime["cpu"] == cpu_kernels() and fresh.model["decoder"]["kwargs"] == {"min_val": -1.0, "max_val": 1.0}
    assert fresh.fingerprint != old.fingerprint
    assert payload_digests(str(tmp_path / "fresh"), fresh) == payload_digests(str(tmp_path / "out"), again)  # same samples


def test_an_output_written_before_decoder_kwargs_joined_refuses_other_decoder_kwargs(tmp_path, monkeypatch):
    """resume.as_recorded drops a factory decoder's name and kwargs from the fingerprint of an output written before
    they joined it; its manifest's config still records them, so a resume with other decoder kwargs (other bytes in
    every new shard) must be refused naming them, not mixed into the old shards."""
    import torch

    from pipeline.decoder import decoder_identity
    from tests.pipeline.jobs import run_in_process

    def job(max_val):
        return gaussian_job(str(tmp_path / "out"), model={"decoder": {
            "factory": "torch.nn:Hardtanh", "kwargs": {"min_val": -1.0, "max_val": max_val}, "shape": [3, 4]}})

    with monkeypatch.context() as m:  # the driver of before: neither field recorded
        m.setattr("pipeline.run.driver.job_runtime", lambda cfg: {"torch": torch.__version__, "device": "cpu"})
        m.setattr("pipeline.run.driver.decoder_identity", lambda *a: {"sha256": decoder_identity(*a)["sha256"]})
        run_in_process(job(1.0))
    os.remove(tmp_path / "out" / "shard-00001.parquet")
    with pytest.raises(JobError, match=r"model\.decoder\.kwargs"):
        run_in_process(job(0.1))  # clips at 0.1: shard 1 would hold other bytes than shards 0, 2, 3
