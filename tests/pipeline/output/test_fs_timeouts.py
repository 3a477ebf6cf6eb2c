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
    """A real socket on 127.0.0.1 that accepts connections and never replies; yields (its URL, the accepted
    connections: one per attempt, as a timed-out connection is dropped)."""
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
    yield f"http://127.0.0.1:{server.getsockname()[1]}", accepted
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_an_endpoint_that_never_answers_fails_within_a_minute_saying_so(silent_endpoint, monkeypatch):
    """Run with 1 s read timeouts (the default 10 s made the test wait ~40 s); every attempt connects at once and
    waits one read timeout, so the attempts it made, times the default read timeout, must stay under a minute."""
    pytest.importorskip("s3fs")
    url, attempts = silent_endpoint
    for name, value in (("AWS_ACCESS_KEY_ID", "k"), ("AWS_SECRET_ACCESS_KEY", "s"), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    default_read_s = fs.S3_TIMEOUTS["read_timeout"]
    monkeypatch.setattr(fs, "S3_TIMEOUTS", {**fs.S3_TIMEOUTS, "read_timeout": 1})
    t0 = time.monotonic()
    with pytest.raises(StorageError, match=r"^s3://silent-bucket/out: (Read|Connect) timeout on endpoint URL") as e:
        open_output("s3://silent-bucket/out", {"endpoint_url": url}, create=False)
    assert time.monotonic() - t0 < 60
    assert 1 <= len(attempts) and len(attempts) * default_read_s + 1 < 60, len(attempts)  # + s3fs's backoff (< 1 s)
    assert "does not exist" not in str(e.value)
