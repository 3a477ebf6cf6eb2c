"""The `seedshard` command: generate, fid, ref-stats, inspect, verify, grid, export (the same code path as `jobs/`).

User errors print one line `seedshard: error: ...` and exit 2 (bad usage or config) or 1
(runtime: storage, model, cluster, a failed job); `--debug` shows the traceback instead.
Each command imports what it needs when it runs, so `--help` and `inspect` load neither torch nor ray.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence

EXIT_RUNTIME, EXIT_USAGE = 1, 2


def _count(n: int, noun: str) -> str:
    """'1 shard', '4 shards'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _generate(args: argparse.Namespace) -> int:
    from .config import load_config
    from .run.summary import run_job_with_summary

    cfg = load_config(args.config, args.overrides)
    manifest, summary = run_job_with_summary(cfg)
    print(f"seedshard: wrote {manifest.num_samples} samples in {_count(len(manifest.shards), 'shard')} to {cfg.run.output}")
    if cfg.run.grid and manifest.shards:
        from .output.layout import side_path

        print(f"seedshard: grid of the first {cfg.run.grid} samples: {side_path(cfg.run.output, 'grid.png', manifest.format_version)}")
    print(summary.line())
    return 0


def _config(args: argparse.Namespace) -> int:
    """Print the job config schema: every section and field with its type and default."""
    from .config.describe import describe_schema

    print(describe_schema())
    return 0


def _fid(args: argparse.Namespace) -> int:
    """FID of a new job (CONFIG with metrics.fid) or of an existing sample set (--samples URL)."""
    from .config import ClusterConfig, ConfigError, load_config

    if args.report and (args.report.endswith("/") or os.path.isdir(args.report)):
        raise ConfigError(f"--report: a file to write the JSON report to, not a folder (got {args.report!r})")
    if args.samples is None:
        if args.config is None:
            raise ConfigError("seedshard fid: give a job CONFIG, or --samples URL with --ref")
        cfg = load_config(args.config, args.overrides)
        if cfg.metrics.fid is None:
            raise ConfigError("metrics.fid: required by `seedshard fid` (e.g. metrics: {fid: {extractor: inception, "
                              "extractor_kwargs: {weights: ...}, ref: ref.npz}})")
        from .run.summary import run_job_with_summary

        manifest, summary = run_job_with_summary(cfg)
        report = manifest.metrics["fid"]
        print(summary.line(), file=sys.stderr)
    else:
        if args.config is not None:
            raise ConfigError("seedshard fid: give either a job CONFIG or --samples URL, not both")
        from .run.cluster import ray_session
        from .fid.job import dataset_stats
        from .fid.reference import fid_report, load_reference, reference_url
        from .redact import redact_url

        kwargs = _kwargs(args.extractor_kwargs)
        try:  # before Ray starts: a missing or malformed reference fails now, not after featurising every sample
            load_reference(reference_url(args.extractor, args.ref))
        except (OSError, ValueError) as e:
            raise ConfigError(f"--ref {redact_url(str(args.ref))!r}: {e}" if args.ref else f"--ref: {e}") from None
        with ray_session(ClusterConfig(address=args.address, num_workers=_positive(args.workers, "--workers"))):
            stats = dataset_stats(args.samples, args.extractor, kwargs, args.workers)
        report = fid_report(stats, args.extractor, args.ref)
    print(json.dumps(report, sort_keys=True), flush=True)  # first: a report that cannot be written loses nothing
    if args.report:
        import fsspec

        with fsspec.open(args.report, "w") as f:
            json.dump(report, f, indent=2, sort_keys=True)
    return 0


def _ref_stats(args: argparse.Namespace) -> int:
    """Reference statistics (mu, sigma .npz) of a dataset, featurised in parallel over Ray."""
    from .run.cluster import ray_session
    from .config import ClusterConfig
    from .fid.job import dataset_stats

    kwargs = _kwargs(args.extractor_kwargs)
    with ray_session(ClusterConfig(address=args.address, num_workers=_positive(args.workers, "--workers"))):
        stats = dataset_stats(args.source, args.extractor, kwargs, args.workers)
    stats.save_npz(args.out)
    print(f"seedshard: wrote reference statistics of {stats.n} images ({args.extractor}, {stats.dim}-d) to {args.out}")
    return 0


def _kwargs(text: str | None) -> dict:
    """--extractor-kwargs as a YAML mapping, e.g. '{weights: pt_inception.pth}'."""
    import yaml

    from .config import ConfigError

    try:
        value = yaml.safe_load(text) if text else {}
    except yaml.YAMLError:
        value = None
    if not isinstance(value, dict):
        raise ConfigError(f"--extractor-kwargs: must be a mapping like '{{weights: file.pth}}' (got {text!r})")
    return value


def _positive(value: int, option: str) -> int:
    """``value`` of a count option such as --workers; ConfigError unless it is >= 1."""
    from .config import ConfigError

    if value < 1:
        raise ConfigError(f"{option}: must be a positive integer (got {value})")
    return value


def _inspect(args: argparse.Namespace) -> int:
    from .output.fs import open_output
    from .output.manifest import manifest_json, read_manifest

    fs, root = open_output(args.url, _storage_options(args), create=False)
    m = read_manifest(fs, root)
    if m is None:
        raise FileNotFoundError(f"{args.url}: no manifest.json (not a seedshard output)")
    if args.json:
        print(manifest_json(m))
        return 0
    rows = sum(s.rows for s in m.shards)
    size = sum(s.bytes for s in m.shards)
    print(f"output     {args.url}")
    print(f"status     {m.status}" + (f" ({m.error})" if m.error else ""))
    print(f"samples    {rows}/{m.num_samples} in {_count(len(m.shards), 'shard')}, {size / 1e6:.2f} MB")
    print(f"schema     {json.dumps(m.schema_)}")
    print(f"sampler    {json.dumps(m.sampler_state)}")
    print(f"model      {m.model.get('factory')} sha256={str(m.model.get('sha256'))[:16]}...")
    table_labels = ((m.config.get("conditioning") or {}).get("columns") or {}).get("class_labels")
    labels = f"from conditioning.table column {table_labels!r}" if table_labels else m.config['run']['labels']
    print(f"seed       {m.config['run']['seed']}, labels {labels}, "
          f"guidance_scale {m.config['sampler']['guidance_scale']}")
    fingerprint = getattr(m, "fingerprint", None)  # recorded by newer versions
    if fingerprint:
        print(f"fingerprint {fingerprint}")
    fid = m.metrics.get("fid")
    if fid:
        print(f"fid        {fid['fid']:.4f} ({fid.get('extractor')} features, {fid.get('num_samples', '?')} samples "
              f"vs {fid.get('reference')})")
    print(f"timings    created {m.created}, updated {m.updated}{_elapsed(m.created, m.updated)}")
    return 0


def _elapsed(start: str, end: str) -> str:
    """', 12 s apart' for two ISO timestamps ('' when they do not parse)."""
    import datetime

    try:
        seconds = (datetime.datetime.fromisoformat(end) - datetime.datetime.fromisoformat(start)).total_seconds()
    except (TypeError, ValueError):
        return ""
    return f" ({seconds:.0f} s apart)"


def _verify(args: argparse.Namespace) -> int:
    """Check every shard of an output against its manifest; problems one per line, exit 1 if any."""
    from .output.verify import summary, verify_output

    options = _storage_options(args)
    problems = verify_output(args.url, options)
    for problem in problems:
        print(problem)
    if problems:
        print(f"seedshard: {len(problems)} problem(s) in {args.url}", file=sys.stderr)
        return EXIT_RUNTIME
    print(f"seedshard: {summary(args.url, options)}")
    return 0


def _storage_options(args: argparse.Namespace) -> dict:
    """--storage-options as a YAML mapping (fsspec options; credentials better come from the environment)."""
    import yaml

    from .config import ConfigError

    try:
        options = yaml.safe_load(args.storage_options) if args.storage_options else {}
    except yaml.YAMLError:
        options = None
    if not isinstance(options, dict):
        raise ConfigError("--storage-options: must be a mapping like '{endpoint_url: http://host:9000}'")
    return options


def _grid(args: argparse.Namespace) -> int:
    from .grid import save_grid

    nrow = None if args.nrow is None else _positive(args.nrow, "--nrow")
    rows, cols = save_grid(args.url, args.out, n=_positive(args.n, "--n"), nrow=nrow)
    print(f"seedshard: wrote a {rows}x{cols} grid to {args.out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    """An output's samples as PNG files (EDM layout), a .zip of them, an ADM .npz or WebDataset tars."""
    from .export import export_output

    n = export_output(args.url, args.to, args.dest, storage_options=_storage_options(args), progress=not args.no_progress)
    print(f"seedshard: exported {n} samples of {args.url} as {args.to} to {args.dest}")
    return 0


_GENERATE_HELP = """\
Run a sampling job. CONFIG is a YAML file with five sections and an optional sixth:
  run      what to generate and where: num_samples, seed, shard_size, batch_size, output (path or URL), format,
           dtype, labels, overwrite/resume, storage_options, progress, grid
  model    the network: factory (module:callable) + kwargs, checkpoint, interface, shape, num_classes, dtype,
           optional guide network
  sampler  the integrator: name, steps, time_dist, time_kwargs, guidance_scale, kwargs
  cluster  where: Ray address, num_workers, gpus_per_worker, cpus_per_worker, restarts, attempts,
           wait_for_workers_s
  metrics  FID while sampling (metrics.fid)
  conditioning  optional: per-sample conditions (class labels, embeddings, prompts) from a Parquet table
`seedshard config` prints every field with its type and default. A rerun on the same output resumes it."""

_URL_HELP = "a seedshard output: local path or fsspec URL (s3://bucket/run, gs://...)"
_STORAGE_HELP = "fsspec options as a YAML mapping, e.g. '{endpoint_url: http://host:9000}'"
_OVERRIDES_HELP = "key.path=value overrides of the config, value parsed as YAML (e.g. run.num_samples=5000)"


def parser() -> argparse.ArgumentParser:
    """The argument parser; global options (--debug) are accepted before or after the subcommand."""
    debug_help = "show tracebacks and info logs (exit statuses stay the same)"
    common = argparse.ArgumentParser(add_help=False)  # after the command; SUPPRESS keeps a --debug given before it
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    p = argparse.ArgumentParser(prog="seedshard", description="Reproducible, Ray-distributed sampling of diffusion models.")
    p.add_argument("--debug", action="store_true", help=debug_help)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, func: Callable[[argparse.Namespace], int], **kwargs: object) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=kwargs.pop("description", help), parents=[common], **kwargs)
        c.set_defaults(func=func)
        return c

    g = command("generate", "run a job: CONFIG [key.path=value ...]", _generate, description=_GENERATE_HELP,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("config", help="the job's YAML file (see configs/demo.yaml; `seedshard config` lists every field)")
    g.add_argument("overrides", nargs="*", default=[], help=_OVERRIDES_HELP)
    f = command("fid", "FID of a job (CONFIG with metrics.fid) or of --samples URL against --ref", _fid)
    f.add_argument("config", nargs="?", help="a job's YAML file with metrics.fid (generates, then scores)")
    f.add_argument("overrides", nargs="*", default=[], help=_OVERRIDES_HELP)
    f.add_argument("--samples", help="an existing sample set (seedshard output, image dir/zip, array file)")
    f.add_argument("--ref", help="reference .npz with mu, sigma (default: the one shipped for the extractor)")
    f.add_argument("--report", help="also write the JSON report here (path or fsspec URL)")
    _dataset_args(f)
    s = command("ref-stats", "reference statistics (.npz: mu, sigma) of a dataset", _ref_stats)
    s.add_argument("source", help="image directory or .zip, .npy/.npz/.pt array file, or a seedshard output")
    s.add_argument("--out", required=True, help="the .npz to write (path or fsspec URL)")
    _dataset_args(s)
    i = command("inspect", "summarise an output's manifest: status, samples, fingerprint, FID, timings", _inspect)
    i.add_argument("url", help=_URL_HELP)
    i.add_argument("--json", action="store_true", help="print the whole manifest")
    i.add_argument("--storage-options", default=None, help=_STORAGE_HELP)
    v = command("verify", "check every shard of an output against its manifest (exit 1 on any problem)", _verify)
    v.add_argument("url", help=_URL_HELP)
    v.add_argument("--storage-options", default=None, help=_STORAGE_HELP)
    r = command("grid", "PNG grid of the first samples of an output", _grid)
    r.add_argument("url", help=_URL_HELP)
    r.add_argument("--out", required=True, help="the PNG file to write")
    r.add_argument("--n", type=int, default=100, help="how many samples (default: 100)")
    r.add_argument("--nrow", type=int, default=None, help="samples per row (default: about sqrt(n))")
    command("config", "print the job config schema: every section and field with its type and default", _config)
    x = command("export", "write a complete output's samples as PNGs, a .zip, an ADM .npz or WebDataset tars", _export)
    x.add_argument("url", help=_URL_HELP)
    x.add_argument("--to", required=True, choices=["png", "zip", "npz", "webdataset"],
                   help="png: DEST/000000/000000.png ...; zip: the same names in DEST.zip; npz: arr_0 uint8 NHWC "
                        "(+ arr_1 labels); webdataset: DEST/shard-00000.tar ...")
    x.add_argument("dest", help="local path to create: a directory (png, webdataset) or a file (zip, npz)")
    x.add_argument("--storage-options", default=None, help=_STORAGE_HELP)
    x.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _dataset_args(p: argparse.ArgumentParser) -> None:
    from .fid.extractors import EXTRACTORS  # the registry's names; builds nothing, imports no torch

    p.add_argument("--extractor", default="digits", choices=list(EXTRACTORS), help="feature extractor (default: digits)")
    p.add_argument("--extractor-kwargs", help="YAML mapping, e.g. '{weights: pt_inception-2015-12-05.pth}'")
    p.add_argument("--workers", type=int, default=2, help="parallel Ray tasks (default: 2)")
    p.add_argument("--address", default=None, help="Ray cluster to join (default: a local one)")


def _exit_code(exc: BaseException) -> int:
    from .config import ConfigError

    return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_RUNTIME


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `seedshard` and `python -m jobs.*`; returns the exit status."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.debug else logging.WARNING, format="seedshard: %(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt as e:  # Ctrl-C, or a JobInterrupted (SIGTERM/SIGINT) carrying its exit code
        print(f"seedshard: {e or 'interrupted'}; finished shards are kept, rerun to resume", file=sys.stderr)
        return getattr(e, "exit_code", 130)
    except BrokenPipeError:  # stdout closed early (`seedshard inspect OUT | head -3`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the flush at exit would raise again
        return EXIT_RUNTIME
    except Exception as e:  # noqa: BLE001 - the one place user-facing errors become exit codes
        if args.debug:
            traceback.print_exc()
            return _exit_code(e)
        from .redact import scrub

        cause = getattr(e, "cause", None)  # a Ray task's own exception (RayTaskError carries it and its traceback)
        if isinstance(cause, Exception) and type(e).__module__.startswith("ray."):
            e = cause
            message = f"{type(cause).__name__}: {cause}"
        elif type(e).__module__.startswith("ray."):  # Ray's own (a worker crashed, a node ran out of memory): its gist
            message = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''} " \
                      "(--debug shows Ray's whole message)"
        else:
            message = str(e)
        lines = scrub(message).strip().splitlines() or [type(e).__name__]  # no secret of the environment, no URL's
        for line in lines:
            print(f"seedshard: error: {line}", file=sys.stderr)
        return _exit_code(e)


if __name__ == "__main__":
    sys.exit(main())
