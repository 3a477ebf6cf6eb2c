"""CLI start-up: wall time of `seedshard --help` and of the imports `inspect` and `generate` need.

Each row starts a fresh `python` (the console script `seedshard` is `pipeline.cli:main`, so
`python -m pipeline.cli --help` is the same code path) and reports the median of interleaved runs,
plus which of torch / ray the process imported. `python -c pass` is the interpreter's own floor.
Target: `seedshard --help` <= 0.5 s on an idle 2-core machine.

    python benchmarks/cli_startup.py [--quick]
"""

from __future__ import annotations

import subprocess
import sys
import time

import common

HEAVY = "import sys; print(','.join(m for m in ('torch', 'ray') if m in sys.modules) or '-')"
ROWS = [  # (label, python code run by `python -c`)
    ("python -c pass (floor)", "pass"),
    ("seedshard --help", "import sys\nfrom pipeline.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n"
                         f"    pass\n{HEAVY}"),
    ("imports of inspect", f"import pipeline.cli, pipeline.config, pipeline.output.fs, pipeline.output.manifest\n{HEAVY}"),
    ("imports of generate", f"import pipeline.cli, pipeline.config, pipeline.run.driver\n{HEAVY}"),
]


def run(code: str) -> tuple[float, str]:
    """(wall seconds, heavy modules imported) of one fresh interpreter running `code`."""
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], cwd=common.REPO, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    lines = out.stdout.strip().splitlines()
    return wall, (lines[-1] if lines and code != "pass" else "-")


def main() -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    rounds = 1 if args.quick else 11
    times: dict[str, list[float]] = {label: [] for label, _ in ROWS}
    heavy: dict[str, str] = {}
    for _ in range(rounds):  # interleaved, so machine load hits every row alike
        for label, code in ROWS:
            wall, heavy[label] = run(code)
            times[label].append(wall)
    rows = [(label, f"{common.median(times[label]):.3f}", heavy[label]) for label, _ in ROWS]
    print(common.markdown_table(["command", "wall s (median)", "imports torch/ray"], rows))


if __name__ == "__main__":
    main()
