"""lpfl's Triton rounding kernels, checked without a GPU.

Values: Triton's interpreter runs the kernels on the CPU and they must equal the
eager ops bit for bit (``triton_kernel_check.py``, in a child process). Compilation:
Triton builds them for an H100 (sm_90) and an A100 (sm_80) here, with no GPU, so a
kernel that a GPU compiler would refuse fails in CI rather than in a paid GPU slot.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

triton = pytest.importorskip("triton", reason="Triton ships for Linux x86-64 only (dev extra)")
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from lpfl.quant import triton_round  # noqa: E402


def pointers(stochastic: bool) -> dict[str, str]:
    """The kernels' pointers: the seed is one int64, or the input again when rounding to nearest."""
    seed = "*i64" if stochastic else "*fp32"
    return {"x_ptr": "*fp32", "seed_ptr": seed, "out_ptr": "*fp32", "amax_ptr": "*i32"}


def test_kernels_match_eager_rounding_under_the_interpreter():
    script = Path(__file__).with_name("triton_kernel_check.py")
    env = os.environ | {"TRITON_INTERPRET": "1"}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "triton kernels match eager rounding on cpu: 120 cases, noise" in done.stdout


def _sources(bits: int, stochastic: bool) -> list[ASTSource]:
    """Every kernel as ``fake_quantize`` launches it, with the specialisations Triton makes
    at launch: an int argument equal to 1 becomes a constant (rows of one element, a
    Linear weight in BC blocks; a single row, one tensor-wide block) and pointers and
    ints divisible by 16 are marked so (wide vector loads)."""
    modes = {"BITS": bits, "STOCHASTIC": stochastic}
    ptrs = pointers(stochastic)
    rowwise = {"x_ptr": "*fp32", "amax_ptr": "*i32", "C": "i32", "BLOCK": "constexpr"}
    applied = ptrs | {"C": "i32"} | dict.fromkeys(["BITS", "STOCHASTIC", "BLOCK"], "constexpr")
    aligned = {(i,): [["tt.divisibility", 16]] for i in range(4)}  # the four pointers
    noise = {"seed_ptr": "*i64", "out_ptr": "*fp32", "N": "i32", "C": "i32", "BLOCK": "constexpr"}
    sources = [
        ASTSource(triton_round._noise_kernel, noise, {"BLOCK": triton_round.CHUNK}),
        ASTSource(triton_round._row_max_kernel, rowwise, {"BLOCK": triton_round.CHUNK}),
        ASTSource(triton_round._apply_kernel, applied, modes | {"BLOCK": triton_round.CHUNK}),
        ASTSource(
            triton_round._apply_kernel, applied, modes | {"BLOCK": triton_round.CHUNK}, aligned
        ),
    ]
    tiled = dict.fromkeys(["BITS", "STOCHASTIC", "BLOCK_R", "BLOCK_C"], "constexpr")
    for rows, c in ((1000, 1), (1000, 9), (7, 300), (1, triton_round.TILE)):
        block_r, block_c = triton_round.tile_shape(c)
        ones = {name: 1 for name, n in (("R", rows), ("C", c)) if n == 1}
        signature = ptrs | {"R": "i32", "C": "i32"} | dict.fromkeys(ones, "constexpr") | tiled
        constants = modes | ones | {"BLOCK_R": block_r, "BLOCK_C": block_c}
        sources.append(ASTSource(triton_round._tile_kernel, signature, constants))
        sources.append(ASTSource(triton_round._tile_kernel, signature, constants, aligned))
    return sources


@pytest.mark.parametrize("arch", [90, 80])
@pytest.mark.parametrize("bits,stochastic", [(8, True), (8, False), (4, True), (16, True)])
def test_kernels_compile_for_the_gpu_without_one(arch, bits, stochastic):
    for source in _sources(bits, stochastic):
        kernel = triton.compile(
            source, target=GPUTarget("cuda", arch, 32), options={"enable_fp_fusion": False}
        )
        ptx = kernel.asm["ptx"]
        assert kernel.asm["cubin"], source.fn
        # Bit-identity with the eager ops needs IEEE steps: no flush of subnormals to
        # zero, no fused multiply-add (fake_quantize launches with fusion off).
        assert ".ftz" not in ptx and "fma." not in ptx, source.fn


def test_tensors_past_the_kernels_limits_are_left_to_eager_ops():
    """Offsets are int32 and a grid's second axis stops at 65535 programs."""
    meta = {"device": "meta"}
    assert triton_round.fits(torch.empty(32, 4_194_304, **meta))  # the paper's activations
    assert not triton_round.fits(torch.empty(1024, 2**21, **meta))  # 2^31 elements
    assert not triton_round.fits(torch.empty(1, 65536 * triton_round.CHUNK, **meta))
