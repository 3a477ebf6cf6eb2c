"""A private `ray start --head` cluster for end-to-end tests: own temp dir, free ports, no token auth,
stopped by the PIDs it started (never `ray stop`: other Ray instances may share the machine)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def ray_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "disabled"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `python` = this interpreter
    return env


def pids_naming(text: str) -> list[int]:
    """PIDs of processes (other than this one) whose command line contains `text`, e.g. a private temp dir."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def kill_session(sid: int) -> None:
    """SIGKILL every process of session `sid` (a process started with start_new_session=True and what it left)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()  # state ppid pgrp session ...
                if int(fields[3]) == sid:
                    os.kill(int(entry.name), signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass


def kill_pids_naming(text: str, grace_s: float = 2.0) -> None:
    """SIGTERM the processes whose command line contains `text`, SIGKILL those still there after `grace_s`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = pids_naming(text)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while pids and time.monotonic() < deadline:  # poll: most exit within a few tens of ms
            time.sleep(0.05)
            pids = pids_naming(text)


class RayHead:
    """`ray start --head --block` in its own session; `dashboard_url` takes `ray job submit`."""

    def __init__(self, num_cpus: int = 2, gcs_port: int | None = None, extra_args: Sequence[str] = (),
                 env: dict[str, str] | None = None) -> None:
        self.temp_dir = tempfile.mkdtemp(prefix="rs", dir="/tmp")  # short: socket paths stay < 100 chars
        gcs, dash, client, agent, metrics = free_ports(5)
        gcs = gcs_port or gcs
        self.gcs_address = f"127.0.0.1:{gcs}"
        self.dashboard_url = f"http://127.0.0.1:{dash}"
        cmd = [
            str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--temp-dir", self.temp_dir,
            "--port", str(gcs), "--dashboard-port", str(dash), "--ray-client-server-port", str(client),
            "--dashboard-agent-listen-port", str(agent), "--metrics-export-port", str(metrics),
            "--num-cpus", str(num_cpus), "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
            "--disable-usage-stats", *extra_args,
        ]
        self.log = open(Path(self.temp_dir) / "ray-start.log", "wb")
        self.proc = subprocess.Popen(cmd, env=ray_env() | (env or {}), stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited {self.proc.returncode}: {self.output()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.dashboard_url}/api/version", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(1)
        raise TimeoutError(f"Ray dashboard not up after {timeout_s}s: {self.output()[-2000:]}")

    def output(self) -> str:
        return (Path(self.temp_dir) / "ray-start.log").read_text(errors="replace")

    def own_pids(self) -> list[int]:
        """PIDs of processes whose command line names this cluster's temp dir (raylet, gcs, workers...)."""
        return pids_naming(self.temp_dir)

    def stop(self, grace_s: float = 1.0) -> None:
        """SIGTERM the `ray start --block` session (it stops what it started) and give it `grace_s` (a few of Ray's
        processes wait ~30 s on a GCS that is already gone, and a test cluster has nothing to save), then SIGKILL
        the session and leftovers by PID."""
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=grace_s)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        kill_pids_naming(self.temp_dir)
        self.log.close()
        if not self.own_pids():
            shutil.rmtree(self.temp_dir, ignore_errors=True)
