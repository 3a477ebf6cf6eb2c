"""The `seedshard` command as users run it: exit codes, one-line errors, generate/inspect/grid/fid/ref-stats."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, timeout: float = 300, env: dict[str, str] | None = None,
            cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`seedshard ARGS` in a fresh process; by default on a private Ray of its own (no RAY_ADDRESS)."""
    if env is None:
        env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
        env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_generate_inspect_grid_fid_as_a_user_would(tmp_path, shared_ray_env):
    out = tmp_path / "out"
    job = (f"run.output={out}", "run.num_samples=60", "run.shard_size=30", "sampler.steps=4", "run.grid=20",
           "cluster.num_workers=1")  # one actor: the CLI is under test here, not the fan-out
    gen = run_cli("generate", "configs/demo.yaml", *job)
    assert gen.returncode == 0, gen.stderr
    assert "wrote 60 samples in 2 shards" in gen.stdout and "seedshard: FID " in gen.stdout
    assert "seedshard: shards 0 kept, 0 regenerated, 2 new; 60 samples generated, " in gen.stdout
    assert Image.open(out / "__seedshard__" / "grid.png").size[0] >= 5 * 32
    assert f"grid of the first 20 samples: {out}/__seedshard__/grid.png" in gen.stdout
    inspect = run_cli("inspect", str(out))
    assert inspect.returncode == 0 and "samples    60/60 in 2 shards" in inspect.stdout and "status     complete" in inspect.stdout
    assert "fid        " in inspect.stdout and "timings    created " in inspect.stdout
    (out / "shard-00001.parquet").unlink()  # the rerun keeps shard 0 and regenerates shard 1
    # The first run started and stopped a private Ray; the later ones join the tests' shared Ray (RAY_ADDRESS).
    rerun = run_cli("--debug", "generate", "configs/demo.yaml", *job, env=shared_ray_env)
    assert rerun.returncode == 0, rerun.stderr
    assert "seedshard: shards 1 kept, 1 regenerated, 0 new; 30 samples generated, " in rerun.stdout
    grid = run_cli("grid", str(out), "--out", str(tmp_path / "g.png"), "--n", "9")
    assert grid.returncode == 0 and "3x3 grid" in grid.stdout
    # A relative --samples path on a joined cluster: the Ray tasks run in the raylet's working directory, not ours.
    fid = run_cli("fid", "--samples", "out", "--report", "fid.json", env=shared_ray_env, cwd=tmp_path)
    assert fid.returncode == 0, fid.stderr
    report = json.loads(fid.stdout.strip().splitlines()[-1])
    assert report == json.loads((tmp_path / "fid.json").read_text())
    assert report["fid"] == pytest.approx(json.loads((out / "__seedshard__" / "fid.json").read_text())["fid"], rel=1e-9)
    (out / "shard-00000.parquet").unlink()  # fails inside a Ray task: its error, not Ray's traceback, in one line
    fid = run_cli("fid", "--samples", str(out), env=shared_ray_env)
    assert fid.returncode == 1 and fid.stderr.count("\n") == 1, fid.stderr
    assert fid.stderr.startswith("seedshard: error: FileNotFoundError: ") and "shard-00000.parquet" in fid.stderr


@pytest.mark.slow
def test_a_relative_output_on_a_joined_cluster_lands_in_the_drivers_working_directory(tmp_path, shared_ray_env):
    """The workers of a cluster joined through RAY_ADDRESS run in the raylet's working directory (here the tests'),
    so the driver hands them absolute paths: the shards and the in-job FID's reads happen under the driver's."""
    r = run_cli("generate", str(ROOT / "configs/demo.yaml"), "run.output=out/rel", "run.num_samples=20", "run.grid=0",
                "sampler.steps=2", "cluster.num_workers=1", env=shared_ray_env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "seedshard: FID " in r.stdout and "wrote 20 samples in 1 shard to out/rel" in r.stdout
    assert (tmp_path / "out/rel/shard-00000.parquet").is_file() and not (Path.cwd() / "out/rel").exists()
    assert main(["verify", str(tmp_path / "out/rel")]) == 0


@pytest.mark.slow
def test_relative_files_the_workers_open_resolve_in_the_drivers_working_directory(tmp_path, shared_ray_env):
    """Not only run.output: the conditioning table and the extractor weights are opened by the workers (the actors of
    generate, the tasks of fid --samples), which on a joined cluster run in the raylet's working directory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    weights = ROOT / "pipeline/models/weights/digits_classifier.safetensors"
    (tmp_path / "classifier.safetensors").write_bytes(weights.read_bytes())
    pq.write_table(pa.table({"label": [i % 7 for i in range(20)]}), tmp_path / "labels.parquet")
    config = tmp_path / "job.yaml"
    config.write_text(textwrap.dedent("""\
        run: {num_samples: 20, seed: 0, shard_size: 20, batch_size: 20, output: out/table}
        model: {factory: "pipeline.models.digits:build_demo", interface: flow, shape: [1, 8, 8]}
        conditioning: {table: labels.parquet, columns: {class_labels: label}}
        sampler: {name: heun, steps: 2}
        metrics: {fid: {extractor: digits, extractor_kwargs: {weights: classifier.safetensors}}}
    """))
    r = run_cli("generate", "job.yaml", env=shared_ray_env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert main(["verify", str(tmp_path / "out/table")]) == 0
    fid = run_cli("fid", "--samples", "out/table", "--extractor-kwargs", "{weights: classifier.safetensors}",
                  "--workers", "1", env=shared_ray_env, cwd=tmp_path)
    assert fid.returncode == 0, fid.stderr


def test_ref_stats_command(tmp_path, shared_ray_env):
    np.save(tmp_path / "x.npy", np.zeros((4, 1, 8, 8), np.float32) + np.arange(4, dtype=np.float32)[:, None, None, None] / 4)
    r = run_cli("ref-stats", str(tmp_path / "x.npy"), "--out", str(tmp_path / "ref.npz"), "--workers", "1", env=shared_ray_env)
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "ref.npz") as z:
        assert z["mu"].shape == (64,) and z["sigma"].shape == (64, 64)


@pytest.mark.parametrize(
    "argv,code,message",
    [
        (["generate", "configs/demo.yaml", "run.num_samples=0"], 2, "run.num_samples: "),
        (["generate", "configs/demo.yaml", "sampler.name=rk4"], 2, "sampler.name: "),
        (["generate", "no/such.yaml"], 2, "no/such.yaml"),
        (["fid", "configs/demo.yaml", "metrics.fid=null"], 2, "metrics.fid: required by `seedshard fid`"),
        (["fid"], 2, "give a job CONFIG, or --samples URL"),
        (["inspect", "/nonexistent/output"], 1, "no manifest.json"),
    ],
)
def test_errors_are_one_line_with_exit_status(capsys, argv, code, message):
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert any(message in line for line in err), err
    assert all(line.startswith("seedshard: error: ") for line in err) and "Traceback" not in "".join(err)


def test_rays_own_multi_line_errors_are_one_line(capsys, monkeypatch):
    """An error of Ray itself without a task's exception inside (a worker killed for memory) keeps its first line."""
    import ray.exceptions

    def oom(args):
        raise ray.exceptions.OutOfMemoryError("Task was killed due to the node running low on memory.\n"
                                              "Memory on the node (IP: 10.0.0.1) was 7.2GB / 7.6GB (0.95).\n\nRefer to ...")

    monkeypatch.setattr("pipeline.cli._inspect", oom)
    assert main(["inspect", "anywhere"]) == 1
    err = capsys.readouterr().err
    assert err == ("seedshard: error: OutOfMemoryError: Task was killed due to the node running low on memory. "
                   "(--debug shows Ray's whole message)\n")


@pytest.mark.parametrize(
    "argv,message",
    [
        (["grid", "{out}", "--out", "{png}", "--n", "0"], "--n: must be a positive integer (got 0)"),
        (["grid", "{out}", "--out", "{png}", "--n", "-3"], "--n: must be a positive integer (got -3)"),
        (["grid", "{out}", "--out", "{png}", "--nrow", "0"], "--nrow: must be a positive integer (got 0)"),
        (["fid", "--samples", "{out}", "--workers", "0"], "--workers: must be a positive integer (got 0)"),
        (["ref-stats", "{out}", "--out", "{png}", "--workers", "-1"], "--workers: must be a positive integer (got -1)"),
        (["fid", "--samples", "{out}", "--extractor-kwargs", "[1"], "--extractor-kwargs: must be a mapping"),
        (["ref-stats", "{out}", "--out", "{png}", "--extractor-kwargs", "a: [1"], "--extractor-kwargs: must be a mapping"),
        (["fid", "--samples", "{out}", "--ref", "{png}"], "--ref '{png}': [Errno 2] No such file or directory"),
        (["fid", "--samples", "{out}", "--extractor", "inception"], "--ref: metrics.fid.ref is required for extractor"),
        (["fid", "--samples", "{out}", "--report", "{out}/"], "--report: a file to write the JSON report to, not a folder"),
    ],
)
def test_bad_command_options_are_one_line_exit_2_before_anything_runs(tmp_path, capsys, argv, message):
    """Counts of samples and workers, --extractor-kwargs, --ref and --report are checked before any output is opened
    or Ray starts (a zero --n was 'division by zero', exit 1; a bad --extractor-kwargs a multi-line YAML error after
    Ray started; a missing --ref a bare '[Errno 2]' after featurising every sample)."""
    out = tmp_path / "absent"
    argv = [a.format(out=out, png=tmp_path / "g.png") for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    message = message.format(png=tmp_path / "g.png")
    assert len(err) == 1 and err[0].startswith("seedshard: error: ") and message in err[0], err
    assert list(tmp_path.iterdir()) == []  # grid no longer creates the folder it reads


def test_help_and_inspect_import_neither_torch_nor_ray(tmp_path):
    """`seedshard --help` and `inspect` start fast: importing the CLI, printing help and inspecting an output
    load neither torch nor ray (checked in a fresh process)."""
    from pipeline.output.fs import open_output
    from pipeline.output.manifest import Manifest, write_manifest

    config = {"run": {"seed": 0, "labels": "none"}, "sampler": {"guidance_scale": 1.0}}
    write_manifest(*open_output(str(tmp_path)), Manifest(status="complete", config=config, sampler_state={"name": "euler"},
                   model={}, schema={}, noise_scheme="x", num_samples=0))
    code = textwrap.dedent(f"""
        import contextlib, io, sys
        import pipeline.cli
        loaded = [sorted({{'torch', 'ray'}} & {{m.split('.')[0] for m in sys.modules}})]
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                pipeline.cli.main(['--help'])
            except SystemExit:
                pass
            loaded.append(sorted({{'torch', 'ray'}} & {{m.split('.')[0] for m in sys.modules}}))
            assert pipeline.cli.main(['inspect', {str(tmp_path)!r}]) == 0
        loaded.append(sorted({{'torch', 'ray'}} & {{m.split('.')[0] for m in sys.modules}}))
        print(loaded)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[[], [], []]", out.stdout + out.stderr


def test_verify_of_a_real_output_imports_neither_torch_nor_ray(tmp_path):
    """`seedshard verify` checks a whole output (config, sampler state, every shard) without loading torch or ray."""
    from tests.pipeline.jobs import gaussian_job, write_output_in_process

    cfg = gaussian_job(str(tmp_path / "out"), sampler={"steps": 2})
    write_output_in_process(cfg)
    code = textwrap.dedent(f"""
        import sys
        import pipeline.cli
        code = pipeline.cli.main(['verify', {cfg.run.output!r}])
        print(code, sorted({{'torch', 'ray'}} & {{m.split('.')[0] for m in sys.modules}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "0 []", out.stdout + out.stderr


def test_global_options_are_accepted_after_the_command_and_usage_errors_exit_2_with_debug(capsys):
    assert main(["generate", "configs/demo.yaml", "run.num_samples=0", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "run.num_samples: " in err
    assert main(["--debug", "inspect", "/nonexistent/output"]) == 1  # before the command too
    assert "Traceback" in capsys.readouterr().err


def test_a_bare_generate_asks_only_for_the_config(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["generate"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "required: config" in err and "overrides" not in err.splitlines()[-1]


def _actions(p):
    for action in p._actions:
        if action.choices and hasattr(action, "_name_parser_map"):
            for sub in action._name_parser_map.values():
                yield from _actions(sub)
        else:
            yield p.prog, action


def test_every_argument_has_help_text():
    from pipeline.cli import parser

    missing = [(prog, action.dest) for prog, action in _actions(parser()) if not action.help]
    assert missing == []


def test_generate_help_lists_the_sections_and_points_to_seedshard_config(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    out = capsys.readouterr().out
    assert all(f"\n  {section} " in out for section in ("run", "model", "sampler", "cluster", "metrics")), out
    assert "`seedshard config`" in out


def test_config_prints_every_field_with_its_default(capsys):
    from pipeline.config import JobConfig

    assert main(["config"]) == 0
    out = capsys.readouterr().out
    for section, info in JobConfig.model_fields.items():
        assert f"{section}:  # " in out
        for name in info.annotation.model_fields if isinstance(info.annotation, type) else ():
            assert f"\n  {name}: " in out, (section, name)
    assert "\n  max_in_flight: 2  # int (>= 1)" in out and "\n  num_samples: (required)  # int (> 0)" in out
    assert "\n  name: (required)  # one of " in out and "heun" in out
    assert "\n  autocast: null  # one of bf16, fp16, or null\n" in out and "Annotated" not in out  # an optional choice
    assert "\n  decoder: null  # optional: " in out and "\nconditioning:  # optional: " in out  # optional sections
    assert all(re.match(r"^ *\w+: .*# ", line) for line in out.splitlines())  # one line per field or section


def test_a_reader_that_closes_the_pipe_early_ends_the_command_quietly():
    """`seedshard config | head -3`: the reader is gone before the output comes; no traceback, no error line."""
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "config"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 1 and err == b"", err
