"""Storage timeouts (pipeline/output/fs.py): an S3 endpoint that accepts connections and never answers fails
within a minute saying it timed out, not that the bucket does not exist."""

import socket
import threading
import time

import pytest

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
    pytest.importorskip("s3fs")
    for name, value in (("AWS_ACCESS_KEY_ID", "k"), ("AWS_SECRET_ACCESS_KEY", "s"), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    t0 = time.monotonic()
    with pytest.raises(StorageError, match=r"^s3://silent-bucket/out: (Read|Connect) timeout on endpoint URL") as e:
        open_output("s3://silent-bucket/out", {"endpoint_url": silent_endpoint}, create=False)
    assert time.monotonic() - t0 < 60
    assert "does not exist" not in str(e.value)
