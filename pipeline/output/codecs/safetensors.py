"""safetensors shards: tensors ``index`` (int64), ``sample``, ``label`` (int64, only when labelled) and ``latent``
(float32 pre-decode latents, only with run.store_latents);
the shard's str metadata in the header's ``__metadata__``, sorted, so the bytes are deterministic."""

from __future__ import annotations

import json
import struct

import numpy as np
import safetensors.numpy

from .base import LATENT, Codec, ShardData


def encode(indices: np.ndarray, labels: np.ndarray | None, samples: np.ndarray, meta: dict[str, str],
           latents: np.ndarray | None = None) -> bytes:
    """One safetensors file holding the shard."""
    tensors = {"index": indices, "sample": samples}
    if labels is not None:
        tensors["label"] = labels
    if latents is not None:
        tensors[LATENT] = latents
    # safetensors serializes __metadata__ from a Rust HashMap, whose order changes from one
    # process to the next; save without it and write the header's metadata sorted ourselves.
    raw = safetensors.numpy.save(tensors)
    (n,) = struct.unpack("<Q", raw[:8])
    header = {"__metadata__": meta, **json.loads(raw[8 : 8 + n])}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + raw[8 + n :]


def decode(data: bytes) -> ShardData:
    """Inverse of ``encode``; ValueError when the bytes are not a safetensors shard."""
    try:
        tensors = safetensors.numpy.load(data)
        (n,) = struct.unpack("<Q", data[:8])
        meta = json.loads(data[8 : 8 + n]).get("__metadata__") or {}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise ValueError(f"not a readable safetensors file: {e}") from e
    if not {"index", "sample"} <= set(tensors) <= {"index", "label", "sample", LATENT}:
        raise ValueError(f"safetensors tensors are {sorted(tensors)}, expected index, sample[, label][, {LATENT}]")
    for name in ("index", "label"):
        if name in tensors and tensors[name].dtype != np.int64:
            raise ValueError(f"{name} must be int64, got {tensors[name].dtype}")
    return ShardData(tensors["index"], tensors.get("label"), tensors["sample"], meta, tensors.get(LATENT))


SAFETENSORS = Codec("safetensors", "safetensors", encode, decode)
