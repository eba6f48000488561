"""Training memory of one client: counted from the model (analytic) and measured.

Analytic: the bytes a client needs to hold during a training step, each tensor at
the precision a real low-bit kernel would store it in:

- weights and gradients: rounded by the policy, so ``W``-bit mantissas plus one
  8-bit shared exponent per block (full precision: 4 bytes each);
- optimizer state: float32, as lpfl and the reference keep Adam's moments;
- activations autograd saves for backward at the given batch, found by running one
  forward pass under ``saved_tensors_hooks``: a saved tensor that is the output of
  an ``ActQuant`` rounding point is on the ``W``-bit grid (mantissas + per-tensor
  exponent); any other (the raw input, a ReLU output or a softmax the rounding point
  has not touched yet, norm statistics) is counted at its float32 size.

Measured: the peak of the bytes allocated while ``fn`` runs, above what was live
when it started. On CUDA this is ``torch.cuda.max_memory_allocated``; on CPU the
torch profiler's allocation/free events, replayed in time order, give the same
quantity for torch's CPU allocator (it sees tensors only: no Python objects, no
allocator caching). The simulation stores every tensor in float32 (rounding is
simulated), so this is the memory of the fp32 emulation, not of a low-bit kernel.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from ..quant import ActQuant, BlockFormat, block_dims

EXPONENT_BITS = 8
FP32 = 4


def blocks(shape: tuple[int, ...], block: str) -> int:
    """How many shared exponents a tensor of ``shape`` carries in ``block`` mode."""
    numel = math.prod(shape)
    shared = math.prod(shape[d] for d in block_dims(len(shape), block))
    return numel // shared if shared else 0


def stored_bytes(shape: tuple[int, ...], fmt: BlockFormat) -> float:
    """Bytes of one tensor in ``fmt``: W-bit mantissas + 8-bit exponents, or float32."""
    numel = math.prod(shape)
    if fmt.full_precision:
        return FP32 * numel
    return (fmt.bits * numel + EXPONENT_BITS * blocks(shape, fmt.block)) / 8


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes per role; ``activations_fp32``: the part of ``activations`` not on the W-bit grid."""

    weights: float
    grads: float
    optimizer: float
    activations: float
    activations_fp32: float

    @property
    def total(self) -> float:
        return self.weights + self.grads + self.optimizer + self.activations


def optimizer_slots(name: str, momentum: float = 0.0) -> int:
    """Float32 buffers per parameter: Adam's two moments, SGD's momentum if it has one."""
    if name == "adam":
        return 2
    return 1 if momentum > 0 else 0


def saved_activations(
    model: nn.Module, step: Callable[[], Tensor]
) -> list[tuple[tuple[int, ...], bool]]:
    """(shape, on the activation grid) of each distinct tensor saved for backward by ``step``.

    Tensors are told apart by their storage, so one activation saved by two ops (or
    as a view) counts once; parameters are left out (they are counted as weights).
    """
    param_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    rounded: set[int] = set()

    def remember(_module: nn.Module, _inputs: object, output: Tensor) -> None:
        rounded.add(output.untyped_storage().data_ptr())

    seen: dict[int, Tensor] = {}

    def pack(t: Tensor) -> Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in param_storages and t.is_floating_point():
            seen.setdefault(ptr, t)
        return t

    handles = [
        m.register_forward_hook(remember) for m in model.modules() if isinstance(m, ActQuant)
    ]
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            step()
    finally:
        for h in handles:
            h.remove()
    out = []
    for ptr, t in seen.items():
        elements = t.untyped_storage().nbytes() // t.element_size()
        shape = tuple(t.shape) if t.numel() == elements else (elements,)  # a view: whole storage
        out.append((shape, ptr in rounded))
    return out


def analytic_memory(
    model: nn.Module,
    weight: BlockFormat,
    grad: BlockFormat,
    act: BlockFormat,
    optimizer_slots: int,
    step: Callable[[], Tensor],
) -> MemoryBreakdown:
    """Bytes held by a client training ``model``; ``step`` runs one forward pass and loss.

    The model must already have its activation rounding attached, so that the
    rounding points produce the tensors autograd saves.
    """
    shapes = [tuple(p.shape) for p in model.parameters()]
    numel = sum(math.prod(s) for s in shapes)
    # At full precision the rounding points are the identity: nothing is on a W-bit grid.
    acts = [(s, q and not act.full_precision) for s, q in saved_activations(model, step)]
    act_q = sum(stored_bytes(s, act) for s, q in acts if q)
    act_f = sum(FP32 * math.prod(s) for s, q in acts if not q)
    return MemoryBreakdown(
        weights=sum(stored_bytes(s, weight) for s in shapes),
        grads=sum(stored_bytes(s, grad) for s in shapes),
        optimizer=FP32 * optimizer_slots * numel,
        activations=act_q + act_f,
        activations_fp32=act_f,
    )


def peak_memory(fn: Callable[[], object], device: torch.device) -> int:
    """Peak bytes allocated by torch while ``fn`` runs, above those live at its start."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        if e.device_type() == DeviceType.CPU:
            live += e.nbytes()
            peak = max(peak, live)
    return peak
