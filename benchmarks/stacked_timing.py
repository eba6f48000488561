"""What the per-layer benchmarks over a stack of clients share: their flags, and the
timing of one forward + backward.

Benchmarks run as scripts from the repository root, so this module is imported by its
plain name, like ``provenance``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor


def stack_parser(doc: str) -> argparse.ArgumentParser:
    """Flags for a stack of clients: the paper's 32 clients x batch 32 by default."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser


def forward_backward_ms(
    forward: Callable[[], Tensor], wrt: list[Tensor], repeats: int
) -> tuple[float, list[Tensor]]:
    """(median ms of ``forward()`` and its gradients with respect to ``wrt`` under a
    gradient of ones, the first call left out; the last output and gradients)."""
    times, cuda = [], wrt[0].is_cuda
    for _ in range(repeats + 1):
        if cuda:
            torch.cuda.synchronize()
        tic = time.perf_counter()
        out = forward()
        grads = torch.autograd.grad(out, wrt, torch.ones_like(out))
        if cuda:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - tic) * 1e3)
    return statistics.median(times[1:]), [t.detach() for t in (out, *grads)]
