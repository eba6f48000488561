"""How the device does the arithmetic of a run: fused rounding kernels, TF32 tensor cores
and the fused GroupNorm + ReLU kernels.

None of them changes what is computed beyond float32 rounding (summation order, a fused
multiply-add) and the stream the rounding noise comes from, which is why all three may
be on by default:

- Fused rounding (``--fused-quant``) rounds each tensor in one or two kernels
  instead of a few dozen eager ops, with bit-identical values for the same noise:
  lpfl's own Triton kernels on CUDA (``quant/triton_round.py``, which draw the noise
  in the kernel, from Philox), ``torch.compile`` on the CPU.
  ``auto`` uses it on CUDA, and on the CPU only where it repays the compile (about
  15 s the first time, a few seconds once torch's cache holds it), in low-bit runs of
  50 rounds or more: with the sequential engine from 100 rounds, where each digits-demo
  round saves about 0.12 s; with the vectorized engine once a round's stacked model
  holds a million values or more. Below that the eager ops on the stack work in the
  cache and are about as fast: the whole 120-round 8-bit demo run (10 clients x 55 k
  values) took 20.7 s eager and 20.4 s fused with a warm cache
  (``results/demo-wall-cpu.json``), so it compiles nothing. Above it each eager op
  streams the stack through memory: FMNIST's MLP at 8 bits, 80 clients, trained a
  round in 0.45 s eager and 0.29 s fused at 4 clients a round (0.8 M values), 0.93
  and 0.62 s at 10 (2 M), 5.1 and 1.7 s at 32 (6.4 M), after a cold compile of about
  11 s in the first round (``results/cpu-fused-rounding-fmnist-mlp.json``).
- TF32 (``--tf32``) runs convolutions and matrix products on tensor cores with
  operands rounded to 11 significant bits and float32 accumulation. A W-bit block
  floating point value has at most W-1 significant bits and float32's exponent
  range, so for W <= 12 every quantized operand (weights, activations, errors) is
  exact in TF32 and the products equal the float32 simulation's. Only the raw
  input of the first layer is not quantized, so there TF32 rounds it (a relative
  error below 2^-11, far under the 2^-(W-2) of the rounding that follows). At 32
  bits nothing is on a low-bit grid, so ``auto`` keeps full float32 there. Test
  evaluation of the server model runs outside this switch, with torch's defaults: on
  CUDA that is cuDNN convolutions in TF32 and matrix products in float32, as the
  reference evaluated.
- Fused GroupNorm + ReLU (``--fused-norm``, on by default) runs that pair of layers
  over a stack of clients on CUDA as one Triton kernel each way
  (``models/norm_relu.py``): float32 values that differ from torch's ops by rounding
  (its affine is one multiply-add where torch rounds twice), 2-6x faster on the H200.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ..config import RunConfig
from ..models import norm_relu
from ..quant.block import fused_enabled, use_fused

TF32_MAX_BITS = 12  # W-1 significant bits fit TF32's 11 (10 stored + the implicit one)
CPU_FUSED_MIN_ROUNDS = {"sequential": 100, "vectorized": 50}
CPU_FUSED_MIN_STACK = 1_000_000  # values of a round's stacked model (vectorized engine)


def tf32_wanted(cfg: RunConfig, device: torch.device) -> bool:
    if device.type != "cuda" or cfg.tf32 == "off":
        return False
    return cfg.tf32 == "on" or cfg.bits <= TF32_MAX_BITS


def fused_wanted(cfg: RunConfig, device: torch.device, engine: str, model_values: int) -> bool:
    """``model_values``: the global model's parameter count (see the module's docstring)."""
    if cfg.fused_quant != "auto":
        return cfg.fused_quant == "on"
    if device.type == "cuda":
        return True
    if cfg.bits == 32 or cfg.rounds < CPU_FUSED_MIN_ROUNDS[engine]:
        return False
    return engine == "sequential" or cfg.clients_per_round * model_values >= CPU_FUSED_MIN_STACK


@contextmanager
def fused_rounding(enabled: bool) -> Iterator[None]:
    before = fused_enabled()
    use_fused(enabled)
    try:
        yield
    finally:
        use_fused(before)


@contextmanager
def tensor_cores(enabled: bool) -> Iterator[None]:
    """TF32 for convolutions and matrix products inside the block, or neither; outside it,
    the settings it found (torch's defaults: cuDNN convolutions TF32, matmuls float32)."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@contextmanager
def fused_norm(enabled: bool) -> Iterator[None]:
    before = norm_relu.FUSED["on"]
    norm_relu.FUSED["on"] = enabled
    try:
        yield
    finally:
        norm_relu.FUSED["on"] = before
