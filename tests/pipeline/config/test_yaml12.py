"""Job files read as YAML 1.2 (core schema): decimal `010`, `1e3` a float, only true/false booleans, merge keys,
no duplicate keys; `key.path=value` overrides parse their values the same way."""

import math

import pytest

from pipeline.config import ConfigError, load_config
from pipeline.config.yaml12 import MAX_YAML_BYTES, MAX_YAML_NODES, parse_yaml
from tests.pipeline.config.files import DEMO, billion_laughs, error_lines, write_job


@pytest.mark.parametrize(
    "text, value",
    [
        ("010", 10), ("0100", 100), ("-010", -10), ("+7", 7), ("0", 0),   # decimal, never YAML 1.1 octal
        ("0o10", 8), ("0x1F", 31),                                       # octal and hex need their prefix
        ("1e3", 1000.0), ("1.5e-3", 0.0015), ("-2E+2", -200.0), (".5", 0.5), ("1.", 1.0),
        (".inf", math.inf), ("-.Inf", -math.inf),
        ("true", True), ("False", False), ("TRUE", True),
        ("null", None), ("~", None), ("", None),
        # strings in YAML 1.2, numbers/booleans/dates in YAML 1.1
        ("yes", "yes"), ("no", "no"), ("on", "on"), ("off", "off"), ("y", "y"),
        ("1_000", "1_000"), ("1:30", "1:30"), ("0b101", "0b101"), ("2024-01-01", "2024-01-01"),
        ("'010'", "010"), ("=", "="),
    ],
)
def test_scalars_follow_the_yaml_1_2_core_schema(text, value):
    got = parse_yaml(f"a: {text}", "t")["a"]
    assert got == value and type(got) is type(value), (text, got)


def test_nan_is_a_float():
    assert math.isnan(parse_yaml("a: .nan", "t")["a"])


def test_explicit_tags_use_the_same_rules():
    assert parse_yaml("a: !!int 010\nb: !!float 3", "t") == {"a": 10, "b": 3.0}
    with pytest.raises(ConfigError, match=r"t:1:4: malformed YAML: 'yes' is not a YAML 1.2 boolean"):
        parse_yaml("a: !!bool yes", "t")


def test_numbers_in_a_job_file(tmp_path):
    text = DEMO.read_text().replace("seed: 0", "seed: 010").replace("guidance_scale: 2.0", "guidance_scale: 1e1")
    assert text.count("010") == 1 and text.count("1e1") == 1
    cfg = load_config(write_job(tmp_path, text))
    assert cfg.run.seed == 10 and cfg.sampler.guidance_scale == 10.0


def test_overrides_parse_values_the_same_way():
    cfg = load_config(str(DEMO), ["run.seed=010", "run.num_samples=0100", "sampler.guidance_scale=1e3",
                                  "model.kwargs.flag=yes", "run.overwrite=true"])
    assert cfg.run.seed == 10 and cfg.run.num_samples == 100 and cfg.sampler.guidance_scale == 1000.0
    assert cfg.model.kwargs["flag"] == "yes" and cfg.run.overwrite is True
    assert error_lines(str(DEMO), ["run.overwrite=yes"]) == [
        "run.overwrite: must be true or false (got 'yes' of type str)"]


MERGE = """\
base: &base {num_samples: 100, seed: 1, shard_size: 50, batch_size: 25, output: out}
run:
  <<: *base
  seed: 7
"""


def test_merge_keys_with_overriding_keys():
    data = parse_yaml(MERGE, "t")
    assert data["run"] == {"num_samples": 100, "seed": 7, "shard_size": 50, "batch_size": 25, "output": "out"}
    assert data["base"]["seed"] == 1  # the anchored mapping itself is unchanged


def test_merge_key_runs_a_job_file(tmp_path):
    """A valid merge-key job file loads: run.seed from the file overrides the merged one."""
    demo = DEMO.read_text()
    head, tail = demo.split("\nrun:\n", 1)
    run_body, rest = tail.split("\nmodel:", 1)
    text = f"{head}\nrun:\n  <<: {{seed: 3, num_samples: 40}}\n{run_body}\nmodel:{rest}"
    cfg = load_config(write_job(tmp_path, text))
    assert cfg.run.seed == 0 and cfg.run.num_samples == 1000  # keys written in the mapping win
    text = f"{head}\nrun:\n  <<: [{{seed: 3}}, {{seed: 4, on_nonfinite: skip}}]\n{run_body.replace('  seed: 0', '')}\nmodel:{rest}"
    cfg = load_config(write_job(tmp_path, text))
    assert cfg.run.seed == 3 and cfg.run.on_nonfinite == "skip"  # earlier merged mappings win over later ones


def test_merge_list_order_and_own_keys():
    data = parse_yaml("a: &a {x: 1}\nb: &b {x: 2, z: 3}\nc: {<<: [*a, *b], w: 0}", "t")
    assert data["c"] == {"x": 1, "z": 3, "w": 0}


@pytest.mark.parametrize(
    "text, message",
    [
        ("a: {x: 1, x: 2}", "t:1:11: malformed YAML: duplicate key 'x'"),
        ("base: &b {x: 1}\nc: {<<: *b, y: 1, y: 2}", "duplicate key 'y'"),
        ("a: {<<: {x: 1}, <<: {y: 1}}", "duplicate key '<<'"),
        ("a: {<<: 5}", "'<<' takes a mapping or a list of mappings"),
        ("? [1]\n: 2", "unhashable key [1]"),
    ],
)
def test_bad_mappings(text, message):
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, "t")
    assert len(info.value.problems) == 1 and message in info.value.problems[0], info.value.problems


# --------------------------------------------------------------------------- limits


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    text = billion_laughs() + DEMO.read_text().replace("run:\n", "run:\n  storage_options: {x: *l9}\n", 1)
    lines = error_lines(write_job(tmp_path, text))
    assert len(lines) == 1 and lines[0].startswith(str(tmp_path / "job.yaml") + ":"), lines
    assert f"YAML aliases expand the document past {MAX_YAML_NODES} nodes (the alias-expansion limit)" in lines[0]
    assert parse_yaml(billion_laughs(levels=4), "t")["l4"][8][8][8][8][8] == "lol"  # 9**5 strings: fine


def test_aliases_below_the_limit_are_shared_values():
    data = parse_yaml("a: &a {x: [1, 2]}\nb: *a\nc: [*a, *a]", "t")
    assert data["b"] == data["c"][1] == {"x": [1, 2]}


@pytest.mark.parametrize("text", ["a: &a [1, *a]", "a: &a {b: *a}", "a: &a {<<: *a}"])
def test_a_node_inside_itself_is_refused(text):
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, "t")
    assert info.value.problems == ["t:1:4: recursive YAML alias (a node that contains itself)"]


def test_deep_nesting_is_one_line():
    with pytest.raises(ConfigError) as info:
        parse_yaml("a: " + "[" * 1000 + "]" * 1000, "t")
    assert info.value.problems == ["t: YAML nested too deeply"]


def test_size_limit(tmp_path):
    demo = DEMO.read_text()
    at_limit = demo + "#" * (MAX_YAML_BYTES - len(demo.encode()) - 1) + "\n"
    assert len(at_limit.encode()) == MAX_YAML_BYTES
    assert load_config(write_job(tmp_path, at_limit)).run.seed == 0
    path = write_job(tmp_path, at_limit + "\n")
    assert error_lines(path) == [f"{path}: YAML document too large ({MAX_YAML_BYTES + 1} bytes; the limit is {MAX_YAML_BYTES})"]
    huge = "x" * (MAX_YAML_BYTES + 1)
    assert error_lines(str(DEMO), [f"model.kwargs.note={huge}"]) == [
        f"override model.kwargs.note: YAML document too large ({MAX_YAML_BYTES + 1} bytes; the limit is {MAX_YAML_BYTES})"]
