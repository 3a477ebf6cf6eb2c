"""The driver on a real local Ray cluster: coverage of indices, bytes vs a single-process run, layout independence."""

import os

import numpy as np
import pytest

from pipeline.output.fs import open_output
from pipeline.output.shards import decode_shard
from pipeline.run.cluster import ClusterError
from pipeline.run.driver import JobError, run_job
from pipeline.run.sampling import build_sampler
from pipeline.output.manifest import read_manifest
from pipeline.network import ModelError
from pipeline.run.plan import iter_shards
from pipeline.output.reader import read_samples
from tests.pipeline.jobs import digests, gaussian_job, job_identity, reference_digests


def test_two_workers_cover_every_index_once_with_single_process_bytes(ray2, tmp_path):
    cfg = gaussian_job(str(tmp_path / "out"))
    manifest = run_job(cfg)
    assert manifest.status == "complete" and [s.index for s in manifest.shards] == [0, 1, 2, 3]
    assert [(s.start, s.stop) for s in manifest.shards] == [(0, 20), (20, 40), (40, 60), (60, 70)]
    x, labels = read_samples(cfg.run.output, with_labels=True)
    assert x.shape == (70, 3, 4) and labels is None
    fs, root = open_output(cfg.run.output)
    indices = np.concatenate([decode_shard(fs.cat_file(f"{root}/{s.path}"), "parquet").indices for s in manifest.shards])
    assert np.array_equal(np.sort(indices), np.arange(70)) and len(set(indices.tolist())) == 70
    assert digests(manifest) == reference_digests(cfg)


def test_worker_count_does_not_change_a_byte(ray2, tmp_path):
    one = run_job(gaussian_job(str(tmp_path / "one"), cluster={"num_workers": 1}))
    two = run_job(gaussian_job(str(tmp_path / "two"), cluster={"num_workers": 2, "max_in_flight": 1}))
    assert digests(one) == digests(two)


def test_shard_order_does_not_change_a_byte(ray2, tmp_path):
    from pipeline.run.worker import SamplerWorker

    cfg = gaussian_job(str(tmp_path / "rev"))
    worker = SamplerWorker(cfg.resolved(), build_sampler(cfg).save(), None, {"fingerprint": job_identity(cfg)[3]})
    records = {}
    for shard in reversed(list(iter_shards(cfg.run.num_samples, cfg.run.shard_size))):
        records[shard.index] = worker.run(shard).record.sha256
    assert records == reference_digests(cfg)


def test_batch_size_changes_nothing_beyond_float_tolerance(ray2, tmp_path):
    a = run_job(gaussian_job(str(tmp_path / "b8"), run={"batch_size": 8}))
    b = run_job(gaussian_job(str(tmp_path / "b20"), run={"batch_size": 20}))
    xa, xb = read_samples(str(tmp_path / "b8")), read_samples(str(tmp_path / "b20"))
    np.testing.assert_allclose(xa, xb, rtol=1e-5, atol=1e-5)
    assert a.sampler_state == b.sampler_state


def test_labels_and_guidance_reach_the_network(ray2, tmp_path):
    cfg = gaussian_job(str(tmp_path / "lab"), run={"labels": "balanced", "num_samples": 30, "dtype": "float16"},
                       model={"num_classes": 10}, sampler={"guidance_scale": 1.5})
    run_job(cfg)
    x, labels = read_samples(cfg.run.output, with_labels=True)
    assert x.dtype == np.float16 and labels.tolist() == [i % 10 for i in range(30)]


def test_safetensors_output(ray2, tmp_path):
    cfg = gaussian_job(str(tmp_path / "st"), run={"format": "safetensors"})
    manifest = run_job(cfg)
    assert all(s.path.endswith(".safetensors") for s in manifest.shards)
    assert read_samples(cfg.run.output).shape == (70, 3, 4)


def test_more_gpus_than_exist_fails_fast(ray2, tmp_path):
    cfg = gaussian_job(str(tmp_path / "gpu"), cluster={"num_workers": 2, "gpus_per_worker": 1})
    with pytest.raises(ClusterError, match=r"needs 2 GPUs, but the Ray cluster has 0"):
        run_job(cfg)
    assert not os.path.exists(cfg.run.output)  # a job that cannot start writes nothing


def test_rerun_resumes_and_a_different_job_is_refused(ray2, tmp_path):
    cfg = gaussian_job(str(tmp_path / "re"))
    first = run_job(cfg)
    again = run_job(gaussian_job(str(tmp_path / "re"), cluster={"num_workers": 1}))  # cluster fields may differ
    assert digests(again) == digests(first)
    with pytest.raises(JobError, match=r"holds a different job \(run.seed: 1 -> 2; sampler.steps: 8 -> 4\)"):
        run_job(gaussian_job(str(tmp_path / "re"), run={"seed": 2}, sampler={"steps": 4}))
    assert digests(read_manifest(*open_output(cfg.run.output))) == digests(first)


def test_bad_factory_fails_before_ray_with_one_line(tmp_path):
    cfg = gaussian_job(str(tmp_path / "bad"), model={"kwargs": {"interface": "edm", "s": -1.0}})
    with pytest.raises(ModelError, match=r"^model.factory .* failed .*: ValueError: GaussianData: s must be > 0, got -1.0$"):
        run_job(cfg)


def test_worker_that_cannot_start_is_a_one_line_error(ray2, tmp_path):
    cfg = gaussian_job(str(tmp_path / "bad"), model={"factory": "tests.pipeline.jobs:build_only_on_driver"})
    with pytest.raises(JobError, match=r"^a worker failed to start: .*RuntimeError: this model cannot be built on a worker$"):
        run_job(cfg)


def test_job_writes_to_s3(ray2, s3):
    prefix, options = s3
    url = f"{prefix}/job-{os.getpid()}"
    cfg = gaussian_job(url, run={"storage_options": options})
    manifest = run_job(cfg)
    assert manifest.status == "complete"
    assert read_samples(url, storage_options=options).shape == (70, 3, 4)
    assert digests(manifest) == reference_digests(cfg)


def test_memory_output_is_refused_for_ray_workers():
    with pytest.raises(JobError, match=r"memory:// lives in one process"):
        run_job(gaussian_job("memory://nope/out"))
