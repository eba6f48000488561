"""Channel counts of width-reduced models (HeteroFL sub-models, SplitMix bases)."""

from __future__ import annotations

import math


def scaled(channels: int, width: float) -> int:
    """``channels`` scaled by ``width``, at least one channel.

    Rounded up (after trimming float noise such as 128 * 0.1 * 10), so that nested
    widths (1, 1/2, 1/4, 1/8 of 128) stay exact and a tiny fraction still leaves a
    layer that can carry a signal.
    """
    return max(1, math.ceil(round(channels * width, 6)))
