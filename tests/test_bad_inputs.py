"""The bad-input catalogue: every bad job input gives one line `seedshard: error: ...` naming the problem, exit
status 2 (usage/config) or 1 (runtime), no traceback, and no file written or changed under an existing output.

Each case runs `seedshard generate CONFIG [overrides]` through `pipeline.cli.main` in this process against a copy
of a finished output; a few run as real subprocesses (`python -m pipeline.cli`, `python -m jobs.generate`) to
prove the exit statuses end to end.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import save_file

from pipeline.cli import main
from pipeline.config import ConfigError, validate_config
from pipeline.config.yaml12 import MAX_YAML_BYTES
from tests.pipeline.config.files import billion_laughs
from tests.pipeline.jobs import DELETE, gaussian_job, set_path, snapshot, write_output_in_process

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Case:
    """A bad input: `edit` sets dotted config paths (DELETE removes one), or `text` replaces the whole file;
    `prepare(out, tmp)` may damage the existing output first, or make files (returns extra overrides)."""

    id: str
    code: int
    match: str
    edit: dict[str, Any] = field(default_factory=dict)
    text: str | None = None
    overrides: list[str] = field(default_factory=list)
    prepare: Callable[[Path, Path], list[str]] | None = None


def _manifest_edit(change: Callable[[dict], None]) -> Callable[[Path, Path], list[str]]:
    def prepare(out: Path, tmp: Path) -> list[str]:
        data = json.loads((out / "__seedshard__" / "manifest.json").read_text())
        change(data)
        (out / "__seedshard__" / "manifest.json").write_text(json.dumps(data))
        return []
    return prepare


def _file(name: str, make: Callable[[Path], None], key: str = "model.checkpoint") -> Callable[[Path, Path], list[str]]:
    def prepare(out: Path, tmp: Path) -> list[str]:
        make(tmp / name)
        return [f"{key}={tmp / name}"]
    return prepare


class Exploit:
    """Unpickling this runs code: it writes the file named by `marker`."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('code ran')",)


def _exploit(path: Path) -> None:
    torch.save({"weight": Exploit(str(path.parent / "MARKER"))}, path)


def _truncated_safetensors(path: Path) -> None:
    save_file({"w": torch.ones(64)}, str(path))
    path.write_bytes(path.read_bytes()[:-40])


class _BadOutput(torch.nn.Module):
    """The exact Gaussian edm network with its output padded by one column (`pad`), or all NaN."""

    def __init__(self, pad: bool) -> None:
        super().__init__()
        from pipeline.models.gaussian import build_gaussian

        self.net, self.pad = build_gaussian("edm"), pad

    def forward(self, x: torch.Tensor, *times: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        out = self.net(x, *times)
        return torch.nn.functional.pad(out, (0, 1)) if self.pad else torch.full_like(out, float("nan"))


def wrong_shape() -> torch.nn.Module:
    """A factory whose network returns one column too many (`model.factory: tests.test_bad_inputs:wrong_shape`)."""
    return _BadOutput(pad=True)


def nan_output() -> torch.nn.Module:
    """A factory whose network returns NaN everywhere."""
    return _BadOutput(pad=False)


def _deflated_torch_file(path: Path) -> None:
    """A torch zip checkpoint of 800 kB of tensor data, its members deflated to a few kB (under a 100 kB cap)."""
    import zipfile

    plain = path.with_suffix(".plain")
    torch.save({"w": torch.zeros(200_000)}, plain)
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    plain.unlink()


def _subprocess_factory(out: Path, tmp: Path) -> list[str]:
    """`model.factory: subprocess:run` whose command would create MARKER (the test checks it never did)."""
    return ["model.factory=subprocess:run", f"model.kwargs={{args: [touch, {tmp / 'MARKER'}]}}"]


def _resume_with_more_workers_than_cpus(out: Path, tmp: Path) -> list[str]:
    from pipeline.run.cluster import machine_cpus

    (out / "shard-00001.parquet").unlink()  # a resume: work for Ray to do
    return [f"cluster.num_workers={machine_cpus() + 1}"]


DIGITS = {"model.factory": "pipeline.models.digits:build_demo", "model.kwargs": {}, "model.interface": "flow",
          "model.shape": [1, 8, 8], "model.num_classes": 10, "run.labels": "balanced", "sampler.time_dist": "uniform",
          "sampler.guidance_scale": 2.0}
BILLION_LAUGHS = billion_laughs()

CASES = [
    # --- the file itself
    Case("yaml-unclosed", 2, r"job.yaml:\d+:\d+: malformed YAML", text="run: {num_samples: 10\n"),
    Case("yaml-tab-indent", 2, r"malformed YAML", text="run:\n\tnum_samples: 10\n"),
    Case("yaml-duplicate-key", 2, r"duplicate key 'run'", text="run: {}\nrun: {}\n"),
    Case("yaml-top-level-list", 2, r"top level must be a mapping .*\(got list\)", text="- 1\n- 2\n"),
    Case("yaml-empty", 2, r"top level must be a mapping .*\(got NoneType\)", text=""),
    Case("config-file-missing", 2, r"cannot read config: No such file", text=DELETE),
    Case("yaml-alias-bomb", 2, r"job.yaml:\d+:\d+: YAML aliases expand the document past \d+ nodes \(the alias-expansion limit\)$",
         text=BILLION_LAUGHS + "run: {storage_options: {x: *l9}}\n"),
    Case("yaml-recursive-alias", 2, r"job.yaml:1:6: recursive YAML alias", text="run: &r {storage_options: *r}\n"),
    Case("yaml-too-large", 2, rf"job.yaml: YAML document too large \({MAX_YAML_BYTES + 1} bytes; the limit is {MAX_YAML_BYTES}\)$",
         text="#" * MAX_YAML_BYTES + "\n"),
    Case("yaml-nested-too-deeply", 2, r"job.yaml: YAML nested too deeply$", text="run: " + "[" * 1000 + "]" * 1000 + "\n"),
    Case("yaml-duplicate-after-merge", 2, r"job.yaml:2:\d+: malformed YAML: duplicate key 'seed'",
         text="base: &b {seed: 1}\nrun: {<<: *b, seed: 2, seed: 3}\n"),
    Case("yaml-1.1-boolean", 2, r"^run.overwrite: must be true or false \(got 'yes' of type str\)$", overrides=["run.overwrite=yes"]),
    # --- unknown keys, missing keys, wrong types
    Case("unknown-section", 2, r"^extra: unknown field; allowed: run, model, sampler, cluster, metrics, conditioning$", edit={"extra": {}}),
    Case("unknown-run-key", 2, r"^run.num_sample: unknown field; allowed: num_samples", edit={"run.num_sample": 10}),
    Case("unknown-sampler-key", 2, r"^sampler.step: unknown field", edit={"sampler.step": 4}),
    Case("missing-seed", 2, r"^run.seed: required field missing$", edit={"run.seed": DELETE}),
    Case("num-samples-string", 2, r"^run.num_samples: must be an integer \(got 'ten' of type str\)$", edit={"run.num_samples": "ten"}),
    Case("num-samples-float", 2, r"^run.num_samples: must be an integer \(got 1.5", edit={"run.num_samples": 1.5}),
    Case("overwrite-string", 2, r"^run.overwrite: must be true or false \(got 'maybe'", edit={"run.overwrite": "maybe"}),
    Case("shape-not-a-list", 2, r"^model.shape: must be a list", edit={"model.shape": 3}),
    # --- sizes
    Case("num-samples-zero", 2, r"^run.num_samples: must be > 0 \(got 0\)$", edit={"run.num_samples": 0}),
    Case("num-samples-negative", 2, r"^run.num_samples: must be > 0 \(got -5\)$", edit={"run.num_samples": -5}),
    Case("shard-size-zero", 2, r"^run.shard_size: must be > 0 \(got 0\)$", edit={"run.shard_size": 0}),
    Case("batch-size-negative", 2, r"^run.batch_size: must be > 0 \(got -1\)$", edit={"run.batch_size": -1}),
    Case("seed-negative", 2, r"^run.seed: must be >= 0 \(got -1\)$", edit={"run.seed": -1}),
    Case("seed-too-big", 2, r"^run.seed: must be < 18446744073709551616", edit={"run.seed": 2**64}),
    Case("shape-empty", 2, r"^model.shape: must have at least 1 item", edit={"model.shape": []}),
    Case("shape-zero-dim", 2, r"^model.shape\[1\]: must be > 0 \(got 0\)$", edit={"model.shape": [3, 0]}),
    Case("workers-zero", 2, r"^cluster.num_workers: must be >= 1 \(got 0\)$", edit={"cluster.num_workers": 0}),
    Case("gpus-negative", 2, r"^cluster.gpus_per_worker: must be >= 0", edit={"cluster.gpus_per_worker": -1}),
    Case("attempts-zero", 2, r"^cluster.max_shard_attempts: must be >= 1 \(got 0\)$", edit={"cluster.max_shard_attempts": 0}),
    # --- choices
    Case("format-csv", 2, r"^run.format: unknown 'csv'; allowed: parquet, safetensors, webdataset$", edit={"run.format": "csv"}),
    Case("dtype-int8", 2, r"^run.dtype: unknown 'int8'; allowed: float32, float16, uint8$", edit={"run.dtype": "int8"}),
    Case("labels-random", 2, r"^run.labels: unknown 'random'", edit={"run.labels": "random"}),
    Case("labels-without-classes", 2, r"^run.labels: 'uniform' needs model.num_classes", edit={"run.labels": "uniform"}),
    Case("fixed-label-missing", 2, r"^run.label: required with run.labels='fixed'",
         edit={"run.labels": "fixed", "model.num_classes": 10}),
    Case("fixed-label-out-of-range", 2, r"^run.label: must be in \[0, 10\)",
         edit={"run.labels": "fixed", "run.label": 10, "model.num_classes": 10}),
    Case("interface-unknown", 2, r"^model.interface: unknown 'score'; allowed: flow, edm, vp_eps, vp_v, vp_x0, meanflow$",
         edit={"model.interface": "score"}),
    # --- sampler
    Case("sampler-unknown", 2, r"^sampler.name: unknown 'rk45'; allowed: euler, heun, ", edit={"sampler.name": "rk45"}),
    Case("schedule-unknown", 2, r"^sampler.time_dist: unknown 'cosine'; allowed: uniform, exponential, karras, shift, explicit, diffusers$",
         edit={"sampler.time_dist": "cosine"}),
    Case("schedule-kwargs-unknown", 2, r"^sampler.time_kwargs: unknown 'shift' for time_dist='karras'",
         edit={"sampler.time_kwargs": {"shift": 3.0}}),
    Case("steps-zero", 2, r"^sampler.steps: must be > 0 \(got 0\)$", edit={"sampler.steps": 0}),
    Case("steps-negative", 2, r"^sampler.steps: must be > 0 \(got -3\)$", edit={"sampler.steps": -3}),
    Case("steps-string", 2, r"^sampler.steps: must be an integer", edit={"sampler.steps": "many"}),
    Case("sampler-kwargs-unknown", 2, r"^sampler: heun: unknown argument\(s\) bogus; allowed: ",
         edit={"sampler.kwargs": {"bogus": 1}}),
    Case("sampler-kwargs-version", 2, r"^sampler: heun: unknown argument\(s\) version", edit={"sampler.kwargs": {"version": 99}}),
    Case("guidance-without-guide", 2, r"^sampler.guidance_scale=2.0 needs a guide: set model.guide",
         edit={"sampler.guidance_scale": 2.0}),
    Case("guidance-cfg-without-labels", 2, r"^sampler.guidance_scale=2.0 uses classifier-free guidance, which needs class labels",
         edit={"sampler.guidance_scale": 2.0, "model.num_classes": 10}),
    Case("guidance-negative", 2, r"^sampler.guidance_scale: must be >= 0", edit={"sampler.guidance_scale": -1.0}),
    Case("guidance-interval-reversed", 2, r"^sampler.guidance_interval: must be \[lo, hi\] with lo < hi",
         edit={"sampler.guidance_interval": [0.5, 0.2]}),
    Case("guide-shape-mismatch", 2, r"^model.guide.shape: must equal model.shape=\[3, 4\] \(got \[3, 5\]\)$",
         edit={"model.guide": {"factory": "pipeline.models.gaussian:build_gaussian", "interface": "edm", "shape": [3, 5]},
               "sampler.guidance_scale": 2.0}),
    Case("sampler-needs-another-interface", 2,
         r"^sampler.name='euler_jump' cannot run with model.interface='flow': euler_jump needs a 'meanflow' field",
         edit={"model.interface": "flow", "model.kwargs": {"interface": "flow"}, "sampler.name": "euler_jump",
               "sampler.time_dist": "uniform"}),
    Case("sampler-grid-above-t-max", 2,
         r"^sampler.name='euler' cannot run with model.interface='flow': .*starts at t=5 but the 'flow' interface allows t <= 1",
         edit={"model.interface": "flow", "model.kwargs": {"interface": "flow"}, "sampler.name": "euler",
               "sampler.time_dist": "uniform", "sampler.time_kwargs": {"t_max": 5}}),
    # --- prepare checks everything deterministic before Ray starts and before any model code runs (issue 15)
    Case("guidance-infinite", 2, r"^sampler.guidance_scale: must be a finite number \(got inf of type float\)$",
         edit={"sampler.guidance_scale": float("inf")}),
    Case("time-kwargs-nan", 2, r"^sampler.time_kwargs.sigma_max: must be a finite number \(got nan",
         edit={"sampler.time_kwargs": {"sigma_max": float("nan")}}),
    Case("steps-too-many", 2, r"^sampler.steps: must be <= 100000 \(got 1000000000000\)$", edit={"sampler.steps": 10**12}),
    Case("shards-too-many", 2, r"^run.shard_size: run.num_samples=1000000000000 in shards of 20 makes 50000000000 shards, "
         r"more than the limit of 100000; set run.shard_size >= 10000000$", edit={"run.num_samples": 10**12}),
    Case("shape-too-large", 2, r"^model.shape: one sample of 1000000000000 elements is more than the limit of 268435456 "
         r"\(got \[1000000, 1000000\]\)$", edit={"model.shape": [10**6, 10**6]}),
    Case("fid-one-sample", 2, r"^metrics.fid: needs run.num_samples >= 2 for a covariance \(got 1\)$",
         edit={"run.num_samples": 1, "metrics.fid": {"extractor": "digits"}}),
    Case("grid-not-an-image", 2, r"^run.grid: needs image samples, model.shape \[C, H, W\] with C in \(1, 3\) \(got \[3, 4\]\)$",
         edit={"run.grid": 4}),
    Case("grid-more-than-samples", 2, r"^run.grid: must be <= run.num_samples=30 \(got 31\)$",
         edit={"run.grid": 31, "model.shape": [1, 2, 2]}),
    Case("null-label-out-of-range", 2, r"^model.null_label=50 \(classifier-free guide\): one forward pass on one sample at t=1 "
         r"with class label 9 on the driver's CPU failed: IndexError: index out of range", edit={**DIGITS, "model.null_label": 50}),
    Case("network-wrong-shape", 2, r"^model: the network's output on one sample at t=80 has shape \[1, 3, 5\], expected "
         r"\[1, 3, 4\] \(1 x model.shape\) \(set model.preflight=false to skip this check\)$",
         edit={"model.factory": "tests.test_bad_inputs:wrong_shape", "model.kwargs": {}}),
    Case("network-non-finite", 2, r"^model: the network's output on one sample at t=80 is not finite",
         edit={"model.factory": "tests.test_bad_inputs:nan_output", "model.kwargs": {}}),
    Case("preflight-off-is-explicit", 1, r'holds a different job \(model.factory: "pipeline.models.gaussian:build_gaussian" -> '
         r'"tests.test_bad_inputs:wrong_shape"; model.kwargs.interface: "edm" -> \(none\)\)',
         edit={"model.factory": "tests.test_bad_inputs:wrong_shape", "model.kwargs": {}, "model.preflight": False}),
    Case("factory-not-run-when-the-sampler-is-rejected", 2, r"^sampler.name='euler_jump' cannot run",
         edit={"sampler.name": "euler_jump"}, prepare=_subprocess_factory),
    Case("factory-not-run-when-the-fid-reference-is-missing", 1, r"nope.npz",
         edit={"metrics.fid": {"extractor": "digits", "ref": "/nonexistent/nope.npz"}}, prepare=_subprocess_factory),
    Case("more-workers-than-cpus", 1, r"^cluster.num_workers=\d+ x cluster.cpus_per_worker=1 needs \d+ CPUs, but the Ray cluster "
         r"has \d+", prepare=_resume_with_more_workers_than_cpus),
    # --- overrides
    Case("override-no-equals", 2, r"^override 'run.seed': expected key.path=value$", overrides=["run.seed"]),
    Case("override-unknown-field", 2, r"^override 'run.sed=3': unknown field run.sed; allowed: ", overrides=["run.sed=3"]),
    Case("override-empty-value", 2, r"^override 'run.seed=': empty value", overrides=["run.seed="]),
    Case("override-bad-yaml", 2, r"^override run.seed:\d+:\d+: malformed YAML", overrides=["run.seed=[1"]),
    # --- model: factory and checkpoint (runtime: exit 1)
    Case("factory-malformed", 2, r"^model.factory: must be 'package.module:callable' \(got 'no_colon'\)$",
         edit={"model.factory": "no_colon"}),
    Case("factory-module-missing", 1, r"^model.factory 'nonexistent_pkg.mod:build': cannot import module 'nonexistent_pkg.mod'",
         edit={"model.factory": "nonexistent_pkg.mod:build"}),
    Case("factory-callable-missing", 1, r"module 'pipeline.models.gaussian' has no callable 'nope'$",
         edit={"model.factory": "pipeline.models.gaussian:nope"}),
    Case("factory-not-a-module", 1, r"^model.factory 'builtins:dict' returned dict, not a torch.nn.Module$",
         edit={"model.factory": "builtins:dict", "model.kwargs": {}}),
    Case("factory-kwargs-invalid", 1, r"failed with model.kwargs=.*ValueError: GaussianData: s must be > 0",
         edit={"model.kwargs": {"interface": "edm", "s": -1.0}}),
    Case("factory-kwargs-unknown", 1, r"failed with model.kwargs=.*TypeError: .*unexpected keyword argument 'bogus'",
         edit={"model.kwargs": {"interface": "edm", "bogus": 1}}),
    Case("interface-kwargs-unknown", 1, r"^model.interface_kwargs \{'bogus': 1\} do not fit 'edm'",
         edit={"model.interface_kwargs": {"bogus": 1}}),
    Case("checkpoint-suffix", 2, r"^model.checkpoint: must be a .safetensors, .pt, .pth, .ckpt file", edit={"model.checkpoint": "w.bin"}),
    Case("checkpoint-missing", 1, r"^model.checkpoint '/nonexistent/w.safetensors': cannot read \(FileNotFoundError",
         edit={"model.checkpoint": "/nonexistent/w.safetensors"}),
    Case("checkpoint-garbage", 1, r"refused or unreadable with weights_only=True",
         prepare=_file("w.pt", lambda p: p.write_bytes(os.urandom(256)))),
    Case("checkpoint-truncated-safetensors", 1, r"not a valid safetensors file", prepare=_file("w.safetensors", _truncated_safetensors)),
    Case("checkpoint-wrong-keys", 1, r"^model.checkpoint does not fit 'pipeline.models.gaussian:build_gaussian': .*unexpected \['w'\]",
         prepare=_file("w.safetensors", lambda p: save_file({"w": torch.ones(2)}, str(p)))),
    Case("checkpoint-not-a-state-dict", 1, r"expected a state dict of tensors, got list",
         prepare=_file("w.pt", lambda p: torch.save([torch.ones(2)], p))),
    Case("checkpoint-pickle-runs-code", 1, r"refused or unreadable with weights_only=True; only plain tensor checkpoints",
         prepare=_file("w.pt", _exploit)),
    Case("checkpoint-over-the-cap", 1, r"^model.checkpoint .*w.safetensors: the file has \d+ bytes, more than "
         r"model.max_checkpoint_bytes=1000 allows$", edit={"model.max_checkpoint_bytes": 1000},
         prepare=_file("w.safetensors", lambda p: save_file({"w": torch.ones(1000)}, str(p)))),
    Case("checkpoint-unpacks-over-the-cap", 1, r"^model.checkpoint .*w.pt: the torch file unpacks to \d+ bytes, more than "
         r"model.max_checkpoint_bytes=100000 allows$", edit={"model.max_checkpoint_bytes": 100_000},
         prepare=_file("w.pt", _deflated_torch_file)),
    # --- output
    Case("output-empty", 2, r"^run.output: must be non-empty", edit={"run.output": ""}),
    Case("output-under-a-file", 1, r"is not a directory$", prepare=_file("afile", lambda p: p.write_text("x"), key="run.output")),
    Case("output-unknown-protocol", 1, r"^nosuchproto://bucket/out: Protocol not known: nosuchproto$",
         edit={"run.output": "nosuchproto://bucket/out"}),
    Case("output-memory", 1, r"memory:// lives in one process and Ray workers cannot share it", edit={"run.output": "memory://b/out"}),
    # --- the existing output (a finished job of this same config)
    Case("another-job-there", 1, r"holds a different job \(run.seed: 1 -> 5\); set run.overwrite=true or choose a new run.output$",
         edit={"run.seed": 5}),
    Case("resume-false", 1, r"already holds this job and run.resume=false", edit={"run.resume": False}),
    Case("manifest-corrupt", 1, r"manifest.json is not valid JSON",
         prepare=lambda out, tmp: [(out / "__seedshard__" / "manifest.json").write_text("{half"), []][1]),
    Case("manifest-newer-format", 1, r"has format_version 99; this seedshard reads format_version 1 or 2$",
         prepare=_manifest_edit(lambda m: m.update(format_version=99))),
    Case("sampler-state-newer", 1, r"holds a different job \(sampler.version: 99 -> 1\)",
         prepare=_manifest_edit(lambda m: m["sampler_state"].update(version=99))),
    Case("sampler-state-unknown-key", 1, r"holds a different job \(sampler.bogus: 1 -> \(none\)\)",
         prepare=_manifest_edit(lambda m: m["sampler_state"].update(bogus=1))),
    Case("shards-without-manifest", 1, r"holds shard files but no manifest",
         prepare=lambda out, tmp: [(out / "__seedshard__" / "manifest.json").unlink(), []][1]),
    # --- cluster
    Case("ray-address-refused", 1, r"^cannot connect to Ray at '127.0.0.1:1': Connection refused", edit={"cluster.address": "127.0.0.1:1"},
         prepare=lambda out, tmp: [(out / "shard-00001.parquet").unlink(), []][1]),  # a resume: work for Ray to do
    Case("ray-address-malformed", 1, r"^cluster.address '127.0.0.1:head': expected host:port$", edit={"cluster.address": "127.0.0.1:head"},
         prepare=lambda out, tmp: [f"run.output={tmp / 'fresh'}"]),
]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[dict[str, Any], Path]:
    """(config data of a small job, a finished output of exactly that job)."""
    golden = tmp_path_factory.mktemp("golden") / "out"
    data = gaussian_job(str(golden), sampler={"steps": 2}, run={"num_samples": 30}).resolved()
    write_output_in_process(validate_config(data))
    return data, golden


def _job_file(case: Case, data: dict, tmp: Path) -> Path:
    path = tmp / "job.yaml"
    if case.text is DELETE:
        return path
    if case.text is not None:
        path.write_text(case.text)
        return path
    data = copy.deepcopy(data)
    for key, value in case.edit.items():
        set_path(data, key, value)
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_catalogue_is_big_enough():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_with_its_exit_status_and_changes_nothing(case: Case, base, tmp_path, capsys):
    data, golden = base
    out = tmp_path / "out"
    shutil.copytree(golden, out)
    data = {**data, "run": {**data["run"], "output": str(out)}}
    overrides = case.prepare(out, tmp_path) if case.prepare else []
    path = _job_file(case, data, tmp_path)
    before = snapshot(out)
    code = main(["generate", str(path), *overrides, *case.overrides])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert (code, len(lines)) == (case.code, 1), err
    assert lines[0].startswith("seedshard: error: ") and "Traceback" not in err
    assert re.search(case.match, lines[0].removeprefix("seedshard: error: ")), lines[0]
    assert snapshot(out) == before  # not a byte or an mtime changed, nothing added or removed
    assert not (tmp_path / "MARKER").exists()  # the pickle's code never ran
    assert not (tmp_path / "fresh").exists()  # not even created


def test_the_exploit_checkpoint_really_runs_code_when_unpickled(tmp_path):
    """The control for checkpoint-pickle-runs-code: the payload is live (so refusing it is what kept it from running)."""
    _exploit(tmp_path / "w.pt")
    torch.load(tmp_path / "w.pt", weights_only=False)
    assert (tmp_path / "MARKER").read_text() == "code ran"


def test_the_subprocess_factory_really_runs_its_command(base, tmp_path, capsys):
    """The control for factory-not-run-*: a job file is code; once the rest of the config is accepted,
    model.factory is imported and called (so rejecting the config first is what kept MARKER away)."""
    data, _ = base
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({**data, "run": {**data["run"], "output": str(tmp_path / "fresh")}}))
    assert main(["generate", str(path), *_subprocess_factory(tmp_path, tmp_path)]) == 1
    assert "returned CompletedProcess, not a torch.nn.Module" in capsys.readouterr().err
    assert (tmp_path / "MARKER").exists() and not (tmp_path / "fresh").exists()


def test_debug_shows_the_traceback_and_keeps_the_exit_status(base, tmp_path, capsys):
    data, _ = base
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["--debug", "generate", str(path), "run.seed=-1"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ConfigError: run.seed: must be >= 0" in err, err


def test_real_processes_exit_with_the_documented_statuses(base, tmp_path):
    """A handful through real subprocesses (run side by side): usage errors exit 2, runtime errors 1, fast."""
    data, golden = base
    out = tmp_path / "out"
    shutil.copytree(golden, out)
    (tmp_path / "good.yaml").write_text(yaml.safe_dump({**data, "run": {**data["run"], "output": str(out)}}))
    (tmp_path / "bad.yaml").write_text("run: {num_samples: 10\n")
    _exploit(tmp_path / "w.pt")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_AUTH_MODE": "disabled"}
    runs = {
        "malformed-yaml": (["-m", "pipeline.cli", "generate", "bad.yaml"], 2, r"malformed YAML"),
        "unknown-key": (["-m", "jobs.generate", "good.yaml", "run.num_sample=3"], 2, r"unknown field run.num_sample"),
        "pickle-checkpoint": (["-m", "jobs.generate", "good.yaml", f"model.checkpoint={tmp_path / 'w.pt'}"], 1,
                              r"refused or unreadable with weights_only=True"),
        "ray-address": (["-m", "pipeline.cli", "generate", "good.yaml", "cluster.address=127.0.0.1:1", "run.output=fresh"], 1,
                        r"cannot connect to Ray at '127.0.0.1:1'"),
    }
    before = snapshot(out)
    t0 = time.monotonic()
    procs = {name: subprocess.Popen([sys.executable, *argv], cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO)},
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, (argv, _, _) in runs.items()}
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=120)
        _, code, match = runs[name]
        lines = err.strip().splitlines()
        assert proc.returncode == code and len(lines) == 1 and lines[0].startswith("seedshard: error: "), (name, err)
        assert re.search(match, lines[0]), (name, lines[0])
    assert time.monotonic() - t0 < 60  # a missing Ray head fails in seconds, not after minutes of retries
    assert snapshot(out) == before and not (tmp_path / "MARKER").exists()
    assert not (tmp_path / "fresh").exists()  # a job that cannot start does not even create its output directory
