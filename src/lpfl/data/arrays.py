"""The in-memory form every loader produces, and the checks that guard it.

Keeping one canonical layout (uint8 NCHW images, int64 labels) means training code never has
to guess how a given source stored its pixels; the spec check makes every reader reject data
that would otherwise surface later as a confusing shape error inside a model.
"""

from dataclasses import dataclass
from os import PathLike

import numpy as np

from lpfl.data.errors import DataFormatError
from lpfl.data.registry import DatasetSpec


@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """Images `x` as uint8 (N, C, H, W) and labels `y` as int64 (N,).

    Pixels stay uint8 to keep whole datasets small in memory; scaling happens per batch.
    """

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if self.x.dtype != np.uint8 or self.x.ndim != 4:
            raise DataFormatError(
                f"images must be uint8 with shape (N, C, H, W), got {self.x.dtype} "
                f"with shape {self.x.shape}"
            )
        if self.y.dtype != np.int64 or self.y.ndim != 1:
            raise DataFormatError(
                f"labels must be int64 with shape (N,), got {self.y.dtype} "
                f"with shape {self.y.shape}"
            )
        if len(self.x) != len(self.y):
            raise DataFormatError(f"{len(self.x)} images but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)


def checked_dataset(
    x: np.ndarray, y: np.ndarray, spec: DatasetSpec, source: str | PathLike[str]
) -> ArrayDataset:
    """Build an ArrayDataset from NCHW arrays, refusing anything that does not fit `spec`.

    `source` names the file the arrays came from so the error points at what to fix.
    """
    expected = (spec.channels, spec.size, spec.size)
    if x.dtype != np.uint8:
        raise DataFormatError(f"{source}: images are {x.dtype}, expected uint8")
    if x.ndim != 4 or x.shape[1:] != expected:
        raise DataFormatError(
            f"{source}: images have shape {x.shape}, but {spec.name} needs (N, C, H, W) = "
            f"(N, {', '.join(map(str, expected))})"
        )
    if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
        raise DataFormatError(
            f"{source}: labels must be a 1-D integer array, got {y.dtype} with shape {y.shape}"
        )
    if len(x) != len(y):
        raise DataFormatError(f"{source}: {len(x)} images but {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() >= spec.num_classes):
        raise DataFormatError(
            f"{source}: labels span [{y.min()}, {y.max()}], outside [0, {spec.num_classes}) "
            f"for {spec.name}"
        )
    return ArrayDataset(np.ascontiguousarray(x), y.astype(np.int64, copy=False))
