"""SIGTERM / SIGINT end a real driver process cleanly (run/interrupt.py): actors stopped, manifest `interrupted`
with the reason, one line, exit 143 / 130; a later run resumes to the same bytes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.output.fs import open_output
from pipeline.output.layout import SIDE_DIR
from pipeline.output.manifest import read_manifest
from pipeline.output.shards import load_sidecars
from tests.pipeline.jobs import payload_digests, reference_payload_digests
from tests.pipeline.run.test_faults import _descendants, _stat, _stop_ray_of, gaussian_like, slow_job

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[3]
ENV = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_AUTH_MODE": "disabled"}


def start_driver(path: Path, log: Path, *overrides: str, env: dict[str, str] = ENV) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "jobs.generate", str(path), *overrides], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=open(log, "wb"), start_new_session=True)


def wait_for_shards(proc: subprocess.Popen, out: str, count: int, tracked: dict) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        tracked.update(_descendants(proc.pid))
        side = os.path.join(out, SIDE_DIR)
        if os.path.isdir(side) and len([n for n in os.listdir(side) if n.startswith("shard-") and n.endswith(".json")]) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"driver exited ({proc.poll()}) or made no progress")


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_ends_the_job_cleanly_and_a_rerun_resumes(tmp_path, sig, code, request):
    cfg, path = slow_job(tmp_path)
    out, log = cfg.run.output, tmp_path / "driver.log"
    proc = start_driver(path, log)
    tracked: dict = {}
    try:
        wait_for_shards(proc, out, 2, tracked)
        tracked.update(_descendants(proc.pid))
        os.kill(proc.pid, sig)
        assert proc.wait(timeout=120) == code, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 30  # the driver stopped its actors and its private Ray
    while time.monotonic() < deadline and [p for p in tracked if _stat(p) and _stat(p)[1] == tracked[p][0]]:
        time.sleep(0.2)
    left = [p for p in tracked if _stat(p) and _stat(p)[1] == tracked[p][0]]
    _stop_ray_of(tracked)
    assert not left
    name = signal.Signals(sig).name
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert lines[-1] == f"seedshard: interrupted by {name}; finished shards are kept, rerun to resume"
    assert not [line for line in lines if "Traceback" in line or "Aborted" in line or "*** " in line], lines
    manifest = read_manifest(*open_output(out))
    assert manifest.status == "interrupted" and manifest.error == f"interrupted by {name}"
    finished = sorted(load_sidecars(*open_output(out)))
    assert 2 <= len(finished) < 8 and {s.index for s in manifest.shards} <= set(finished)  # a shard in flight may be
    # committed by its worker after the driver stopped listening: its sidecar still lets the rerun keep it
    if sig == signal.SIGTERM:
        # The rerun joins the tests' shared Ray (the interrupted driver above had its own, now stopped).
        rerun = start_driver(path, tmp_path / "rerun.log", env=request.getfixturevalue("shared_ray_env"))
        assert rerun.wait(timeout=300) == 0, (tmp_path / "rerun.log").read_text()[-2000:]
        manifest = read_manifest(*open_output(out))
        assert manifest.status == "complete"
        assert payload_digests(out, manifest) == reference_payload_digests(gaussian_like(path, delay_s=0.0))


def test_a_signal_during_a_blocking_ray_call_still_ends_the_job_with_its_exit_code(ray_local):
    """ray.wait / ray.get run the signal handler themselves and raise a bare KeyboardInterrupt instead of its
    JobInterrupted, which the driver spends most of its time in: a SIGTERM then exited 130 with no reason."""
    import threading

    from pipeline.run.interrupt import JobInterrupted, interrupts_raise

    @ray_local.remote(num_cpus=0)
    def never() -> None:
        time.sleep(60)

    ref = never.remote()
    try:
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
        caught: BaseException | None = None
        try:
            with interrupts_raise():
                ray_local.wait([ref], num_returns=1, timeout=10)
        except KeyboardInterrupt as e:  # a bare one must not end pytest's session
            caught = e
        assert isinstance(caught, JobInterrupted), repr(caught)
        assert caught.exit_code == 143 and str(caught) == "interrupted by SIGTERM"
    finally:
        ray_local.cancel(ref, force=True)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed exception, on purpose
def test_a_signal_whose_exception_a_finalizer_swallowed_is_raised_again_by_check_interrupted():
    """The handler may run inside a finalizer (an ObjectRef's __del__), where Python prints its exception and goes
    on; the scheduler's loop calls check_interrupted(), so the job still stops."""
    from pipeline.run.interrupt import JobInterrupted, check_interrupted, interrupts_raise

    class Finalized:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGTERM)  # handled here, in __del__: its JobInterrupted is dropped

    reached = False
    with pytest.raises(JobInterrupted, match="^interrupted by SIGTERM$"):
        with interrupts_raise():
            Finalized()
            reached = True  # the signal's own exception was lost
            check_interrupted()
    assert reached
    check_interrupted()  # outside the block nothing is pending
