"""Where the files of an output go: the folder is a dataset.

Format version 2 (new outputs)::

    shard-00000.parquet           data shards at the root, nothing else
    __seedshard__/manifest.json   everything else seedshard owns: manifest, sidecars (shard-00000.json),
    __seedshard__/...             FID report, grid, lease, temp files of unfinished writes

Every reader skips ``__seedshard__/``: pyarrow, pandas and DuckDB skip names starting with ``_`` or
``.``, and HF ``datasets`` skips ``.x`` and ``__x__`` folders (not ``_x``), so
``pyarrow.dataset.dataset(OUT)``, ``pandas.read_parquet(OUT)`` and
``datasets.load_dataset("parquet", data_dir=OUT)`` see exactly the samples.

Format version 1 (older outputs): side files beside the shards at the root, temp files too. Such
outputs are still read, verified and resumed, and a resumed job keeps their layout; the manifest's
place and ``format_version`` say which layout an output has (``output_version``).
"""

from __future__ import annotations

import fnmatch

import fsspec

SIDE_DIR = "__seedshard__"
FORMAT_VERSION = 2  # what new outputs are written as
FORMAT_VERSIONS = (1, 2)  # what this seedshard reads
VERSION_KEY = "seedshard.format_version"  # every shard's metadata holds its format version
MANIFEST_NAME = "manifest.json"


def side_root(root: str, version: int = FORMAT_VERSION) -> str:
    """The folder that holds the side files of an output at ``root`` written as ``version``."""
    if version not in FORMAT_VERSIONS:
        raise ValueError(f"format_version {version!r}; this seedshard reads {FORMAT_VERSIONS}")
    return f"{root.rstrip('/')}/{SIDE_DIR}" if version >= 2 else root


def side_path(root: str, name: str, version: int = FORMAT_VERSION) -> str:
    """Where side file ``name`` (manifest, sidecar, report, grid, lease) of an output ``version`` goes."""
    return f"{side_root(root, version).rstrip('/')}/{name}"


def output_version(fs: fsspec.AbstractFileSystem, root: str) -> int:
    """The layout of the output at ``root``: 2 when ``__seedshard__/manifest.json`` exists, 1 when
    ``manifest.json`` (or, without a manifest, a sidecar) lies at the root, else FORMAT_VERSION."""
    fs.invalidate_cache(root)  # other processes write here
    if fs.exists(side_path(root, MANIFEST_NAME, 2)):
        return 2
    if fs.exists(side_path(root, MANIFEST_NAME, 1)):
        return 1
    try:
        names = [path.rstrip("/").rsplit("/", 1)[-1] for path in fs.ls(root, detail=False)]
    except FileNotFoundError:
        return FORMAT_VERSION
    return 1 if any(fnmatch.fnmatchcase(name, "shard-*.json") for name in names) else FORMAT_VERSION


def side_file(fs: fsspec.AbstractFileSystem, root: str, name: str) -> str:
    """Where side file ``name`` of the output at ``root`` goes, in the layout that output has."""
    return side_path(root, name, output_version(fs, root))


def job_version(fs: fsspec.AbstractFileSystem, root: str, overwrite: bool) -> int:
    """The format version a job writes at ``root``: the existing output's when it resumes one (it keeps
    its layout), FORMAT_VERSION for a new output or with ``overwrite``."""
    return FORMAT_VERSION if overwrite else output_version(fs, root)
