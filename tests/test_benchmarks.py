"""Every benchmark script runs with --quick and prints a Markdown table (see benchmarks/README.md).

Peers (k-diffusion, diffusers) are measured only where benchmarks/.peers-venv exists; without it the
scripts print seedshard's and the bare loop's rows and say the peers were skipped.
"""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PEERS_VENV = REPO / "benchmarks" / ".peers-venv"
SCRIPTS = [  # benchmarks/NAME; a new benchmark script is added here
    "sampler_overhead.py",
    "accuracy.py",
    "noise_cost.py",
    "pipeline_efficiency.py",
    "driver_scale.py",
    "gpu.py",
    "fid_overhead.py",
    "cli_startup.py",
]


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_runs_quick(script):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--quick"],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "|---|" in result.stdout, result.stdout  # a Markdown table
    if not PEERS_VENV.exists():
        rows = [line for line in result.stdout.splitlines() if line.startswith("|")]
        assert not any("k-diffusion" in row or "diffusers" in row for row in rows), rows
        if "peers:" in result.stdout:
            assert "peers: skipped" in result.stdout
