"""Per-batch pixel scaling, done on the model's device.

Datasets stay uint8 on the host (4x smaller than float32, cheap to copy); each batch is
converted only once it is where the model runs.
"""

from functools import cache

import torch

from lpfl.data.registry import DatasetSpec


@cache
def _scale(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """A per-channel constant, made once per device: a CUDA graph of a training step may
    not copy from the host, and a copy per batch would be a wasted launch anyway."""
    return torch.tensor(values, dtype=torch.float32, device=device).view(1, -1, 1, 1)


def normalize(x: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    """float32 `(x / 255 - mean) / std` per channel for a uint8 (N, C, H, W) batch."""
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != spec.channels:
        raise ValueError(
            f"expected a uint8 (N, {spec.channels}, H, W) batch for {spec.name}, "
            f"got {x.dtype} with shape {tuple(x.shape)}"
        )
    mean, std = _scale(tuple(spec.mean), x.device), _scale(tuple(spec.std), x.device)
    return (x.to(torch.float32) / 255 - mean) / std
