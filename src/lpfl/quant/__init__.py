"""Number formats and rounding: block floating point, its autograd pieces, per-role policies."""

from .autograd import ActQuant, attach_precision, quantize
from .block import (
    BlockQuantized,
    NonFiniteError,
    block_decompose,
    block_dims,
    block_exponents,
    block_quantize,
)
from .formats import BLOCK_MODES, FP32, FULL_PRECISION, ROUNDING_MODES, BlockFormat
from .policy import PrecisionPolicy

__all__ = [
    "BLOCK_MODES",
    "FP32",
    "FULL_PRECISION",
    "ROUNDING_MODES",
    "ActQuant",
    "BlockFormat",
    "BlockQuantized",
    "NonFiniteError",
    "PrecisionPolicy",
    "attach_precision",
    "block_decompose",
    "block_dims",
    "block_exponents",
    "block_quantize",
    "quantize",
]
