"""One writer per output: the lease file `lease.json` among seedshard's side files.

A driver takes the lease before it writes anything under the output and gives it back when the
job ends. The lease holds the run id, host, pid, start time and a heartbeat (unix seconds) that
the driver renews every `HEARTBEAT_S` seconds from a background thread. It is created exclusively:
`O_EXCL` on a local disk, a conditional PUT (`If-None-Match: *`) on object stores that support it
(S3); elsewhere it is written, then re-read by every heartbeat. A second driver finds a live lease
and fails at once naming the run that holds it. A lease whose heartbeat is older than `EXPIRES_S`,
or whose driver ran on this host and no longer exists (killed), is taken over with a warning; a live
one only with `run.take_over_lease`.
Before writing a `complete` manifest the driver confirms it still holds the lease (`Lease.confirm`).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from ..redact import redact_url
from .fs import is_local, protocols, put_atomic
from .layout import side_path, side_root

__all__ = ["EXPIRES_S", "HEARTBEAT_S", "LEASE_NAME", "Lease", "LeaseError", "LeaseInfo", "check_lease", "lease_path",
           "read_lease"]

log = logging.getLogger(__name__)

LEASE_NAME = "lease.json"
HEARTBEAT_S = 10.0
EXPIRES_S = 60.0


class LeaseError(RuntimeError):
    """Another run holds the output (or took it over); the message names that run."""


def lease_path(root: str) -> str:
    """Where the lease of the output at `root` lives: in ``__seedshard__/`` whatever the output's format version
    (1 keeps side files at the root), so every driver finds it, also one that overwrites a version-1 output."""
    return side_path(root, LEASE_NAME, 2)


@dataclass(frozen=True)
class LeaseInfo:
    """The contents of a lease file."""

    run_id: str
    host: str
    pid: int
    started: float
    heartbeat: float

    def describe(self, now: float | None = None) -> str:
        age = (time.time() if now is None else now) - self.heartbeat
        return f"run {self.run_id} (host {self.host}, pid {self.pid}, last heartbeat {age:.0f}s ago)"

    def encode(self) -> bytes:
        return (json.dumps(asdict(self), indent=2) + "\n").encode()


def read_lease(fs: Any, root: str) -> LeaseInfo | None:
    """The lease under `root`, or None; an unreadable lease reads as a dead run (heartbeat 0)."""
    path = lease_path(root)
    fs.invalidate_cache(root)
    try:
        raw = fs.cat_file(path)
    except FileNotFoundError:
        return None
    try:
        obj = json.loads(raw)
        return LeaseInfo(str(obj["run_id"]), str(obj["host"]), int(obj["pid"]), float(obj["started"]),
                         float(obj["heartbeat"]))
    except (ValueError, TypeError, KeyError):
        log.warning("unreadable lease %s: treating it as expired", path)
        return LeaseInfo("unknown", "unknown", 0, 0.0, 0.0)


def _expired(other: LeaseInfo) -> str | None:
    """Why the run holding a lease is gone ("heartbeat expired", "its driver is gone"), or None while it may live."""
    if time.time() - other.heartbeat >= EXPIRES_S:
        return "heartbeat expired"
    if other.host == socket.gethostname() and other.pid > 0:
        try:
            os.kill(other.pid, 0)
        except ProcessLookupError:
            return f"its driver (pid {other.pid}) is gone"
        except PermissionError:  # another user's live process
            pass
    return None


def _in_use(url: str, other: LeaseInfo) -> str:
    return (f"{redact_url(url)} is in use by {other.describe()}; wait for it to end, or if it is dead take "
            f"the output over (after {EXPIRES_S:.0f}s without heartbeat, or at once with run.take_over_lease=true)")


def check_lease(fs: Any, root: str, url: str, take_over: bool = False) -> None:
    """LeaseError when a live lease of another run holds the output (reads only)."""
    other = read_lease(fs, root)
    if other is not None and not take_over and _expired(other) is None:
        raise LeaseError(_in_use(url, other))


class Lease:
    """This driver's lease on one output: `acquire`, then `start()` the heartbeat, `confirm()` before
    declaring the output complete, and `release()` at the end."""

    def __init__(self, fs: Any, root: str, url: str) -> None:
        self.fs, self.root, self.url = fs, root, url
        now = time.time()
        self.info = LeaseInfo(uuid.uuid4().hex[:12], socket.gethostname(), os.getpid(), now, now)
        self.lost: LeaseInfo | None = None  # the run that took the output over
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def acquire(cls, fs: Any, root: str, url: str, take_over: bool = False) -> "Lease":
        """Take the lease of the output, exclusively; LeaseError naming the holder when a live run has it."""
        lease = cls(fs, root, url)
        if lease._create():
            return lease
        other = read_lease(fs, root)
        if other is not None:
            why = _expired(other)
            if not (why or take_over):
                raise LeaseError(_in_use(url, other))
            log.warning("taking over %s from %s (%s)", redact_url(url), other.describe(), why or "run.take_over_lease=true")
        put_atomic(fs, lease_path(root), lease.info.encode())
        holder = read_lease(fs, root)
        if holder is None or holder.run_id != lease.info.run_id:  # another driver took it over at the same time
            raise LeaseError(_in_use(url, holder or other))
        return lease

    def _create(self) -> bool:
        """Create the lease file if none exists; False when one does."""
        path, data = lease_path(self.root), self.info.encode()
        if is_local(self.fs):
            self.fs.makedirs(side_root(self.root, 2), exist_ok=True)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            return True
        if "s3" in protocols(self.fs) or "s3a" in protocols(self.fs):
            try:
                self.fs.pipe_file(path, data, mode="create")  # a conditional PUT: If-None-Match: *
            except FileExistsError:
                return False
            return True
        if read_lease(self.fs, self.root) is not None:  # no exclusive create here: heartbeats re-read the lease
            return False
        put_atomic(self.fs, path, data)
        holder = read_lease(self.fs, self.root)
        return holder is not None and holder.run_id == self.info.run_id

    def renew(self) -> bool:
        """Re-read the lease and renew the heartbeat; False (and `lost` set) when another run holds it now."""
        if self.lost is not None:
            return False
        holder = read_lease(self.fs, self.root)
        if holder is None or holder.run_id != self.info.run_id:
            self.lost = holder or LeaseInfo("unknown (the lease file was removed)", "unknown", 0, 0.0, 0.0)
            log.warning("lost the lease of %s to %s", redact_url(self.url), self.lost.describe())
            return False
        self.info = LeaseInfo(**{**asdict(self.info), "heartbeat": time.time()})
        put_atomic(self.fs, lease_path(self.root), self.info.encode())
        return True

    def confirm(self) -> None:
        """LeaseError unless this run still holds the output."""
        if not self.renew():
            raise LeaseError(f"{redact_url(self.url)} was taken over by {self.lost.describe()}; this run "
                             f"({self.info.run_id}) does not mark it complete")

    def start(self) -> "Lease":
        """Renew the heartbeat every HEARTBEAT_S seconds from a daemon thread until `release`."""
        def beat() -> None:
            while not self._stop.wait(HEARTBEAT_S):
                try:
                    if not self.renew():
                        return
                except Exception as e:  # noqa: BLE001 - a transient storage error: try again next beat
                    log.warning("could not renew the lease of %s: %s", redact_url(self.url), e)

        self._thread = threading.Thread(target=beat, name="seedshard-lease", daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        """Stop the heartbeat and remove the lease if this run still holds it (errors are logged, not raised)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            holder = read_lease(self.fs, self.root)
            if holder is not None and holder.run_id == self.info.run_id:
                self.fs.rm_file(lease_path(self.root))
                if is_local(self.fs) and not self.fs.ls(side_root(self.root, 2)):  # a version-1 output: no empty folder left
                    self.fs.rmdir(side_root(self.root, 2))
        except Exception as e:  # noqa: BLE001 - the job's own outcome matters more
            log.warning("could not remove the lease of %s: %s", redact_url(self.url), e)
