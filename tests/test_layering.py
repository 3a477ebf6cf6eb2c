"""Imports go one way: jobs -> pipeline -> samplers. Checked on the real import graph."""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _imported_top_levels(package: str) -> set[str]:
    names = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(
    "package,forbidden",
    [("samplers", {"ray", "pyarrow", "fsspec", "pipeline", "jobs", "s3fs", "pandas"}), ("pipeline", {"jobs"})],
)
def test_source_imports_respect_layers(package, forbidden):
    assert not _imported_top_levels(package) & forbidden


def test_importing_samplers_loads_no_distributed_stack():
    code = "import sys, samplers; print(sorted({m.split('.')[0] for m in sys.modules} & {'ray','pyarrow','fsspec','pipeline','jobs'}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
