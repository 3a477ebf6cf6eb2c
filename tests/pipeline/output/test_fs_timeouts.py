"""Storage timeouts (pipeline/output/fs.py): an S3 endpoint that accepts connections and never answers fails
within a minute saying it timed out, not that the bucket does not exist."""

import socket
import threading
import time

import pytest

from pipeline.output import fs
from pipeline.output.fs import StorageError, open_output


@pytest.fixture
def silent_endpoint():
    """A real socket on 127.0.0.1 that accepts connections and never replies; yields its URL."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted, stop = [], threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_an_endpoint_that_never_answers_fails_within_a_minute_saying_so(silent_endpoint, monkeypatch):
    """The default timeouts and tries add up to well under a minute; the run itself uses the same defaults path
    with 1 s timeouts (the defaults would make the test wait ~20 s)."""
    pytest.importorskip("s3fs")
    for name, value in (("AWS_ACCESS_KEY_ID", "k"), ("AWS_SECRET_ACCESS_KEY", "s"), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    backoff = sum(min(1.7**i * 0.1, 15) for i in range(fs.S3_RETRIES))  # s3fs's _error_wrapper between tries
    worst = fs.S3_RETRIES * (fs.S3_TIMEOUTS["connect_timeout"] + fs.S3_TIMEOUTS["read_timeout"]) + backoff
    assert fs.S3_TIMEOUTS["retries"]["max_attempts"] == 1 and worst < 60
    monkeypatch.setattr(fs, "S3_TIMEOUTS", {**fs.S3_TIMEOUTS, "connect_timeout": 1, "read_timeout": 1})
    t0 = time.monotonic()
    with pytest.raises(StorageError, match=r"^s3://silent-bucket/out: (Read|Connect) timeout on endpoint URL") as e:
        open_output("s3://silent-bucket/out", {"endpoint_url": silent_endpoint}, create=False)
    assert time.monotonic() - t0 < 60
    assert "does not exist" not in str(e.value)
