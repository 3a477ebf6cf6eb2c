"""Every shell and Python block of README.md runs as written (blocks marked `<!-- not run: reason -->`
excepted; see tests/docs/blocks.py), in README order, in one temporary copy of the repository.

Python blocks run as scripts, shell blocks with `bash -euo pipefail`, both with the copy as working
directory and first on PYTHONPATH. Ray stays private: RAY_AUTH_MODE=disabled, TMPDIR / RAY_TMPDIR point
into a short temp dir of this test, and after each block every process of its session and every process whose
command line names that dir (a `ray start` head, a local Ray a block left) is stopped by PID. The blocks' drivers (`seedshard generate`,
`fid`, `read_dataset`) join one private local Ray that this module starts (RAY_ADDRESS, as on a cluster)
instead of starting one each (~4 s a process); tests/pipeline/test_cli.py's first run covers a driver that
starts and stops its own. `s3://bucket` is a moto server (AWS_ENDPOINT_URL and fake credentials in the
environment).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.docs.blocks import Block, code_blocks
from tests.e2e.raycluster import kill_pids_naming, kill_session, ray_env

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BLOCKS = code_blocks(README.read_text())
MAX_NOT_RUN = 5  # blocks CI cannot run (installs, the suite itself, cloud clusters): keep them few
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv*", "__pycache__", ".pytest_cache", "*.egg-info", "out", ".peers-venv")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir():
    """(copy of the repository, environment for the blocks); removes both and stops stray processes after."""
    tmp = tempfile.mkdtemp(prefix="rd", dir="/tmp")  # short: Ray's socket paths stay < 100 chars
    copy = Path(tmp) / "repo"
    shutil.copytree(ROOT, copy, ignore=COPY_IGNORE)
    env = ray_env() | {"PYTHONPATH": str(copy), "TMPDIR": tmp, "RAY_TMPDIR": tmp, "PYTHONUNBUFFERED": "1"}
    with s3_server() as s3_env, shared_ray(s3_env) as address:
        env["RAY_ADDRESS"] = address
        try:
            # The quick start's first block installs the package and runs the demo; the install is not run
            # here, the demo is (later blocks read out/demo), exactly as that block's last command runs it.
            subprocess.run([sys.executable, "-m", "pipeline.cli", "generate", "configs/demo.yaml"], cwd=copy,
                           env=env | s3_env, check=True, capture_output=True, timeout=600)
            yield copy, env | s3_env
        finally:
            kill_pids_naming(tmp)
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def shared_ray(node_env: dict[str, str]):
    """A private local Ray (2 CPUs, no dashboard) in this process, its workers holding `node_env` (the S3
    credentials, as a node with an instance role would); yields its address. Its temp dir is not the blocks'
    TMPDIR, so the clean-up after each block leaves it running."""
    ray = pytest.importorskip("ray")
    temp_dir = tempfile.mkdtemp(prefix="rdr", dir="/tmp")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "disabled")
        mp.delenv("RAY_ADDRESS", raising=False)
        for name, value in node_env.items():
            mp.setenv(name, value)
        ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False,
                 configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        kill_pids_naming(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


class s3_server:
    """A moto S3 server with the bucket `bucket`; entering gives the AWS environment variables that reach it."""

    def __enter__(self) -> dict[str, str]:
        boto3 = pytest.importorskip("boto3")
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "readme-key",
               "AWS_SECRET_ACCESS_KEY": "readme-secret", "AWS_DEFAULT_REGION": "us-east-1"}
        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1", aws_access_key_id="k",
                     aws_secret_access_key="s").create_bucket(Bucket="bucket")
        return env

    def __exit__(self, *exc: object) -> None:
        self.server.stop()


def test_the_readme_has_blocks_and_few_are_not_run():
    assert sum(b.kind == "shell" for b in BLOCKS) >= 3 and sum(b.kind == "python" for b in BLOCKS) >= 2
    not_run = [(b.line, b.not_run) for b in BLOCKS if b.not_run is not None]
    assert all(reason for _, reason in not_run), f"a `not run` mark needs a reason: {not_run}"
    assert len(not_run) <= MAX_NOT_RUN, not_run


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.not_run is None], ids=lambda b: b.id)
def test_readme_block_runs_as_written(block: Block, workdir):
    copy, env = workdir
    if block.kind == "python":
        script = Path(env["TMPDIR"]) / f"readme_L{block.line}.py"
        script.write_text(block.code)
        cmd = [sys.executable, str(script)]
    else:
        cmd = ["bash", "-euo", "pipefail", "-c", block.code]
        if "ray start" in block.code:  # a block that starts its own head addresses it; a user's shell has no other
            env = {k: v for k, v in env.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(cmd, cwd=copy, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        kill_session(proc.pid)  # what the block left running, e.g. the head a failed `ray start` block did not stop
        kill_pids_naming(env["TMPDIR"])  # and what runs elsewhere in its temp dir (a local Ray)
    result = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    assert result.returncode == 0, (
        f"README.md line {block.line} ({block.kind}) exited {result.returncode}:\n{block.code}\n"
        f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}")
