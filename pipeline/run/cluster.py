"""Starting or joining Ray for a job, and checking it can hold the requested workers.

`cluster.address` unset: join the cluster of `ray job submit` (RAY_ADDRESS is set there), or
else start a private local Ray with its own temp dir. A request the cluster cannot hold fails
at once with the numbers, instead of leaving actors pending forever. With
`cluster.wait_for_workers_s` > 0 the driver instead asks Ray's autoscaler for one resource
bundle per worker (`ray.autoscaler.sdk.request_resources`), logs what it waits for, and fails
after that many seconds; the request is withdrawn when the wait ends, so that the autoscaler
can remove the nodes again once the job's actors are gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)


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
            ray.init(address="local", num_cpus=machine_cpus(), include_dashboard=False,  # more fails: wait_for_resources
                     _temp_dir=temp_dir, log_to_driver=False, configure_logging=False)
        else:
            ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    except BaseException as e:  # a connection error, or Ctrl-C / SIGTERM while Ray starts: stop what it started
        ray.shutdown()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        if isinstance(e, (ConnectionError, RuntimeError, ValueError)):
            where = cluster.address or os.environ.get("RAY_ADDRESS")
            raise ClusterError(f"cannot connect to Ray at {where!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        raise
    try:
        yield
    finally:
        ray.shutdown()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


def machine_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, else os.cpu_count()): what a local Ray offers."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


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


def worker_bundles(cluster: Any) -> list[dict[str, float]]:
    """One resource bundle per sampling actor, as the autoscaler takes them: [{"CPU": c, "GPU": g}] * num_workers."""
    bundle = {"CPU": cluster.cpus_per_worker} | ({"GPU": cluster.gpus_per_worker} if cluster.gpus_per_worker else {})
    return [dict(bundle) for _ in range(cluster.num_workers)]


def wait_for_resources(cluster: Any, poll_s: float = 2.0, report_every_s: float = 30.0) -> None:
    """Return once the cluster can hold the workers. Until then ask the autoscaler for their bundles and log
    what is missing every `report_every_s`; ClusterError after cluster.wait_for_workers_s (0: at once)."""
    missing = missing_resources(cluster)
    if missing is None:
        return
    gpu_hint = "; gpus_per_worker=0 runs on CPU" if "GPU" in missing else ""
    limit = cluster.wait_for_workers_s
    if not limit:
        raise ClusterError(f"{missing}; on an autoscaling cluster set cluster.wait_for_workers_s{gpu_hint}")
    from ray.autoscaler.sdk import request_resources

    bundles = worker_bundles(cluster)
    shape = ", ".join(f"{k}: {v:g}" for k, v in bundles[0].items())
    request_resources(bundles=bundles)  # a no-op hint where no autoscaler runs
    t0 = last_report = time.monotonic()
    log.warning("asked the autoscaler for %d x {%s}; waiting up to %gs (cluster.wait_for_workers_s): %s",
                len(bundles), shape, limit, missing)
    try:
        while missing is not None:
            now = time.monotonic()
            if now - t0 >= limit:
                raise ClusterError(f"{missing} after waiting {limit:g}s (cluster.wait_for_workers_s){gpu_hint}")
            if now - last_report >= report_every_s:
                last_report = now
                log.warning("still waiting for %d x {%s}, %.0fs of %gs: %s", len(bundles), shape, now - t0, limit, missing)
            time.sleep(max(0.0, min(poll_s, t0 + limit - now)))
            missing = missing_resources(cluster)
        log.warning("the cluster holds the workers after %.0fs", time.monotonic() - t0)
    finally:
        request_resources(bundles=[])  # withdraw: the actors placed next keep the new nodes busy
