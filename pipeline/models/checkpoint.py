"""Loading and saving state dicts from local paths or fsspec URLs.

Formats: safetensors (detected by content, not by name) or a torch file loaded with
`weights_only=True` (no arbitrary code runs). A torch file holding `{"state_dict": {...}}`
is unwrapped. With `max_bytes`, a file is read only up to that size, and a torch zip file
whose members unpack to more is refused before torch reads it (a small deflated file can hold
gigabytes).
"""

from __future__ import annotations

import io
import json
import struct
import zipfile

import torch
from torch import Tensor


_CHUNK = 64 * 2**20


class CheckpointTooLarge(ValueError):
    """A checkpoint file, or what it unpacks to, is larger than the cap."""


def _too_large(url: str, what: str, max_bytes: int) -> CheckpointTooLarge:
    return CheckpointTooLarge(f"{url}: {what}, more than model.max_checkpoint_bytes={max_bytes} allows")


def read_bytes(url: str, storage_options: dict | None = None, max_bytes: int | None = None) -> bytes:
    """All bytes of a local path or fsspec URL; CheckpointTooLarge past `max_bytes` (checked before reading
    when the size is known, and never reading more than max_bytes + 1)."""
    import fsspec

    with fsspec.open(url, "rb", **(storage_options or {})) as f:
        if max_bytes is None:
            return f.read()
        size = getattr(f, "size", None)
        if isinstance(size, int) and size > max_bytes:
            raise _too_large(url, f"the file has {size} bytes", max_bytes)
        chunks, total = [], 0
        while total <= max_bytes:  # read(max_bytes + 1) would allocate the whole limit at once
            chunk = f.read(min(_CHUNK, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    if total > max_bytes:
        raise _too_large(url, f"the file has more than {max_bytes} bytes", max_bytes)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _is_safetensors(data: bytes) -> bool:
    """True if `data` starts with a safetensors header (u64 little-endian length, then a JSON object)."""
    if len(data) < 10:
        return False
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8 or data[8:9] != b"{":
        return False
    try:
        json.loads(data[8 : 8 + n])
    except ValueError:
        return False
    return True


def _check_unpacked_size(data: bytes, url: str, max_bytes: int) -> None:
    """CheckpointTooLarge when the members of a torch zip file unpack to more than `max_bytes`."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            size = sum(info.file_size for info in z.infolist())
    except (zipfile.BadZipFile, ValueError):
        return  # not a zip file: torch.load judges it
    if size > max_bytes:
        raise _too_large(url, f"the torch file unpacks to {size} bytes", max_bytes)


def parse_state_dict(data: bytes, url: str, max_bytes: int | None = None) -> dict[str, Tensor]:
    """State dict (CPU tensors) from the bytes of a safetensors or torch (`weights_only=True`) file;
    a pickle that is not plain tensors is refused, never executed. With `max_bytes`, a torch zip file that
    unpacks to more is refused (CheckpointTooLarge) before torch reads it."""
    from safetensors.torch import load as load_safetensors

    if _is_safetensors(data):
        try:
            return load_safetensors(data)
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise ValueError(f"{url}: not a valid safetensors file ({e})") from None
    if max_bytes is not None:
        _check_unpacked_size(data, url, max_bytes)
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"{url}: refused or unreadable with weights_only=True; only plain tensor checkpoints "
                         f"(or .safetensors) are allowed ({type(e).__name__}: {first})") from None
    for key in ("state_dict", "model", "ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{url}: expected a state dict of tensors, got {type(obj).__name__}")
    return obj


def load_state_dict(url: str, storage_options: dict | None = None) -> dict[str, Tensor]:
    """State dict (CPU tensors) from a safetensors or torch (`weights_only=True`) file at a path or fsspec URL."""
    return parse_state_dict(read_bytes(url, storage_options), url)


def save_state_dict(state_dict: dict[str, Tensor], url: str, metadata: dict[str, str] | None = None) -> None:
    """Write a state dict as safetensors (contiguous CPU copies) to a path or fsspec URL."""
    import fsspec
    from safetensors.torch import save as save_safetensors

    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    with fsspec.open(url, "wb") as f:
        f.write(save_safetensors(tensors, metadata=metadata))
