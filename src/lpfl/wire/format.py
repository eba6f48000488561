"""How a sender wants its tensors to travel, chosen once per run and carried in config."""

from __future__ import annotations

from dataclasses import dataclass

from ..quant.formats import FULL_PRECISION, check_bits, check_block, check_rounding

FLOAT_DTYPES = ("float32", "float16")
COMPRESSIONS = ("none", "zlib", "lzma")


@dataclass(frozen=True)
class WireFormat:
    """Word length and blocking of the mantissas, plus the fallbacks for everything else.

    ``rounding`` defaults to nearest because weights trained in BFP already sit on
    the grid, so nearest reproduces them exactly; stochastic rounding would only add
    noise. ``float_dtype`` covers tensors that are not quantized (all of them at
    ``bits=32``); ``compression`` is a lossless stage over the packed body, worth it
    only when the values are very redundant.
    """

    bits: int = FULL_PRECISION
    block: str = "BC"
    rounding: str = "nearest"
    float_dtype: str = "float32"
    compression: str = "none"

    def __post_init__(self) -> None:
        check_bits(self.bits)
        check_block(self.block)
        check_rounding(self.rounding)
        if self.float_dtype not in FLOAT_DTYPES:
            raise ValueError(
                f"float_dtype must be one of {', '.join(FLOAT_DTYPES)}, got {self.float_dtype!r}"
            )
        if self.compression not in COMPRESSIONS:
            raise ValueError(
                f"compression must be one of {', '.join(COMPRESSIONS)}, got {self.compression!r}"
            )

    @property
    def quantizes(self) -> bool:
        return self.bits != FULL_PRECISION
