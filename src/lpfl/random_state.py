"""A torch generator restored from a checkpoint, also on another kind of device.

torch keeps a generator's state as a CPU byte tensor in the layout of its device kind:
a CPU generator's Mersenne Twister (5056 bytes), a CUDA generator's Philox seed and
offset (16). A checkpoint loaded onto the GPU holds it on the GPU (``set_state`` takes
it from the host only), and a run checkpointed on one kind of device and resumed on the
other (a sweep cut off on a laptop and finished on a GPU, which the run's identity
allows: ``sweep/identity.py``) cannot continue the stream at all. Such a run goes on
with a new stream, seeded from the run's own seed, and says so: its later rounds differ
from an uninterrupted run's, as a run on another device does.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)


def restore(generator: torch.Generator, state: torch.Tensor, seed: int) -> bool:
    """Continue ``generator`` from ``state``, or, where the state is another device
    kind's, start it afresh from ``seed``; returns whether the stream continues."""
    state = state.cpu()
    if state.numel() == generator.get_state().numel():
        generator.set_state(state)
        return True
    logger.warning(
        "a %s generator cannot continue from a state saved by another kind of device "
        "(%d bytes, not %d): drawing anew from seed %d",
        generator.device.type, state.numel(), generator.get_state().numel(), seed,
    )  # fmt: skip
    generator.manual_seed(seed)
    return False
