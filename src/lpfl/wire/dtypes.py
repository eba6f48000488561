"""The element types a message may carry, by the names the header uses for them.

A closed list keeps the header independent of torch's and numpy's spelling and
lets the receiver refuse anything it would not know how to rebuild.
"""

from __future__ import annotations

import numpy as np
import torch

_TABLE: dict[str, tuple[torch.dtype, np.dtype]] = {
    "float32": (torch.float32, np.dtype("<f4")),
    "float16": (torch.float16, np.dtype("<f2")),
    "int8": (torch.int8, np.dtype("<i1")),
    "int16": (torch.int16, np.dtype("<i2")),
    "int32": (torch.int32, np.dtype("<i4")),
    "int64": (torch.int64, np.dtype("<i8")),
    "uint8": (torch.uint8, np.dtype("<u1")),
    "bool": (torch.bool, np.dtype("?")),
}
WIRE_DTYPES = tuple(_TABLE)
DECODED_FLOAT = "float32"  # every floating tensor comes back in the aggregation precision


def dtype_name(dtype: torch.dtype) -> str | None:
    """The header name of a torch dtype, or None when messages cannot carry it."""
    return next((name for name, (known, _) in _TABLE.items() if known == dtype), None)


def torch_dtype(name: str) -> torch.dtype:
    return _TABLE[name][0]


def numpy_dtype(name: str) -> np.dtype:
    """Explicitly little-endian, so messages read the same on any host."""
    return _TABLE[name][1]
