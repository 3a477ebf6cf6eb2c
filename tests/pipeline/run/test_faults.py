"""Fault injection on a real local Ray: a worker killed mid-shard, a shard that crashes its worker every time,
non-finite samples (fail / skip), and a driver killed mid-job (SIGKILL) then resumed."""

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from pipeline.output.fs import open_output
from pipeline.output.layout import SIDE_DIR
from pipeline.output.manifest import read_manifest
from pipeline.output.shards import load_sidecars
from pipeline.run.driver import JobError, run_job
from tests.pipeline.jobs import payload_digests, probe_job, reference_payload_digests, snapshot

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[3]


def warnings_of(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


def test_a_worker_killed_mid_shard_is_replaced_and_the_bytes_do_not_change(ray2, tmp_path, caplog):
    markers = tmp_path / "pids"
    markers.mkdir()
    cfg = probe_job(str(tmp_path / "out"), delay_s=0.03, marker_dir=str(markers))
    killed = []

    def kill_one_busy_worker() -> None:
        """SIGKILL the first worker seen running the network, once both workers are inside a shard."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pids = sorted(int(p.name) for p in markers.iterdir())
            if len(pids) >= 2:
                os.kill(pids[0], signal.SIGKILL)
                killed.append((pids[0], time.monotonic()))
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_one_busy_worker, daemon=True)
    killer.start()
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="pipeline.run"):
        manifest = run_job(cfg)
    done = time.monotonic()
    killer.join()
    assert killed and killed[0][0] != os.getpid()
    assert manifest.status == "complete"
    assert payload_digests(cfg.run.output, manifest) == reference_payload_digests(probe_job(str(tmp_path / "ref")))
    log = warnings_of(caplog)
    assert re.search(r"worker \d died; starting a replacement \(1 of 3\)", log)
    assert re.search(r"re-queueing shard \d \(attempt 2\): worker died \(ActorDiedError\)", log)
    print(f"job {done - t0:.1f}s, finished {done - killed[0][1]:.1f}s after the kill")
    assert done - killed[0][1] < 30  # detection and replacement take seconds, not a timeout


def test_a_shard_that_always_crashes_its_worker_fails_the_job_after_max_attempts(ray2, tmp_path, caplog):
    cfg = probe_job(str(tmp_path / "out"), exit_indices=[65])  # shard 3 [60, 70) kills its worker process
    cfg = cfg.model_copy(update={"cluster": cfg.cluster.model_copy(update={"num_workers": 1, "retry_backoff_s": 0.1})})
    with caplog.at_level(logging.WARNING, logger="pipeline.run"), \
            pytest.raises(JobError, match=r"^shard 3 \[60, 70\) failed 3 times \(cluster.max_shard_attempts=3\); "
                                          r"last: worker died \(ActorDiedError\)$"):
        run_job(cfg)
    fs, root = open_output(cfg.run.output)
    manifest = read_manifest(fs, root)
    assert manifest.status == "failed" and manifest.error.startswith("shard 3 [60, 70) failed 3 times")
    assert [s.index for s in manifest.shards] == [0, 1, 2]  # every finished shard kept
    reference = reference_payload_digests(probe_job(str(tmp_path / "ref")))  # the same samples, without the hook
    assert payload_digests(cfg.run.output, manifest) == {k: reference[k] for k in (0, 1, 2)}
    assert not fs.exists(f"{root}/__seedshard__/shard-00003.json")



def test_non_finite_samples_stop_the_job_and_keep_every_other_shard(ray2, tmp_path):
    """All 4 shards are submitted at once (max_in_flight 4 on one worker), so shard 3 is in flight when shard 2
    fails, whatever order the worker runs them in: no dependence on the scheduler's timing."""
    cfg = probe_job(str(tmp_path / "out"), nan_indices=[45, 47])
    cfg = cfg.model_copy(update={"cluster": cfg.cluster.model_copy(update={"num_workers": 1, "max_in_flight": 4})})
    with pytest.raises(JobError, match=r"^shard 2 \[40, 60\): non-finite samples at indices \[45, 47\] \(2 of 8\) with sampler "
                                       r"heun\(steps=8, time_dist=karras, .*guidance_scale=1.0; .*run.on_nonfinite=fail"):
        run_job(cfg)
    fs, root = open_output(cfg.run.output)
    manifest = read_manifest(fs, root)
    assert manifest.status == "failed" and "indices [45, 47]" in manifest.error
    assert [s.index for s in manifest.shards] == [0, 1, 3]  # the shards in flight were finished and kept
    assert not [name for name in os.listdir(cfg.run.output) if name.startswith("shard-00002")]  # never committed


def test_non_finite_samples_with_skip_write_the_rest_and_exit_1(ray2, tmp_path, capsys):
    cfg = probe_job(str(tmp_path / "out"), nan_indices=[45])
    path = tmp_path / "job.yaml"
    data = cfg.resolved()
    data["run"]["on_nonfinite"], data["cluster"]["num_workers"] = "skip", 1
    path.write_text(yaml.safe_dump(data))
    assert main(["generate", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("seedshard: error: 1 shard(s) skipped (run.on_nonfinite=skip); the rest is written: "
                              "shard 2 [40, 60): non-finite samples at indices [45]")
    manifest = read_manifest(*open_output(cfg.run.output))
    assert manifest.status == "failed" and manifest.error.startswith("shard 2 [40, 60): non-finite samples at indices [45]")
    assert [s.index for s in manifest.shards] == [0, 1, 3]


def test_samples_that_overflow_float16_storage_are_not_committed(ray2, tmp_path):
    from pipeline.run.sampling import build_sampler
    from pipeline.run.plan import Shard
    from pipeline.run.sampling import NonFiniteSamplesError
    from pipeline.run.worker import SamplerWorker

    cfg = probe_job(str(tmp_path / "out"), huge_indices=[3])
    cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"dtype": "float16"})})
    worker = SamplerWorker(cfg.resolved(), build_sampler(cfg).save())
    with pytest.raises(NonFiniteSamplesError, match=r"indices \[3\] \(1 of 20\) .*overflow the stored dtype float16"):
        worker.run(Shard(0, 0, 20))
    assert worker.run(Shard(1, 20, 40)).record.rows == 20
    assert sorted(os.listdir(cfg.run.output)) == ["__seedshard__", "shard-00001.parquet"]
    assert os.listdir(os.path.join(cfg.run.output, "__seedshard__")) == ["shard-00001.json"]


# ---------------------------------------------------------------------------- driver death


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a live process, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), fields[19]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _descendants(root: int) -> dict[int, tuple[str, str]]:
    """{pid: (start time, command line)} of every live process below `root`."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))):
            parents[int(entry)] = st
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, start) in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = (start, _cmdline(pid))
                frontier.append(pid)
    return found


def _stop_ray_of(tracked: dict[int, tuple[str, str]]) -> set[str]:
    """SIGKILL what a killed driver's private Ray left: the processes we saw below it (same pid and start time)
    and every process whose command line names its temp dir; then remove the temp dir. Returns the temp dirs."""
    temp_dirs = {m for _, cmdline in tracked.values() for m in re.findall(r"/tmp/ss-ray-\w+", cmdline)}
    targets = {pid for pid, (start, _) in tracked.items() if (_stat(pid) or (0, ""))[1] == start}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and any(d in _cmdline(int(entry)) for d in temp_dirs):
            targets.add(int(entry))
    targets.discard(os.getpid())
    for pid in targets:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_stat(pid) for pid in targets):
        time.sleep(0.05)
    for d in temp_dirs:
        shutil.rmtree(d, ignore_errors=True)
    return temp_dirs


def slow_job(tmp_path: Path) -> tuple[object, Path]:
    """A job of 8 one-worker shards slow enough to be caught mid-run, and its YAML file."""
    cfg = probe_job(str(tmp_path / "out"), delay_s=0.05)
    data = cfg.resolved()
    data["run"].update(num_samples=80, shard_size=10, batch_size=10)
    data["sampler"]["steps"] = 4
    data["cluster"].update(num_workers=1, max_in_flight=1)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return cfg, path


def test_a_driver_killed_mid_job_resumes_to_the_same_bytes(ray2, tmp_path):
    cfg, path = slow_job(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_AUTH_MODE": "disabled"}
    out = cfg.run.output
    proc = subprocess.Popen([sys.executable, "-m", "jobs.generate", str(path)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "driver.log", "wb"), start_new_session=True)
    tracked: dict[int, tuple[str, str]] = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            tracked.update(_descendants(proc.pid))
            side = os.path.join(out, "__seedshard__")
            if len([n for n in os.listdir(side) if n.endswith(".json") and n.startswith("shard-")] if os.path.isdir(side) else []) >= 3:
                break
            time.sleep(0.02)
        assert proc.poll() is None, (tmp_path / "driver.log").read_text()[-2000:]
        tracked.update(_descendants(proc.pid))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        temp_dirs = _stop_ray_of(tracked)
    assert len(temp_dirs) == 1 and not os.path.exists(temp_dirs.pop())
    assert not [pid for pid in tracked if _stat(pid) and _stat(pid)[1] == tracked[pid][0]]  # nothing left running

    manifest = read_manifest(*open_output(out))
    assert manifest.status == "running"  # what a killed driver leaves
    finished = sorted(load_sidecars(*open_output(out)))
    assert 3 <= len(finished) < 8
    before = snapshot(out)
    rerun = run_job(gaussian_like(path))
    after = snapshot(out)
    regenerated = sorted(int(n[20:25]) for n in after if n.endswith(".json") and n.startswith("__seedshard__/shard-")
                         and before.get(n) != after[n])
    assert regenerated == sorted(set(range(8)) - set(finished))  # the finished shards were not redone
    assert rerun.status == "complete"
    assert payload_digests(out, rerun) == reference_payload_digests(gaussian_like(path, delay_s=0.0))
    assert not [n for n in after if ".tmp-" in n]


def gaussian_like(path: Path, **kwargs) -> object:
    """The JobConfig of a YAML job file, with model.kwargs updated."""
    from pipeline.config import validate_config

    data = yaml.safe_load(path.read_text())
    data["model"]["kwargs"].update(kwargs)
    return validate_config(data)


# ---------------------------------------------------------------------------- storage losing files, output removed


def _when_sidecars(out: str, count: int, action, including: str | None = None) -> threading.Thread:
    """A thread that runs `action()` once `count` shard sidecars (among them `including`) exist under `out`."""
    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            side = os.path.join(out, SIDE_DIR)
            names = [n for n in os.listdir(side) if n.startswith("shard-") and n.endswith(".json")] if os.path.isdir(side) else []
            if len(names) >= count and (including is None or including in names):
                action()
                return
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_shard_lost_by_the_storage_mid_job_is_not_declared_complete(ray2, tmp_path):
    hold = tmp_path / "hold"  # the last shard (indices 60..69) waits until shard 0's data file is gone
    hold.write_text("")
    cfg = probe_job(str(tmp_path / "out"), hold_file=str(hold), hold_indices=list(range(60, 70)))
    out = cfg.run.output

    def lose_shard_0() -> None:
        os.remove(os.path.join(out, "shard-00000.parquet"))
        hold.unlink()

    watcher = _when_sidecars(out, 1, lose_shard_0, including="shard-00000.json")
    with pytest.raises(JobError, match=r"^1 committed shard\(s\) are missing or changed in storage: "
                                       r"shard-00000.parquet \(gone\); rerun to regenerate them$"):
        run_job(cfg)
    watcher.join()
    manifest = read_manifest(*open_output(out))
    assert manifest.status == "failed" and 0 not in [s.index for s in manifest.shards]
    rerun = run_job(cfg)
    assert rerun.status == "complete" and payload_digests(out, rerun) == reference_payload_digests(probe_job(str(tmp_path / "ref")))


def test_removing_the_output_mid_run_reports_the_real_cause(ray2, tmp_path, caplog):
    cfg = probe_job(str(tmp_path / "out"), delay_s=0.02)
    out = cfg.run.output
    blocker = tmp_path / "blocker"
    blocker.write_text("")

    def replace_output_by_a_file() -> None:  # removed, and not recreated by the next write (makedirs)
        while True:
            shutil.rmtree(out, ignore_errors=True)
            try:
                os.rename(blocker, out)
                return
            except OSError:  # a writer recreated the folder meanwhile
                continue

    watcher = _when_sidecars(out, 1, replace_output_by_a_file)
    with caplog.at_level(logging.WARNING, logger="pipeline.run"), \
            pytest.raises(JobError, match=r"^shard \d \[\d+, \d+\): (FileNotFoundError|NotADirectoryError): "
                                          r".*(No such file or directory|Not a directory)") as e:
        run_job(cfg)
    watcher.join()
    assert "manifest" not in str(e.value)
    assert "could not write the failed manifest" in caplog.text
