"""Checkpoint reading under a size cap (pipeline.models.checkpoint): the file, and what a torch zip unpacks to."""

from __future__ import annotations

import io
import zipfile

import fsspec
import pytest
import torch
from safetensors.torch import save as save_safetensors

from pipeline.models.checkpoint import CheckpointTooLarge, parse_state_dict, read_bytes

N = 250_000  # float32 zeros: 1 MB of tensor data


def deflated(state: dict[str, torch.Tensor]) -> bytes:
    """torch.save(state) with every zip member deflated: zeros shrink ~1000x."""
    plain, packed = io.BytesIO(), io.BytesIO()
    torch.save(state, plain)
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    return packed.getvalue()


def test_a_small_deflated_torch_file_unpacks_big_and_is_refused_before_torch_reads_it():
    data = deflated({"w": torch.zeros(N)})
    assert len(data) < 20_000
    # the control: torch itself loads it, 1 MB from 20 kB (a 0.97 MB file loads 1 GB the same way)
    assert torch.load(io.BytesIO(data), weights_only=True)["w"].numel() == N
    with pytest.raises(CheckpointTooLarge, match=r"w.pt: the torch file unpacks to \d+ bytes, more than model.max_checkpoint_bytes=100000"):
        parse_state_dict(data, "w.pt", max_bytes=100_000)
    assert parse_state_dict(data, "w.pt", max_bytes=2 * N * 4)["w"].shape == (N,)
    assert parse_state_dict(data, "w.pt")["w"].shape == (N,)  # no cap given: no check


@pytest.mark.parametrize("where", ["local", "memory"])
def test_read_bytes_stops_at_the_cap(tmp_path, where):
    data = save_safetensors({"w": torch.ones(1000)})
    url = str(tmp_path / "w.safetensors") if where == "local" else "memory://ckpt-test/w.safetensors"
    with fsspec.open(url, "wb") as f:
        f.write(data)
    assert read_bytes(url, max_bytes=len(data)) == data
    assert read_bytes(url) == data
    with pytest.raises(CheckpointTooLarge, match=rf"the file has {len(data)} bytes, more than model.max_checkpoint_bytes={len(data) - 1} allows"):
        read_bytes(url, max_bytes=len(data) - 1)


def test_read_bytes_without_a_known_size_reads_no_more_than_the_cap(monkeypatch, tmp_path):
    """A file object without `size` (a stream): read in chunks up to cap + 1 bytes, then refused."""
    import pipeline.models.checkpoint as checkpoint

    path = tmp_path / "big.pt"
    path.write_bytes(b"x" * 10_000)
    monkeypatch.setattr(checkpoint, "_CHUNK", 1000)
    reads = []

    class Stream(io.BytesIO):
        def read(self, n=-1):
            reads.append(n)
            return super().read(n)

    monkeypatch.setattr(fsspec, "open", lambda url, mode, **kw: Stream(path.read_bytes()))
    with pytest.raises(CheckpointTooLarge, match=r"more than 4500 bytes"):
        read_bytes(str(path), max_bytes=4500)
    assert sum(reads) <= 4501 and max(reads) <= 1000
