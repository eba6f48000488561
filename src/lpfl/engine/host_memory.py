"""Keep the memory of freed tensors in the process, so that new tensors do not page-fault.

torch takes CPU tensors from the C library's malloc. glibc serves a block above its
mmap threshold (128 KiB at first, raised as large blocks are freed) with a mapping of
its own, and hands the top of the heap back to the system once more than twice that
threshold lies free there. Either way a tensor of a few MB, of which the vectorized
engine makes dozens a step (ten clients' weights, gradients, and the temporaries of
rounding them), keeps arriving as fresh pages that the kernel must map and zero on
first touch. On the 2-core machine, 30 rounds of the 8-bit digits demo on the
vectorized engine with eager rounding took 2.8 million page faults this way.
Serving blocks up to 64 MiB from the heap, and returning free heap only once 256 MiB
of it is free, brings that to 0.1 million and the rounds from 0.26 to 0.15 s, with
the same peak memory (``benchmarks/host_memory.py``, ``results/host-memory-cpu.json``).

The knobs are glibc's (``mallopt``); elsewhere this does nothing. The setting is
process-wide, so it is made once, by ``run_simulation``, and ``LPFL_MALLOC=default``
in the environment leaves malloc as it is.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_THRESHOLD = -3
HEAP_BLOCK_MAX = 64 << 20  # blocks up to this size come from the heap
TRIM_THRESHOLD = 256 << 20  # free heap kept before any is returned to the system
OPT_OUT = "LPFL_MALLOC"


@functools.cache
def keep_freed_memory() -> bool:
    """Tune glibc's malloc as above, once per process; True when it is tuned."""
    return _tune()


def _tune() -> bool:
    if os.environ.get(OPT_OUT) == "default":
        return False
    try:
        libc = ctypes.CDLL(None)  # the running process's symbols, the C library's among them
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # not glibc: the M_* values are glibc's
        return False
    done = mallopt(M_MMAP_THRESHOLD, HEAP_BLOCK_MAX) == 1
    done = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and done
    log.debug("malloc keeps freed memory: %s", done)
    return done
