"""Number formats: small immutable descriptions of how a tensor is rounded.

Kept apart from the rounding code so that configs, wire headers and models can
carry a format around without importing any arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

BLOCK_MODES = ("tensor", "B", "BC")
ROUNDING_MODES = ("stochastic", "nearest")
FULL_PRECISION = 32
MIN_BITS, MAX_BITS = 2, 16
EXP_MIN, EXP_MAX = -128, 127  # the shared exponent travels as one signed byte


def check_bits(bits: int) -> int:
    """Word lengths 2..16 are block floating point; 32 means plain float32."""
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise TypeError(f"bits must be an int, got {bits!r}")
    if bits != FULL_PRECISION and not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be {MIN_BITS}..{MAX_BITS} or {FULL_PRECISION}, got {bits}")
    return bits


def check_block(block: str) -> str:
    if block not in BLOCK_MODES:
        raise ValueError(f"block must be one of {', '.join(BLOCK_MODES)}, got {block!r}")
    return block


def check_rounding(rounding: str) -> str:
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"rounding must be one of {', '.join(ROUNDING_MODES)}, got {rounding!r}")
    return rounding


@dataclass(frozen=True)
class BlockFormat:
    """A block-floating-point format: W-bit signed mantissas sharing one exponent per block."""

    bits: int = FULL_PRECISION
    block: str = "BC"
    rounding: str = "stochastic"

    def __post_init__(self) -> None:
        check_bits(self.bits)
        check_block(self.block)
        check_rounding(self.rounding)

    @property
    def full_precision(self) -> bool:
        return self.bits == FULL_PRECISION

    def __str__(self) -> str:
        if self.full_precision:
            return "fp32"
        return f"bfp{self.bits}/{self.block}/{self.rounding}"


FP32 = BlockFormat()
