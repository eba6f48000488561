"""The vectorized engine's training step as a CUDA graph, replayed at every full step.

Why: on the H200 an 8-bit round of the paper's ConvNet trains in 440 ms while its
kernels take 219 ms (``results/gpu-h200-2026-11-27b``). The GPU waits for the host,
which launches several hundred kernels a step through ``vmap``, autograd, the rounding
calls and the fused optimizer. A captured step launches them all in one call: on the
H200 an 8-bit step takes 11.2 ms replayed against 25.2 ms eager, a 32-bit one 18.9
against 20.2 (``benchmarks/graph_probe.py``, ``results/gpu-h200-2026-11-27c``).

A graph reads and writes fixed memory, so the step runs on tensors kept here from round
to round: the stacked weights and optimizer state of a round's clients, the round's data,
the per-client label counts, and one step's batch indices and sample weights. A round
copies its values into them (``load``) and the engine copies the weights out at the end.
The graph holds a step in which every client takes a batch. A step in which some clients
have run out of data (the last steps of unequal clients) runs eagerly on the same tensors.

The replay runs the kernels the eager step runs, on the same values, and draws the
rounding noise from the trainer's generator: the graph is told of it, and advances its
Philox offset on every replay as the eager calls would. So a run with graphs computes
what it computes without them (``tests/cuda_graph_check.py`` checks that on a GPU).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from ..models import norm_relu
from ..quant.block import fused_enabled
from .stacked_optim import Stacked, StackedOptimizer, Step

log = logging.getLogger(__name__)

# Eager steps before the capture, as torch asks: they compile the Triton kernels and set up
# the libraries' per-stream state, none of which may happen inside a capture.
WARMUP_STEPS = 2
GROWTH = 1.25  # room a new data buffer leaves for larger rounds, so few rounds re-capture

Run = Callable[[], Tensor]


class Capturer(Protocol):
    """How a step on fixed tensors is warmed up and captured: with CUDA graphs on a GPU;
    the tests' stand-ins (``tests/graph_emulator.py``) do it on the CPU."""

    def warm(self, run: Run) -> Tensor: ...

    def capture(self, run: Run) -> Run:
        """A function that reruns ``run`` (not run by the capture itself) and returns its
        output, in the same tensor at every call where the graph writes there."""
        ...


class CudaGraphs:
    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator
        self.side = torch.cuda.Stream(generator.device)

    def warm(self, run: Run) -> Tensor:
        self.side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side):
            out = run()
        torch.cuda.current_stream().wait_stream(self.side)
        return out

    def capture(self, run: Run) -> Run:
        graph = torch.cuda.CUDAGraph()
        if self.generator is not torch.cuda.default_generators[self.generator.device.index or 0]:
            graph.register_generator_state(self.generator)  # the default one is known
        with torch.cuda.graph(graph):
            out = run()

        def replay() -> Tensor:
            graph.replay()
            return out

        return replay


@dataclass
class Fixed:
    """The tensors a captured step reads and writes, at fixed addresses."""

    params: Stacked
    state: Stacked
    x: Tensor  # room for a round's data: only the first rows hold this round's
    y: Tensor
    counts: Tensor
    index: Tensor
    weight: Tensor
    step: Step  # the optimizer bound to params and state


# What a step computes: the trainer's _step with everything but the optimizer given.
StepFn = Callable[[Stacked, Step, list[int], Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]


class StepGraph:
    """One captured step, made again when a round's shapes outgrow the fixed tensors."""

    def __init__(self, step: StepFn, optimizer: StackedOptimizer, capturer: Capturer) -> None:
        self._step, self.optimizer, self.capturer = step, optimizer, capturer
        self.fixed: Fixed | None = None
        self.key: tuple = ()
        self.replay: Run | None = None
        self.warmed = 0
        self.captures = 0  # how many graphs were made, for tests and benchmarks
        self.failed: str | None = None  # why a capture failed: the run goes on eagerly

    def load(
        self, params: Stacked, state: Stacked, x: Tensor, y: Tensor, counts: Tensor, batch: int,
        algorithm_key: tuple = (),
    ) -> Fixed:  # fmt: skip
        """The fixed tensors, holding this round's values (made anew if they do not fit,
        or if the algorithm's client step changed: ``Algorithm.graph_key``)."""
        key = (
            algorithm_key,
            tuple((n, p.shape, p.dtype) for n, p in params.items()),
            tuple((n, s.shape, s.dtype) for n, s in state.items()),
            x.shape[1:], x.dtype, counts.shape, batch,
            # What the captured kernels were chosen by; constant within a run.
            fused_enabled(), torch.backends.cuda.matmul.allow_tf32, norm_relu.FUSED["on"],
        )  # fmt: skip
        fixed = self.fixed
        if fixed is None or key != self.key or len(x) > len(fixed.x):
            self.fixed = self.replay = None  # the old graph's memory goes before the new is taken
            fixed = self.fixed = self._allocate(params, state, x, y, counts, batch)
            self.key, self.warmed = key, 0
        for dst, src in (*zip(fixed.params.values(), params.values(), strict=True),
                         *zip(fixed.state.values(), state.values(), strict=True)):  # fmt: skip
            dst.copy_(src)
        fixed.x[: len(x)].copy_(x)
        fixed.y[: len(y)].copy_(y)
        fixed.counts.copy_(counts)
        return fixed

    def _allocate(
        self, params: Stacked, state: Stacked, x: Tensor, y: Tensor, counts: Tensor, batch: int
    ) -> Fixed:
        room = int(len(x) * GROWTH)
        p = {n: torch.empty_like(t) for n, t in params.items()}
        s = {n: torch.empty_like(t) for n, t in state.items()}
        k = counts.shape[0]
        return Fixed(
            params=p, state=s,
            x=x.new_zeros((room, *x.shape[1:])), y=y.new_zeros(room),
            counts=torch.empty_like(counts),
            index=torch.zeros(k, batch, dtype=torch.long, device=x.device),
            weight=torch.zeros(k, batch, device=x.device),
            step=self.optimizer.bind(p, s),
        )  # fmt: skip

    def step(self, index: Tensor, weight: Tensor) -> Tensor:
        """One step of every client of the round (all of them have a batch): the
        per-client task losses, in a tensor the next step overwrites."""
        fixed = self.fixed
        if fixed is None:
            raise RuntimeError("StepGraph.step before load")
        fixed.index.copy_(index)
        fixed.weight.copy_(weight)
        if self.replay is not None:
            return self.replay()
        everyone = list(range(len(fixed.counts)))

        def run() -> Tensor:
            return self._step(
                fixed.params, fixed.step, everyone, fixed.x, fixed.y, fixed.index,
                fixed.weight, fixed.counts,
            )  # fmt: skip

        if self.failed or self.warmed < WARMUP_STEPS:
            self.warmed += 1
            return self.capturer.warm(run)
        try:
            self.replay = self.capturer.capture(run)
        except RuntimeError as exc:  # a step this engine has not been checked with on a GPU
            self.failed = str(exc).splitlines()[0]
            log.warning(
                "this run's training step cannot be captured as a CUDA graph (%s); it goes "
                "on with eager steps, which compute the same values (--no-cuda-graph skips "
                "the attempt)",
                self.failed,
            )
            return self.capturer.warm(run)  # a capture runs nothing: this step is still due
        self.captures += 1
        return self.replay()
