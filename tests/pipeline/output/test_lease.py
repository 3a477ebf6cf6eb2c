"""The output lease (pipeline/output/lease.py) on each backend: exclusive, named in the refusal, taken over
when expired or by request, confirmed before `complete`, released at the end."""

import json
import time

import pytest

from pipeline.output import lease as lease_mod
from pipeline.output.fs import open_output
from pipeline.output.lease import EXPIRES_S, Lease, LeaseError, check_lease, lease_path, read_lease


@pytest.fixture
def out(output):
    url, options = output
    fs, root = open_output(url, options)
    return fs, root, url


def test_a_second_driver_is_refused_naming_the_holder_and_the_lease_is_released(out):
    fs, root, url = out
    first = Lease.acquire(fs, root, url)
    holder = read_lease(fs, root)
    assert holder.run_id == first.info.run_id and holder.pid == first.info.pid
    with pytest.raises(LeaseError, match=rf"^\S+ is in use by run {first.info.run_id} \(host .*, pid \d+, last heartbeat \ds ago\); "):
        Lease.acquire(fs, root, url)
    with pytest.raises(LeaseError, match=first.info.run_id):
        check_lease(fs, root, url)
    first.confirm()  # still ours
    first.release()
    assert read_lease(fs, root) is None
    check_lease(fs, root, url)
    Lease.acquire(fs, root, url).release()


def _age_lease(fs, root, seconds):
    info = json.loads(fs.cat_file(lease_path(root)))
    info["heartbeat"] -= seconds
    fs.pipe_file(lease_path(root), json.dumps(info).encode())


def test_an_expired_lease_is_taken_over_and_its_old_holder_cannot_complete(out, caplog):
    fs, root, url = out
    dead = Lease.acquire(fs, root, url)
    _age_lease(fs, root, EXPIRES_S + 1)
    check_lease(fs, root, url)  # expired: no refusal
    new = Lease.acquire(fs, root, url)
    assert "heartbeat expired" in caplog.text
    assert read_lease(fs, root).run_id == new.info.run_id
    with pytest.raises(LeaseError, match=rf"was taken over by run {new.info.run_id} .*; this run \({dead.info.run_id}\) does not mark it complete"):
        dead.confirm()
    dead.release()  # not ours any more: left alone
    assert read_lease(fs, root).run_id == new.info.run_id
    new.release()


def test_a_live_lease_is_taken_over_only_on_request(out):
    fs, root, url = out
    live = Lease.acquire(fs, root, url)
    with pytest.raises(LeaseError):
        Lease.acquire(fs, root, url)
    check_lease(fs, root, url, take_over=True)
    new = Lease.acquire(fs, root, url, take_over=True)
    assert not live.renew() and live.lost.run_id == new.info.run_id
    new.release()


def test_the_heartbeat_thread_renews_the_lease(out, monkeypatch):
    fs, root, url = out
    monkeypatch.setattr(lease_mod, "HEARTBEAT_S", 0.05)
    lease = Lease.acquire(fs, root, url)
    first = read_lease(fs, root).heartbeat
    lease.start()
    deadline = time.monotonic() + 10
    while read_lease(fs, root).heartbeat == first and time.monotonic() < deadline:
        time.sleep(0.05)
    assert read_lease(fs, root).heartbeat > first
    lease.release()
    assert read_lease(fs, root) is None


def test_a_lease_of_a_dead_driver_on_this_host_is_taken_over_at_once(out, caplog):
    import subprocess
    import sys

    fs, root, url = out
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = Lease.acquire(fs, root, url)
    info = json.loads(fs.cat_file(lease_path(root)))
    fs.pipe_file(lease_path(root), json.dumps({**info, "pid": int(gone.stdout)}).encode())
    check_lease(fs, root, url)
    new = Lease.acquire(fs, root, url)
    assert f"its driver (pid {int(gone.stdout)}) is gone" in caplog.text
    assert not dead.renew()
    new.release()
