"""Starting or joining Ray for a job, and checking it can hold the requested workers.

`cluster.address` unset: join the cluster of `ray job submit` (RAY_ADDRESS is set there), or
else start a private local Ray with its own temp dir. A request the cluster cannot hold fails
at once with the numbers (or after `cluster.wait_for_workers_s` on an autoscaling cluster),
instead of leaving actors pending forever.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from typing import Any


class ClusterError(RuntimeError):
    """Ray cannot be started or joined, or cannot hold the requested workers."""


@contextlib.contextmanager
def ray_session(cluster: Any) -> Iterator[None]:
    """Connect to (or start) Ray for the job, and disconnect afterwards if connected here."""
    import ray

    if ray.is_initialized():
        yield
        return
    started = cluster.address is None and not os.environ.get("RAY_ADDRESS")
    if not started:
        check_address(cluster.address or os.environ.get("RAY_ADDRESS", ""))
    temp_dir = tempfile.mkdtemp(prefix="ss-ray-", dir="/tmp") if started else None  # short: socket paths
    try:
        if started:
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private cluster of this process
            need = math.ceil(cluster.num_workers * cluster.cpus_per_worker)
            ray.init(address="local", num_cpus=max(os.cpu_count() or 1, need), include_dashboard=False,
                     _temp_dir=temp_dir, log_to_driver=False, configure_logging=False)
        else:
            ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        where = cluster.address or os.environ.get("RAY_ADDRESS")
        raise ClusterError(f"cannot connect to Ray at {where!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    try:
        yield
    finally:
        ray.shutdown()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


def check_address(address: str, timeout_s: float = 5.0) -> None:
    """ClusterError at once when nothing accepts a TCP connection at a `host:port` (or `ray://host:port`)
    Ray address; `ray.init` itself retries such an address for minutes. Other forms ('auto') pass."""
    host, sep, port = address.removeprefix("ray://").rstrip("/").rpartition(":")
    if not sep or not host or "/" in host:
        return
    if not port.isdigit():
        raise ClusterError(f"cluster.address {address!r}: expected host:port")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except (OSError, OverflowError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
        raise ClusterError(f"cannot connect to Ray at {address!r}: {reason} (is a Ray head running there?)") from None


def missing_resources(cluster: Any) -> str | None:
    """What the Ray cluster lacks for num_workers x (cpus, gpus) per worker, or None."""
    import ray

    total = ray.cluster_resources()
    for kind, per_worker in (("GPU", cluster.gpus_per_worker), ("CPU", cluster.cpus_per_worker)):
        need, have = cluster.num_workers * per_worker, total.get(kind, 0.0)
        if need > have:
            return (f"cluster.num_workers={cluster.num_workers} x cluster.{kind.lower()}s_per_worker={per_worker:g} "
                    f"needs {need:g} {kind}s, but the Ray cluster has {have:g}")
    return None


def wait_for_resources(cluster: Any, poll_s: float = 2.0) -> None:
    """Return once the cluster can hold the workers; ClusterError after cluster.wait_for_workers_s."""
    deadline = time.monotonic() + cluster.wait_for_workers_s
    while (missing := missing_resources(cluster)) is not None:
        if time.monotonic() >= deadline:
            hint = (f" after waiting {cluster.wait_for_workers_s:g}s" if cluster.wait_for_workers_s
                    else "; on an autoscaling cluster set cluster.wait_for_workers_s")
            raise ClusterError(missing + hint + ("; gpus_per_worker=0 runs on CPU" if "GPU" in missing else ""))
        time.sleep(poll_s)
