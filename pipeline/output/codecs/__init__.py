"""Shard codecs by format name: ``parquet``, ``safetensors`` and ``webdataset``.

A new format is one module defining a ``Codec`` plus one line in ``CODECS``.
"""

from __future__ import annotations

from .base import COLUMNS, LATENT, Codec, ShardData
from .parquet import PARQUET
from .safetensors import SAFETENSORS
from .webdataset import WEBDATASET

__all__ = ["CODECS", "COLUMNS", "LATENT", "Codec", "FORMATS", "ShardData", "codec", "format_of"]

CODECS: dict[str, Codec] = {c.name: c for c in (PARQUET, SAFETENSORS, WEBDATASET)}
FORMATS: dict[str, str] = {name: c.ext for name, c in CODECS.items()}  # format -> file extension


def codec(fmt: str) -> Codec:
    """The codec of format ``fmt``; ValueError naming the allowed formats."""
    if fmt not in CODECS:
        raise ValueError(f"unknown shard format {fmt!r}; allowed: {', '.join(CODECS)}")
    return CODECS[fmt]


def format_of(name: str) -> str:
    """The shard format of a data file name, from its extension."""
    ext = name.rsplit(".", 1)[-1]
    for fmt, c in CODECS.items():
        if c.ext == ext:
            return fmt
    raise ValueError(f"{name!r} is not a shard file (extensions: {', '.join(FORMATS.values())})")
