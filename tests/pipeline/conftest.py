"""Fixtures for the storage tests: an S3 server (moto), output URLs per backend, a local Ray."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

# Fake credentials; the secret must never show up in an error message.
S3_SECRET = "seedshard-fake-secret-7f3a9c2e"
S3_BUCKET = "seedshard-test"


@pytest.fixture(scope="session")
def s3_secret() -> str:
    """The fake AWS secret the s3 fixture puts in the environment."""
    return S3_SECRET


@pytest.fixture(scope="session")
def s3():
    """A moto S3 server on a free port with one bucket: yields (url prefix, storage_options)."""
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("s3fs")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        with pytest.MonkeyPatch.context() as mp:
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
                mp.delenv(name, raising=False)
            mp.setenv("AWS_ACCESS_KEY_ID", "seedshard-fake-key-id")
            mp.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
            mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
            boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=S3_BUCKET)
            yield f"s3://{S3_BUCKET}", {"endpoint_url": endpoint}
    finally:
        server.stop()


@pytest.fixture(params=["local", "memory", "s3"])
def output(request, tmp_path):
    """(url, storage_options) of a fresh, empty output location on each backend."""
    if request.param == "local":
        return str(tmp_path / "out"), None
    if request.param == "memory":
        return f"memory://seedshard-test/{uuid.uuid4().hex}", None
    prefix, options = request.getfixturevalue("s3")
    return f"{prefix}/{uuid.uuid4().hex}", options


@contextlib.contextmanager
def private_ray(num_cpus: int, prefix: str):
    """A private local Ray (own short temp dir, no token auth, no dashboard); yields the temp dir."""
    ray = pytest.importorskip("ray")
    temp_dir = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "disabled")
        mp.delenv("RAY_ADDRESS", raising=False)  # restored (or removed) when the block ends
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _temp_dir=temp_dir,
                 log_to_driver=False, configure_logging=False)
        try:
            yield temp_dir
        finally:
            ray.shutdown()
            shutil.rmtree(temp_dir, ignore_errors=True)


class SharedRay:
    """The session's one private local Ray (2 CPUs), started by its first user after the S3 fixture (so its workers
    inherit the fake credentials, as on a real node). A test that starts or joins a Ray of its own calls `stop()`
    first; the next user starts a fresh one. Tests on it must leave no actors or state behind."""

    def __init__(self) -> None:
        self._stack: contextlib.ExitStack | None = None
        self.temp_dir = ""

    def start(self, request: pytest.FixtureRequest) -> str:
        """Start it if it is not running (S3 server first, where boto3 and s3fs exist); its temp dir."""
        import ray

        if self._stack is not None and not ray.is_initialized():  # a test shut it down: clean up, start again
            self.stop()
        if self._stack is None:
            with contextlib.suppress(pytest.skip.Exception):
                request.getfixturevalue("s3")
            stack = contextlib.ExitStack()
            self.temp_dir = stack.enter_context(private_ray(2, "ssr-"))
            self._stack = stack
        return self.temp_dir

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None


SHARED_RAY = SharedRay()
HERE = Path(__file__).resolve().parent


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop the shared Ray after the last test of tests/pipeline: tests elsewhere expect no Ray in this process
    (a job with a bad cluster.address must fail, not run on the Ray already there)."""
    if nextitem is None or HERE not in nextitem.path.parents:
        SHARED_RAY.stop()


@pytest.fixture(scope="session")
def shared_ray():
    """The SharedRay, stopped at the end of the session."""
    try:
        yield SHARED_RAY
    finally:
        SHARED_RAY.stop()


@pytest.fixture
def ray_local(shared_ray, request):
    """The shared private Ray (2 CPUs); yields the ray module."""
    shared_ray.start(request)
    import ray
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    return ray


@pytest.fixture
def shared_ray_env(shared_ray, request) -> dict[str, str]:
    """Environment for a subprocess driver (the CLI, jobs.generate) that joins the shared private Ray through
    RAY_ADDRESS instead of starting its own (about 4 s saved per process). Only for tests of what the driver does
    on a cluster, not of how it starts or stops a private Ray."""
    import os

    shared_ray.start(request)
    import ray

    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": ray.get_runtime_context().gcs_address}


@pytest.fixture
def ray2(s3, shared_ray, request):
    """The shared private Ray with 2 CPUs (two 1-CPU workers), its workers holding the fake S3 credentials;
    yields its temp dir."""
    return shared_ray.start(request)
