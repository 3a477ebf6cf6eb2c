"""The `seedshard` command: generate, inspect, grid (and the same code path as `jobs/`).

User errors print one line `seedshard: error: ...` and exit 2 (bad usage or config) or 1
(runtime: storage, model, cluster, a failed job); `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

EXIT_RUNTIME, EXIT_USAGE = 1, 2


def _generate(args: argparse.Namespace) -> int:
    from .config import load_config
    from .driver import run_job

    cfg = load_config(args.config, args.overrides)
    manifest = run_job(cfg)
    print(f"seedshard: wrote {manifest.num_samples} samples in {len(manifest.shards)} shards to {cfg.run.output}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from .manifest import read_manifest
    from .storage import open_output

    fs, root = open_output(args.url)
    m = read_manifest(fs, root)
    if m is None:
        raise FileNotFoundError(f"{args.url}: no manifest.json (not a seedshard output)")
    if args.json:
        print(m.model_dump_json(indent=2))
        return 0
    rows = sum(s.rows for s in m.shards)
    size = sum(s.bytes for s in m.shards)
    print(f"output     {args.url}")
    print(f"status     {m.status}" + (f" ({m.error})" if m.error else ""))
    print(f"samples    {rows}/{m.num_samples} in {len(m.shards)} shards, {size / 1e6:.2f} MB")
    print(f"schema     {json.dumps(m.schema_)}")
    print(f"sampler    {json.dumps(m.sampler_state)}")
    print(f"model      {m.model.get('factory')} sha256={str(m.model.get('sha256'))[:16]}...")
    print(f"seed       {m.config['run']['seed']}, labels {m.config['run']['labels']}, "
          f"guidance_scale {m.config['sampler']['guidance_scale']}")
    print(f"updated    {m.updated}")
    return 0


def _grid(args: argparse.Namespace) -> int:
    from .grid import save_grid

    rows, cols = save_grid(args.url, args.out, n=args.n, nrow=args.nrow)
    print(f"seedshard: wrote a {rows}x{cols} grid to {args.out}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="seedshard", description="Reproducible, Ray-distributed sampling of diffusion models.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="run a job: CONFIG [key.path=value ...]")
    g.add_argument("config")
    g.add_argument("overrides", nargs="*", help="key.path=value (value parsed as YAML)")
    g.set_defaults(func=_generate)
    i = sub.add_parser("inspect", help="summarise an output's manifest")
    i.add_argument("url")
    i.add_argument("--json", action="store_true", help="print the whole manifest")
    i.set_defaults(func=_inspect)
    r = sub.add_parser("grid", help="PNG grid of the first samples")
    r.add_argument("url")
    r.add_argument("--out", required=True)
    r.add_argument("--n", type=int, default=100)
    r.add_argument("--nrow", type=int, default=None)
    r.set_defaults(func=_grid)
    return p


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
    except KeyboardInterrupt:
        print("seedshard: interrupted; finished shards are kept, rerun to resume", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the one place user-facing errors become exit codes
        if args.debug:
            raise
        lines = str(e).strip().splitlines() or [type(e).__name__]
        for line in lines:
            print(f"seedshard: error: {line}", file=sys.stderr)
        return _exit_code(e)


if __name__ == "__main__":
    sys.exit(main())
