"""What the header says about one tensor, and the body bytes that follow from it.

Shapes and encodings alone fix every tensor's byte count (uncompressed sizes do not
depend on the values), so the receiver can check the body length before reading a
single value.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property

from ..quant import BLOCK_MODES, block_dims
from ..quant.formats import MAX_BITS, MIN_BITS
from .bitpack import packed_size
from .dtypes import DECODED_FLOAT, WIRE_DTYPES, numpy_dtype
from .errors import WireError

RAW = "raw"  # the bytes of ``dtype`` itself
HALF = "float16"  # float32 values sent as half floats
_BFP_LABEL = re.compile(r"bfp(\d+)/(\w+)")


@dataclass(frozen=True)
class TensorSpec:
    """One header entry: ``[name, shape, dtype, encoding]``.

    Derived sizes are cached: the decoder asks for them several times per tensor.
    ``dtype`` is what the receiver gets back (every float as float32); ``encoding``
    is how the bytes travel: ``"raw"``, ``"float16"`` or ``"bfp<W>/<block>"``. A BFP
    tensor's body is one signed exponent byte per block, then its mantissas packed
    at exactly W bits.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    encoding: str

    @classmethod
    def bfp(cls, name: str, shape: tuple[int, ...], bits: int, block: str) -> TensorSpec:
        return cls(name, shape, DECODED_FLOAT, f"bfp{bits}/{block}")

    @cached_property
    def numel(self) -> int:
        return math.prod(self.shape)

    @cached_property
    def bfp_format(self) -> tuple[int, str] | None:
        """(bits, block) for a BFP tensor, None for one sent as plain values."""
        match = _BFP_LABEL.fullmatch(self.encoding)
        return (int(match[1]), match[2]) if match else None

    @property
    def wire_dtype(self) -> str:
        """Element type of a tensor sent as plain values."""
        return HALF if self.encoding == HALF else self.dtype

    @cached_property
    def exponent_shape(self) -> tuple[int, ...]:
        """Shape of the per-block exponents: the dims that share one exponent collapse to 1."""
        _, block = self.bfp_format
        shared = block_dims(len(self.shape), block)
        return tuple(1 if dim in shared else size for dim, size in enumerate(self.shape))

    @cached_property
    def blocks(self) -> int:
        """Number of shared exponents, one body byte each."""
        return math.prod(self.exponent_shape)

    @cached_property
    def body_size(self) -> int:
        fmt = self.bfp_format
        if fmt is None:
            return self.numel * numpy_dtype(self.wire_dtype).itemsize
        return self.blocks + packed_size(self.numel, fmt[0])

    def to_json(self) -> list:
        return [self.name, list(self.shape), self.dtype, self.encoding]

    @classmethod
    def from_json(cls, entry: object) -> TensorSpec:
        """Parse and validate one header entry; anything unexpected is a malformed header."""
        if not (isinstance(entry, list) and len(entry) == 4):
            raise WireError(
                f"malformed header: tensor entry {entry!r} is not [name, shape, dtype, encoding]"
            )
        name, shape, dtype, encoding = entry
        if not isinstance(name, str):
            raise WireError(f"malformed header: tensor name {name!r} is not a string")
        if not (
            isinstance(shape, list)
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
        ):
            raise WireError(f"malformed header: shape {shape!r} of {name!r} is not a list of sizes")
        if dtype not in WIRE_DTYPES:
            raise WireError(f"malformed header: unknown dtype {dtype!r} for {name!r}")
        spec = cls(name, tuple(shape), dtype, encoding)
        spec._check_encoding()
        return spec

    def _check_encoding(self) -> None:
        if self.encoding == RAW:
            if self.dtype == HALF:
                raise WireError(
                    f"malformed header: {self.name!r} claims dtype float16, but floats decode"
                    " as float32 (half floats travel with encoding 'float16')"
                )
            return
        if self.encoding != HALF:
            fmt = self.bfp_format if isinstance(self.encoding, str) else None
            if fmt is None:
                raise WireError(
                    f"malformed header: unknown encoding {self.encoding!r} for {self.name!r}"
                )
            if not (MIN_BITS <= fmt[0] <= MAX_BITS and fmt[1] in BLOCK_MODES):
                raise WireError(
                    f"malformed header: unsupported format {self.encoding!r} for {self.name!r}"
                )
        if self.dtype != DECODED_FLOAT:
            raise WireError(
                f"malformed header: {self.name!r} is encoded as {self.encoding!r}"
                f" but claims dtype {self.dtype!r}"
            )
