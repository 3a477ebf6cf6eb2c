"""Every benchmark script runs with --quick and prints a Markdown table (see benchmarks/README.md).

Peers (k-diffusion, diffusers) are measured only when SEEDSHARD_BENCH_PEERS=1 asks for them and
benchmarks/.peers-venv exists (CI has neither); otherwise the scripts that have peers run with --no-peers,
print seedshard's and the bare loop's rows, and say the peers were skipped.
"""

import os
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PEERS_VENV = REPO / "benchmarks" / ".peers-venv"
PEERS = os.environ.get("SEEDSHARD_BENCH_PEERS") == "1" and PEERS_VENV.exists()
SCRIPTS = [  # (benchmarks/NAME, whether it measures peers), longest --quick run first (so that the two at a time
    # overlap best); a new benchmark script is added here
    ("pipeline_efficiency.py", False),
    ("fid_overhead.py", False),
    ("driver_scale.py", False),
    ("gpu.py", False),
    ("accuracy.py", True),
    ("sampler_overhead.py", True),
    ("noise_cost.py", False),
    ("cli_startup.py", False),
]


def _run_quick(script: str, has_peers: bool) -> subprocess.CompletedProcess:
    no_peers = ["--no-peers"] if has_peers and not PEERS else []
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--quick", *no_peers],
                          cwd=REPO, capture_output=True, text=True, timeout=240)


@cache
def _quick_runs() -> dict[str, Future]:
    """Every script's --quick run, two at a time (smoke runs: their numbers are not checked, and most of their
    time is process and Ray start-up, which overlaps well on two cores)."""
    pool = ThreadPoolExecutor(max_workers=2)
    runs = {script: pool.submit(_run_quick, script, has_peers) for script, has_peers in SCRIPTS}
    pool.shutdown(wait=False)
    return runs


@pytest.mark.parametrize("script, has_peers", SCRIPTS, ids=[name for name, _ in SCRIPTS])
def test_benchmark_runs_quick(script, has_peers):
    result = _quick_runs()[script].result()
    assert result.returncode == 0, result.stderr[-3000:]
    assert "|---|" in result.stdout, result.stdout  # a Markdown table
    if not PEERS:
        rows = [line for line in result.stdout.splitlines() if line.startswith("|")]
        assert not any("k-diffusion" in row or "diffusers" in row for row in rows), rows
        if has_peers:
            assert "peers: skipped" in result.stdout, result.stdout
