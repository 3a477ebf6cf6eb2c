"""What a previous seedshard run owns in an output, and the files there that only look like shards.

`run.overwrite` removes only what a seedshard run wrote: the data files and sidecars named by its
manifest or by its sidecars, its temp files, and its side files (manifest, FID report, grid), in
either layout (format version 1: side files at the root; 2: in ``__seedshard__/``). Files seedshard
never wrote survive, even when their names start with `shard-`. An output without a manifest that
holds such foreign shard-like files is refused: readers would take them for shards.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
from typing import Any

from ..config import ConfigError
from ..fid.reference import REPORT_NAME
from ..grid import GRID_NAME
from ..output.fs import TEMP_PATTERN, is_local, list_names
from ..output.layout import FORMAT_VERSIONS, MANIFEST_NAME, SIDE_DIR, output_version, side_path, side_root
from ..output.manifest import ManifestError, read_manifest
from ..output.shards import load_sidecars, sidecar_name
from ..output.verify import stray_data_files
from ..redact import redact_url

SIDE_FILES = (MANIFEST_NAME, REPORT_NAME, GRID_NAME)


def owned_files(fs: Any, root: str) -> dict[str, str]:
    """{name under `root` (``__seedshard__/x`` for side files of format 2): path} of the files a seedshard run wrote."""
    try:
        manifest = read_manifest(fs, root)
    except ManifestError:  # a corrupt manifest names nothing; the sidecars still do
        manifest = None
    records = list(manifest.shards if manifest is not None else []) + list(load_sidecars(fs, root).values())
    data = {r.path for r in records}
    side = set(SIDE_FILES) | {sidecar_name(r.path) for r in records}
    at_root = data | (side if output_version(fs, root) == 1 else set())
    owned = {name: path for name, path in list_names(fs, root, "*").items()
             if name in at_root or fnmatch.fnmatchcase(name, TEMP_PATTERN)}
    owned.update({f"{SIDE_DIR}/{name}": path for name, path in list_names(fs, side_root(root, 2), "*").items()
                  if name in side or fnmatch.fnmatchcase(name, TEMP_PATTERN)})
    return owned


def refuse_foreign_shards(fs: Any, root: str, url: str) -> None:
    """ConfigError naming them when an output without a manifest holds shard-like files no seedshard run wrote."""
    if any(fs.exists(side_path(root, MANIFEST_NAME, version)) for version in FORMAT_VERSIONS):
        return
    owned = owned_files(fs, root)
    foreign = [name for name in list_names(fs, root, "*") if name.lower().startswith("shard-") and name not in owned]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ConfigError(f"run.output={redact_url(url)!r} holds files that look like shards but no seedshard "
                          f"manifest: {shown}; choose an empty folder or move them away")


def refuse_nested_output(fs: Any, root: str, url: str) -> None:
    """ConfigError when ``root`` lies inside another seedshard output: that output's readers (pyarrow, pandas, HF
    datasets) descend into folders and would take this one's shards for its own samples."""
    # locally 'out/sub/..' is 'out', and a symlink into another output is read through its target
    starts = [posixpath.normpath(root), os.path.realpath(root)] if is_local(fs) else [root.rstrip("/")]
    for path in starts:
        while (parent := posixpath.dirname(path)) not in ("", path):
            path = parent
            if any(fs.exists(side_path(path, MANIFEST_NAME, version)) for version in FORMAT_VERSIONS):
                outer = fs.unstrip_protocol(path) if "://" in url else path
                raise ConfigError(f"run.output={redact_url(url)!r} lies inside the seedshard output "
                                  f"{redact_url(outer)}, whose readers would take its shards for their own; choose a "
                                  "folder outside it")


def refuse_data_in_subfolders(fs: Any, root: str, url: str) -> None:
    """ConfigError when a subfolder of ``root`` holds data files (an output written inside it, copied shards):
    readers of this output descend into folders and would take them for its samples."""
    if found := stray_data_files(fs, root, set(), subfolders_only=True):
        shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise ConfigError(f"run.output={redact_url(url)!r} has data files in subfolders ({shown}), which readers of "
                          "the output would take for its samples; choose another folder or move them away")


def remove_owned(fs: Any, root: str) -> list[str]:
    """Remove every file a previous seedshard run wrote under `root` (not the lease); returns their names."""
    owned = owned_files(fs, root)
    for path in owned.values():
        fs.rm_file(path)
    return list(owned)
