"""Per-batch pixel scaling, done on the model's device.

Datasets stay uint8 on the host (4x smaller than float32, cheap to copy); each batch is
converted only once it is where the model runs.
"""

import torch

from lpfl.data.registry import DatasetSpec


def normalize(x: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    """float32 `(x / 255 - mean) / std` per channel for a uint8 (N, C, H, W) batch."""
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != spec.channels:
        raise ValueError(
            f"expected a uint8 (N, {spec.channels}, H, W) batch for {spec.name}, "
            f"got {x.dtype} with shape {tuple(x.shape)}"
        )
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x.to(torch.float32) / 255 - mean) / std
