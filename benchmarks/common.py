"""Shared helpers of the benchmark scripts: command line, timing, Markdown tables, peer processes.

Peers (k-diffusion, diffusers) live in their own virtual environment, `benchmarks/.peers-venv`
(built by `setup_peers.sh`, never a seedshard dependency). A script measures them by starting
itself again under that environment's python with `--peer`: the child answers JSON requests,
one per line, so the parent can interleave its own rounds with the peers' and print one table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout: `python benchmarks/NAME.py`; PYTHONPATH comes first
    sys.path.append(str(REPO))
PEERS_VENV = REPO / "benchmarks" / ".peers-venv"
PEERS_PYTHON = PEERS_VENV / "bin" / "python"


def parser(description: str, peers: bool = False) -> argparse.ArgumentParser:
    """The common command line: --quick, and for scripts with peers --no-peers / --setup-peers / --peer."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a sub-minute smoke run with few repeats")
    if peers:
        p.add_argument("--no-peers", action="store_true", help="skip k-diffusion / diffusers")
        p.add_argument("--setup-peers", action="store_true", help=f"build {PEERS_VENV.name} first if missing")
        p.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)  # internal: serve peer requests
    return p


# -- timing --------------------------------------------------------------------------------------
def best_of(fn: Callable[[], Any], inner: int) -> float:
    """Shortest wall time of `inner` consecutive calls of fn, in seconds."""
    best = float("inf")
    for _ in range(inner):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# -- tables --------------------------------------------------------------------------------------
def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table; floats are printed as given (format them first)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_note() -> str:
    import torch

    return (f"python {sys.version.split()[0]}, torch {torch.__version__}, {os.cpu_count()} CPUs visible, "
            f"torch threads {torch.get_num_threads()}")


# -- peers ---------------------------------------------------------------------------------------
def setup_peers() -> None:
    """Build the peers' virtual environment (a few minutes; needs the package registry)."""
    subprocess.run(["bash", str(REPO / "benchmarks" / "setup_peers.sh")], check=True)


def peers_available(args: argparse.Namespace) -> bool:
    if args.no_peers:
        return False
    if args.setup_peers and not PEERS_PYTHON.exists():
        setup_peers()
    return PEERS_PYTHON.exists()


class PeerProcess:
    """This script re-run under the peers' python with --peer; `ask(request)` returns its JSON answer."""

    def __init__(self, script: str, quick: bool = False) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        cmd = [str(PEERS_PYTHON), script, "--peer"] + (["--quick"] if quick else [])
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def ask(self, request: dict[str, Any]) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"peer process exited with status {self.proc.wait()}")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def serve(handle: Callable[[dict[str, Any]], Any]) -> None:
    """The peer side: answer each JSON request line on stdin with `handle(request)` as one JSON line.
    Anything the libraries print goes to stderr, so stdout carries only answers."""
    out = sys.stdout
    sys.stdout = sys.stderr
    for line in sys.stdin:
        out.write(json.dumps(handle(json.loads(line))) + "\n")
        out.flush()


def import_k_diffusion_sampling() -> Any:
    """`k_diffusion.sampling`, unmodified, without running k_diffusion/__init__.py.

    The package's __init__ imports its training stack (clean-fid, clip, torchvision, wandb); its
    sampling module needs none of it, but imports `k_diffusion.utils`, which imports
    `torchvision.transforms.functional` for image helpers the samplers never call. torchvision has
    no CPU build to match the CPU torch here, so an empty stand-in is registered for that one import
    and removed again, before diffusers (which probes for torchvision) is imported."""
    import importlib
    import importlib.util
    import types

    if "k_diffusion.sampling" in sys.modules:
        return sys.modules["k_diffusion.sampling"]
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError("k-diffusion is not installed in this environment")
    package = types.ModuleType("k_diffusion")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules.setdefault("k_diffusion", package)
    stand_ins = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")
    added = [name for name in stand_ins if name not in sys.modules]
    for name in added:
        sys.modules[name] = types.ModuleType(name)
    try:
        return importlib.import_module("k_diffusion.sampling")
    finally:
        for name in added:
            del sys.modules[name]
