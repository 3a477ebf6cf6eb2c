"""Helpers for the config tests: the demo job, edited copies of it written as YAML, and the error lines."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, load_config
from tests.pipeline.jobs import set_path

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "configs" / "demo.yaml"


def with_changes(data: dict, **changes) -> dict:
    """A deep copy of `data` with dotted paths set (`run__seed=1` sets run.seed) or deleted."""
    out = copy.deepcopy(data)
    for key, value in changes.items():
        set_path(out, key.replace("__", "."), value)
    return out


def write_job(tmp_path: Path, data) -> str:
    """`data` (a YAML text, or plain data to dump) written to tmp_path/job.yaml."""
    path = tmp_path / "job.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return str(path)


def error_lines(path: str, overrides=()) -> list[str]:
    """The lines of the ConfigError that loading `path` with `overrides` raises."""
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    assert str(info.value) == "\n".join(info.value.problems)
    return str(info.value).splitlines()


def billion_laughs(levels: int = 9) -> str:
    """The classic alias bomb: `levels` levels of 9 aliases each, 9**(levels + 1) strings once expanded, in 1 KB."""
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"
