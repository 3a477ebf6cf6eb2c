"""Mixed precision for the network call only: `model.autocast: bf16 | fp16` runs the network under
`torch.autocast` (matmuls and convolutions in the reduced dtype, reductions in float32), while the
integrator state stays in the sampler's float32/float64 (`Field.call` casts the output back). Unlike
`model.dtype`, which casts the weights themselves, the weights keep their dtype and their identity.
"""

from __future__ import annotations

from typing import Any

import torch

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class AutocastNet(torch.nn.Module):
    """net(x, *args, **kwargs) under torch.autocast(x's device type, dtype)."""

    def __init__(self, net: torch.nn.Module, dtype: str) -> None:
        super().__init__()
        self.net, self.dtype = net, AUTOCAST_DTYPES[dtype]

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """x: (N, ...) -> the network's output, computed in mixed precision."""
        with torch.autocast(device_type=x.device.type, dtype=self.dtype):
            return self.net(x, *args, **kwargs)
