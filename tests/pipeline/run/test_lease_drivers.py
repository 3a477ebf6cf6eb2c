"""Two real driver processes on one output (issue 14 case 4): the second, seed 1, fails at once with one line
naming the first run; the first, seed 0, completes and the output verifies as seed 0's."""

import subprocess
import sys
import time

import pytest

from pipeline.cli import main
from pipeline.output.fs import open_output
from pipeline.output.lease import lease_path, read_lease
from pipeline.output.manifest import read_manifest
from tests.pipeline.jobs import payload_digests, reference_payload_digests
from tests.pipeline.run.test_faults import _descendants, _stop_ray_of, gaussian_like, slow_job
from tests.pipeline.run.test_interrupt import REPO, start_driver

pytestmark = pytest.mark.slow


def test_a_second_driver_on_the_same_output_fails_naming_the_first(tmp_path, shared_ray_env):
    cfg, path = slow_job(tmp_path)
    out = cfg.run.output
    hold = tmp_path / "hold"  # the first driver's workers wait while it exists
    hold.touch()
    # Both drivers join the tests' shared Ray (RAY_ADDRESS): the lease is under test here, not a private Ray's start.
    first = start_driver(path, tmp_path / "first.log", "run.seed=0", f"model.kwargs.hold_file={hold}", env=shared_ray_env)
    tracked: dict = {}
    try:
        fs, root = open_output(out)
        deadline = time.monotonic() + 180
        while read_lease(fs, root) is None and first.poll() is None and time.monotonic() < deadline:
            tracked.update(_descendants(first.pid))
            time.sleep(0.05)
        holder = read_lease(fs, root)
        assert holder is not None, (tmp_path / "first.log").read_text()[-2000:]
        second = subprocess.run([sys.executable, "-m", "jobs.generate", str(path), "run.seed=1"], cwd=REPO, env=shared_ray_env,
                                capture_output=True, text=True, timeout=300)
        assert first.poll() is None  # the first still runs: the second failed at once
        assert second.returncode == 1
        err = second.stderr.strip().splitlines()
        assert len(err) == 1 and f"is in use by run {holder.run_id} (host " in err[0], err
        hold.unlink()
        assert first.wait(timeout=300) == 0, (tmp_path / "first.log").read_text()[-2000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
            _stop_ray_of(tracked)
    assert not fs.exists(lease_path(root))  # released at the end
    assert main(["verify", out]) == 0
    manifest = read_manifest(fs, root)
    assert manifest.config["run"]["seed"] == 0
    seed0 = gaussian_like(path, delay_s=0.0)
    assert payload_digests(out, manifest) == reference_payload_digests(seed0.model_copy(update={"run": seed0.run.model_copy(update={"seed": 0})}))
