"""What a previous seedshard run owns in an output, and the files there that only look like shards.

`run.overwrite` removes only what a seedshard run wrote: the data files and sidecars named by its
manifest or by its sidecars, its temp files, and its side files (manifest, FID report, grid). Files
seedshard never wrote survive, even when their names start with `shard-`. An output without a
manifest that holds such foreign shard-like files is refused: readers would take them for shards.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from ..config import ConfigError
from ..fid.reference import REPORT_NAME
from ..grid import GRID_NAME
from ..output.fs import TEMP_PATTERN, join_path, list_names
from ..output.manifest import MANIFEST_NAME, ManifestError, read_manifest
from ..output.shards import load_sidecars, sidecar_name
from ..redact import redact_url

SIDE_FILES = (MANIFEST_NAME, REPORT_NAME, GRID_NAME)


def owned_files(fs: Any, root: str) -> dict[str, str]:
    """{name: path} of the files directly under `root` that a seedshard run wrote."""
    try:
        manifest = read_manifest(fs, root)
    except ManifestError:  # a corrupt manifest names nothing; the sidecars still do
        manifest = None
    records = list(manifest.shards if manifest is not None else []) + list(load_sidecars(fs, root).values())
    owned = set(SIDE_FILES) | {name for r in records for name in (r.path, sidecar_name(r.path))}
    return {name: path for name, path in list_names(fs, root, "*").items()
            if name in owned or fnmatch.fnmatchcase(name, TEMP_PATTERN)}


def refuse_foreign_shards(fs: Any, root: str, url: str) -> None:
    """ConfigError naming them when an output without a manifest holds shard-like files no seedshard run wrote."""
    if fs.exists(join_path(root, MANIFEST_NAME)):
        return
    owned = owned_files(fs, root)
    foreign = [name for name in list_names(fs, root, "*") if name.lower().startswith("shard-") and name not in owned]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ConfigError(f"run.output={redact_url(url)!r} holds files that look like shards but no seedshard "
                          f"manifest: {shown}; choose an empty folder or move them away")


def remove_owned(fs: Any, root: str) -> list[str]:
    """Remove every file a previous seedshard run wrote under `root` (not the lease); returns their names."""
    owned = owned_files(fs, root)
    for path in owned.values():
        fs.rm_file(path)
    return list(owned)
