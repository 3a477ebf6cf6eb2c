"""File-system access for outputs on any fsspec URL: resolving a URL, atomic writes, listing.

Writes are atomic. On a local disk the bytes go to ``.{name}.tmp-{uuid}`` in the same
directory (data shards of a format-2 output: in its ``__seedshard__/`` folder) and are renamed
onto the final name (``os.replace``). On object stores (s3://, gs://, memory://, ...) each
file is one ``pipe`` (a single PUT or a multipart upload, both of which appear all at once).
No partial file ever has a final name; temp files of a crashed writer may remain until
``cleanup_temp``.

Storage calls time out: on S3 (s3fs) a connection must open within ``connect_timeout`` seconds
and an answer arrive within ``read_timeout`` (``S3_TIMEOUTS``, overridable through
``storage_options.config_kwargs``), with ``S3_RETRIES`` tries, so an endpoint that accepts
connections and never answers fails in well under a minute, saying so.
"""

from __future__ import annotations

import fnmatch
import os
import uuid
from typing import Any

import fsspec

from ..redact import redact_url, scrub
from .layout import SIDE_DIR

TEMP_PATTERN = ".*.tmp-*"
S3_TIMEOUTS = {"connect_timeout": 10, "read_timeout": 10, "retries": {"max_attempts": 1}}  # s3fs retries
S3_RETRIES = 2  # tries of s3fs's own retry loop (with backoff) around botocore


class StorageError(ValueError):
    """A storage URL that cannot be used; the message names the URL, never credentials."""


def open_output(url: str, storage_options: dict | None = None, create: bool = True) -> tuple[fsspec.AbstractFileSystem, str]:
    """Resolve ``url`` to ``(fs, root)`` and check it can be written.

    Local directories are created (``create=False``: only checked, nothing is written); for
    bucket stores (s3://, gs://) the bucket must exist. Raises StorageError for an unknown
    protocol, a missing driver package, an unwritable local directory or a missing bucket.
    """
    options = storage_options or {}
    fs, root = resolve_url(url, options)
    if is_local(fs):
        if not create:
            _check_local_dir(url, root)
            return fs, root
        try:
            os.makedirs(root, exist_ok=True)
        except OSError as e:
            raise StorageError(_error_message(url, e, options)) from None
        if not os.access(root, os.W_OK | os.X_OK):
            raise StorageError(f"{redact_url(url)}: directory {root} is not writable")
    elif hasattr(fs, "split_path"):  # s3fs, gcsfs, adlfs: bucket/key paths
        bucket = root.split("/", 1)[0]
        try:
            found = _s3_bucket_exists(fs, bucket) if _is_s3(fs) else fs.exists(bucket)
        except Exception as e:  # noqa: BLE001 - any backend error becomes one clean line
            raise StorageError(_error_message(url, e, options)) from None
        if not found:
            raise StorageError(f"{redact_url(url)}: bucket {bucket!r} does not exist or is not accessible")
    return fs, root


def _is_s3(fs: fsspec.AbstractFileSystem) -> bool:
    return bool({"s3", "s3a"} & set(protocols(fs)))


def _s3_bucket_exists(fs: fsspec.AbstractFileSystem, bucket: str) -> bool:
    """HEAD the bucket: False for 404, True for an answer; raises a timeout or connection error (which
    ``fs.exists`` would swallow into False, reporting an unanswered endpoint as a missing bucket)."""
    try:
        fs.call_s3("head_bucket", Bucket=bucket)
    except FileNotFoundError:
        return False
    except PermissionError:
        return True  # a bucket we may not HEAD but may write into
    return True


def _check_local_dir(url: str, root: str) -> None:
    """StorageError unless ``root`` is, or could be created as, a writable directory."""
    path = root
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    if not os.path.isdir(path):
        raise StorageError(f"{redact_url(url)}: {path} is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise StorageError(f"{redact_url(url)}: directory {path} is not writable")


def resolve_url(url: str, storage_options: dict | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """``(fs, root)`` for ``url`` without touching storage; StorageError for an unknown protocol."""
    options = storage_options or {}
    if fsspec.core.split_protocol(url)[0] in ("s3", "s3a"):  # timeouts unless the options set them
        options = {**options, "config_kwargs": {**S3_TIMEOUTS, **options.get("config_kwargs", {})}}
    try:
        fs, root = fsspec.core.url_to_fs(url, **options)
    except Exception as e:  # noqa: BLE001 - unknown protocol, missing package, bad options, ...
        raise StorageError(_error_message(url, e, storage_options or {})) from None
    if _is_s3(fs):
        fs.retries = min(fs.retries, S3_RETRIES)
    return fs, root.rstrip("/") or "/"


def absolute_local(url: str) -> str:
    """A local path made absolute in this process's working directory (URLs with a protocol are unchanged).
    For what the driver hands to Ray workers: on a cluster it joined (RAY_ADDRESS, cluster.address), their
    working directory is the raylet's, not the driver's."""
    return url if "://" in url else os.path.abspath(os.path.expanduser(url))


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """True for fsspec's local file system (where rename is atomic)."""
    return "file" in protocols(fs)


def protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    """The protocol names of ``fs`` ('file', 'memory', 's3', ...)."""
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


def _error_message(url: str, exc: BaseException, options: Any) -> str:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return scrub(f"{redact_url(url)}: {reason}", options, [url])


def join_path(root: str, name: str) -> str:
    """``root/name`` for fsspec paths (no os.path: object-store keys use '/')."""
    return f"{root.rstrip('/')}/{name}"


def put_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes, temp_dir: str | None = None) -> None:
    """Write ``data`` to ``path`` so that readers see all of it or nothing; locally the temp file goes to
    ``temp_dir`` (same file system; default: beside ``path``), and missing folders are created."""
    if not is_local(fs):
        fs.pipe_file(path, data)  # one PUT (or multipart upload): appears atomically
        return
    directory, name = os.path.split(path)
    tmp = os.path.join(temp_dir or directory, f".{name}.tmp-{uuid.uuid4().hex}")
    os.makedirs(os.path.dirname(tmp), exist_ok=True)
    os.makedirs(directory, exist_ok=True)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def list_names(fs: fsspec.AbstractFileSystem, root: str, pattern: str) -> dict[str, str]:
    """{file name: path} of the files directly under ``root`` whose names match ``pattern``."""
    fs.invalidate_cache(root)  # other processes (actors) write here
    try:
        paths = fs.ls(root, detail=False)
    except FileNotFoundError:
        return {}
    names = {path.rstrip("/").rsplit("/", 1)[-1]: path for path in paths}
    return {name: names[name] for name in sorted(names) if fnmatch.fnmatchcase(name, pattern)}


def list_temp(fs: fsspec.AbstractFileSystem, root: str) -> dict[str, str]:
    """{name: path} of the temp files (``.*.tmp-*``) under ``root`` and its side folder (both layouts)."""
    side = {f"{SIDE_DIR}/{name}": path for name, path in list_names(fs, join_path(root, SIDE_DIR), TEMP_PATTERN).items()}
    return {**list_names(fs, root, TEMP_PATTERN), **side}


def cleanup_temp(fs: fsspec.AbstractFileSystem, root: str) -> list[str]:
    """Remove temp files (``.*.tmp-*``) left by crashed writers; returns their names.

    Call it only while no writer is active on ``root`` (e.g. when a job starts).
    """
    temps = list_temp(fs, root)
    for path in temps.values():
        fs.rm_file(path)
    return list(temps)
