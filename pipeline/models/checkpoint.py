"""Loading and saving state dicts from local paths or fsspec URLs.

Formats: safetensors (detected by content, not by name) or a torch file loaded with
`weights_only=True` (no arbitrary code runs). A torch file holding `{"state_dict": {...}}`
is unwrapped.
"""

from __future__ import annotations

import io
import json
import struct

import torch
from torch import Tensor


def read_bytes(url: str, storage_options: dict | None = None) -> bytes:
    """All bytes of a local path or fsspec URL."""
    import fsspec

    with fsspec.open(url, "rb", **(storage_options or {})) as f:
        return f.read()


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


def parse_state_dict(data: bytes, url: str) -> dict[str, Tensor]:
    """State dict (CPU tensors) from the bytes of a safetensors or torch (`weights_only=True`) file;
    a pickle that is not plain tensors is refused, never executed."""
    from safetensors.torch import load as load_safetensors

    if _is_safetensors(data):
        try:
            return load_safetensors(data)
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise ValueError(f"{url}: not a valid safetensors file ({e})") from None
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
