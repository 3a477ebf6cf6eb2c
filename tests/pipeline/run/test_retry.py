"""run/retry.py and the scheduler's use of it on a real local Ray: a network error fails the job at its first
occurrence naming the shard; a transient error is retried after a backoff; a stopped (SIGSTOP) worker is killed
after cluster.shard_timeout_s and its shard re-queued."""

import logging
import os
import random
import signal
import threading
import time

import pytest

from pipeline.run.driver import JobError, run_job
from pipeline.run.retry import MAX_BACKOFF_S, backoff_s, is_transient
from tests.pipeline.jobs import payload_digests, probe_job, reference_payload_digests


class ReadTimeoutError(Exception):
    """Named like botocore's."""


def test_is_transient_tells_storage_hiccups_from_bugs():
    assert is_transient(ConnectionResetError()) and is_transient(TimeoutError()) and is_transient(ReadTimeoutError())
    wrapped = RuntimeError("upload failed")
    wrapped.__cause__ = ConnectionRefusedError()
    assert is_transient(wrapped)
    slow_down = Exception("SlowDown")
    slow_down.response = {"Error": {"Code": "SlowDown"}}
    assert is_transient(slow_down)
    for permanent in (RuntimeError("bug"), ValueError("shape"), FileNotFoundError("gone"), PermissionError("no")):
        assert not is_transient(permanent)


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    rng = random.Random(0)
    for attempt in range(1, 12):
        delays = [backoff_s(attempt, 2.0, rng) for _ in range(50)]
        top = min(MAX_BACKOFF_S, 2.0 * 2 ** (attempt - 1))
        assert all(0.5 * top <= d <= top for d in delays) and len(set(delays)) > 1


def test_a_network_error_fails_the_job_at_once_naming_the_shard(ray2, tmp_path, caplog):
    cfg = probe_job(str(tmp_path / "out"), raise_indices=[45])  # shard 2 [40, 60)
    with caplog.at_level(logging.WARNING, logger="pipeline.run"), \
            pytest.raises(JobError, match=r"^shard 2 \[40, 60\): RuntimeError: the network refuses these samples$"):
        run_job(cfg)
    assert "re-queueing" not in caplog.text


def test_a_transient_error_is_retried_after_a_backoff(ray2, tmp_path, caplog):
    flaky = tmp_path / "flaky"
    flaky.mkdir()
    cfg = probe_job(str(tmp_path / "out"), flaky_indices=[45], flaky_dir=str(flaky))
    with caplog.at_level(logging.WARNING, logger="pipeline.run"):
        manifest = run_job(cfg)
    assert manifest.status == "complete"
    assert payload_digests(cfg.run.output, manifest) == reference_payload_digests(probe_job(str(tmp_path / "ref")))
    assert "re-queueing shard 2 (attempt 2): ConnectionResetError: connection reset while sampling index 45; retrying in" \
        in caplog.text


def test_a_stopped_worker_is_killed_after_the_shard_timeout_and_its_shard_rerun(ray2, tmp_path, caplog):
    markers = tmp_path / "pids"
    markers.mkdir()
    cfg = probe_job(str(tmp_path / "out"), delay_s=0.02, marker_dir=str(markers))
    cfg = cfg.model_copy(update={"cluster": cfg.cluster.model_copy(update={"shard_timeout_s": 4.0})})
    stopped = []

    def stop_one_worker() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not stopped:
            pids = sorted(int(p.name) for p in markers.iterdir())
            if pids:
                os.kill(pids[0], signal.SIGSTOP)
                stopped.append(pids[0])
            time.sleep(0.01)

    stopper = threading.Thread(target=stop_one_worker, daemon=True)
    stopper.start()
    try:
        with caplog.at_level(logging.WARNING, logger="pipeline.run"):
            manifest = run_job(cfg)
    finally:
        stopper.join()
        for pid in stopped:  # killed by Ray already; make sure it does not stay stopped
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert stopped and manifest.status == "complete"
    assert payload_digests(cfg.run.output, manifest) == reference_payload_digests(probe_job(str(tmp_path / "ref")))
    assert "(cluster.shard_timeout_s=4); killing it" in caplog.text
    assert "timed out after 4s (cluster.shard_timeout_s)" in caplog.text
