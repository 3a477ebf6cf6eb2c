"""A background producer of step noise: step k + 1's draw is made while the network runs step k.

`NoiseProducer(noise).step(k, like, draw)` returns exactly `noise.step(k, like, draw)` (the same
bits) and then starts drawing step k + 1 with the same shape, dtype and draw on a worker thread,
which is what a step loop asks for next; any other request is drawn directly. On CUDA the draw runs
on a side stream: v2 draws on the device; v1 draws on the CPU into pinned memory and copies with
non_blocking=True. The caller's stream waits for the side stream's event before the tensor is used.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import torch

from . import STEP_STREAM, SampleNoise

Key = tuple[int, tuple[int, ...], torch.dtype, int]  # (k, shape, dtype, draw)


class NoiseProducer:
    """Step noise of `noise`, drawn one step ahead on a worker thread; close() (or `with`) ends it."""

    def __init__(self, noise: SampleNoise) -> None:
        self.noise = noise
        self.cuda = noise.device.type == "cuda"
        self.side = torch.cuda.Stream(noise.device) if self.cuda else None
        self.cpu_noise = (SampleNoise(noise.seed, noise.start_index, noise.n, "cpu", noise.scheme.name)
                          if self.cuda and noise.scheme.name == "v1" else None)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="noise")
        self.pending: tuple[Key, Future] | None = None

    def _draw(self, key: Key) -> tuple[torch.Tensor, torch.cuda.Event | None]:
        k, shape, dtype, draw = key
        if not self.cuda:
            return self.noise.normal(STEP_STREAM + k, shape, dtype, draw), None
        with torch.cuda.stream(self.side):
            if self.cpu_noise is not None:
                host = self.cpu_noise.normal(STEP_STREAM + k, shape, torch.float32, draw).pin_memory()
                out = host.to(self.noise.device, dtype, non_blocking=True)
            else:
                out = self.noise.normal(STEP_STREAM + k, shape, dtype, draw)
            event = torch.cuda.Event()
            event.record(self.side)
        return out, event

    def step(self, k: int, like: torch.Tensor, draw: int = 0) -> torch.Tensor:
        """`noise.step(k, like, draw)`; starts drawing step k + 1 in the background."""
        key = (k, tuple(like.shape[1:]), like.dtype, draw)
        pending, self.pending = self.pending, None
        out, event = pending[1].result() if pending is not None and pending[0] == key else self._draw(key)
        if event is not None:
            current = torch.cuda.current_stream(self.noise.device)
            current.wait_event(event)
            out.record_stream(current)
        self.pending = ((k + 1, *key[1:]), self.pool.submit(self._draw, (k + 1, *key[1:])))
        return out

    def close(self) -> None:
        """Waits for the draw in flight and stops the worker thread."""
        self.pending = None
        self.pool.shutdown(wait=True)

    def __enter__(self) -> NoiseProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
