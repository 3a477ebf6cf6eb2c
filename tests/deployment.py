"""What the deployment files (cluster.yaml, docs/kuberay.md) are checked against: pyproject's pins, the
torch version CI installs, the job config loader, and the rule that every value to fill in is named."""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from pipeline.config import JobConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
FILL_IN = re.compile(r"YOUR_[A-Z]+")
PLACEHOLDER = re.compile(r"<[A-Za-z_-]+>")  # <org>, <commit>: values a user must guess
tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def ci_torch_version() -> str:
    """The torch version that .ci/run (README's quick start 2) installs."""
    (version,) = set(re.findall(r"pip install torch==(\S+)", (ROOT / ".ci" / "run").read_text()))
    return version


def torch_pin(command: str) -> str:
    """The version in `pip install ... torch==V ...`; AssertionError if torch is not pinned there."""
    (version,) = re.findall(r"(?<![\w-])torch==([\w.+]+)", command)
    return version


def fits_pyproject(requirement: str) -> bool:
    """Whether a pinned `name==version` satisfies pyproject's requirement on that name."""
    req = Requirement(requirement)
    (version,) = [s.version for s in req.specifier]
    (declared,) = [Requirement(r) for r in pyproject()["project"]["dependencies"] if Requirement(r).name == req.name]
    return declared.specifier.contains(version)


def job_config(command: str) -> JobConfig:
    """The validated config of a `python -m jobs.generate CONFIG key=value ...` command line."""
    words = shlex.split(command)
    i = words.index("jobs.generate")
    assert words[i - 2:i] == ["python", "-m"], command
    config, *overrides = words[i + 1:]
    return load_config(str(ROOT / config), overrides)


def undocumented_fill_ins(text: str, documented: str) -> set[str]:
    """YOUR_X values used in `text` that `documented` (the paragraph that explains them) does not name."""
    return set(FILL_IN.findall(text)) - set(FILL_IN.findall(documented))


def edited(data: Any, path: tuple, value: Any) -> Any:
    """A deep copy of `data` with data[path[0]][path[1]]... set to `value` (keys or list indices)."""
    data = copy.deepcopy(data)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data
