"""Checks lpfl's Triton rounding kernels against the eager ops, value for value.

    TRITON_INTERPRET=1 python tests/triton_kernel_check.py   # CPU, Triton's interpreter
    python tests/triton_kernel_check.py cuda                  # on a GPU, compiled

``test_triton_round.py`` runs the first in a child process: Triton decides between
compiling and interpreting when a module's kernels are defined, so interpreted
kernels cannot share a process with the compiled ones the other tests build.
``experiments/gpu_session.sh`` runs the second before any timing. Exits non-zero on
the first difference; prints what it checked.
"""

import math
import sys

import numpy as np
import torch

from lpfl.config import make_config
from lpfl.engine import run_simulation
from lpfl.quant import block, triton_round


def cases() -> list[tuple[torch.Tensor, str, int]]:
    g = torch.Generator().manual_seed(0)
    wide = torch.randn(6, 5, 3, 3, generator=g) * torch.logspace(-30, 30, 6).view(6, 1, 1, 1)
    tiny = torch.tensor(
        [[-(2.0**-127), 1e-45, 0.0], [-(2.0**-126), 1.5 * 2.0**-127, -0.0], [1e-40, -1e-40, 0.0]]
    )
    return [
        (wide, "BC", 0),  # 3x3 kernels from 1e-30 to 1e30
        (torch.randn(4, 3, 8, 8, generator=g), "tensor", 1),  # a stack of 4 clients
        (torch.randn(10, 20, generator=g), "BC", 0),  # one exponent per element
        (torch.randn(3, 12, generator=g), "B", 1),
        (torch.zeros(5, 9), "BC", 0),  # all-zero blocks: the smallest exponent
        (torch.tensor([[-0.5, 0.25, 3e-39], [1.0, -2.0, 0.0]]), "B", 0),  # -2^k, subnormal
        (tiny, "B", 0),  # subnormal maxima on both sides of 2^-127
        (torch.randn(3, 5000, generator=g) * 1e-3, "B", 0),  # rows longer than one tile
        (torch.randn(2, 9000, generator=g) * 1e4, "tensor", 1),  # two chunks per row
        (torch.randn(3, 4099, generator=g), "B", 0),  # rows that end inside a Philox draw
    ]


def check_values(device: str, word_lengths: tuple[int, ...]) -> int:
    """Every case, word length and rounding: the kernels' values equal the eager ops'."""
    checked = 0
    for bits in word_lengths:
        for rounding in ("stochastic", "nearest"):
            for x, blk, batch_dims in cases():
                rows, block_shape = block._rows(x.to(device), blk, batch_dims)
                seed = block._seed(rows, rounding, torch.Generator(device).manual_seed(bits))
                noise = None if seed is None else triton_round.uniform(seed, rows.shape)
                shapes = (tuple(x.shape), block_shape)
                eager, _ = block._fake_quantize(rows, noise, bits, *shapes)
                fused, peak = triton_round.fake_quantize(rows, seed, bits, *shapes)
                if not torch.equal(eager, fused):
                    sys.exit(f"values differ: {bits} bits, {rounding}, {blk}, {tuple(x.shape)}")
                if not bool((peak < math.inf).all()):
                    sys.exit(f"finite input reported non-finite: {blk}, {tuple(x.shape)}")
                checked += 1
    return checked


def check_noise(device: str) -> None:
    """The kernels' noise is U[0,1) on torch.rand's 2^-24 grid, and differs seed by seed."""
    seeds = [torch.tensor([s], device=device) for s in (7, 2**61 + 5)]
    u, v = (triton_round.uniform(seed, (300, 1000)) for seed in seeds)
    if not torch.equal(u, triton_round.uniform(seeds[0], (300, 1000))):
        sys.exit("noise is not a function of the seed")
    on_grid = torch.equal(u, (u * 2**24).floor() / 2**24)
    if not (bool((u >= 0).all()) and bool((u < 1).all()) and on_grid):
        sys.exit("noise leaves [0, 1) or its 2^-24 grid")
    # 300k draws: the mean is within 0.003 (5 standard errors) of 1/2 and the
    # fraction below 1/4 within 0.004 of 1/4; two seeds share almost no draws.
    if abs(float(u.mean()) - 0.5) > 0.003 or abs(float((u < 0.25).float().mean()) - 0.25) > 0.004:
        sys.exit(f"noise is not uniform: mean {float(u.mean())}")
    if float((u == v).float().mean()) > 0.001:
        sys.exit("two seeds give the same noise")


def check_non_finite_rows(device: str) -> None:
    """A row holding NaN or Inf comes out all NaN with an Inf peak; other rows are untouched."""
    for width in (100, 5000):  # one tile, and the two-pass kernels
        x = torch.randn(4, width, generator=torch.Generator().manual_seed(3)).to(device)
        x[1, 3], x[2, 5] = math.nan, -math.inf
        rows, block_shape = block._rows(x, "B", 0)
        with np.errstate(over="ignore", invalid="ignore"):  # Inf and NaN rows, on purpose
            out, peak = triton_round.fake_quantize(rows, None, 8, tuple(x.shape), block_shape)
        eager, _ = block._fake_quantize(rows, None, 8, tuple(x.shape), block_shape)
        bad = torch.tensor([False, True, True, False], device=device)
        if not (out[bad].isnan().all() and eager[bad].isnan().all()):
            sys.exit(f"a non-finite row came out with finite values (width {width})")
        if not torch.equal(out[~bad], eager[~bad]):
            sys.exit(f"a finite row differs from the eager ops (width {width})")
        if not torch.equal(peak == math.inf, bad):
            sys.exit(f"peaks do not flag exactly the non-finite rows (width {width})")


def check_training(device: str) -> int:
    """An 8-bit round of the vectorized engine, rounding to nearest (the kernels draw their
    own noise): the same model with kernels and eager ops. With stochastic rounding
    the kernels' run is reproducible and differs from the nearest one.

    This runs every rounding role through the dispatch in ``block``: weights and
    gradients, and activations and errors inside the mapped forward and its backward.
    """
    block.TRITON_DEVICES = ("cuda", "cpu")
    calls = []
    kernel = triton_round.fake_quantize
    triton_round.fake_quantize = lambda *args: calls.append(1) or kernel(*args)

    def final(fused: str, rounding: str = "nearest") -> list[tuple[float, float, float]]:
        cfg = make_config(
            dataset="digits", model="mlp", clients=3, participation=1.0, rounds=1, bits=8,
            local_epochs=1, batch_size=128, engine="vectorized", seed=5, device=device,
            fused_quant=fused, rounding=rounding,
        )  # fmt: skip
        result = run_simulation(cfg, progress=False, log=lambda _: None)
        return [(r.test_accuracy, r.test_loss, r.train_loss) for r in result.rounds]

    eager = final("off")
    if final("off") != eager:
        sys.exit(f"inconclusive: two eager runs differ on {device}, not deterministic")
    fused = final("on")
    if fused != eager or not calls:
        sys.exit(f"training differs with the kernels ({len(calls)} kernel calls): {fused}, {eager}")
    stochastic = final("on", "stochastic")
    if final("on", "stochastic") != stochastic or stochastic == fused:
        sys.exit(f"stochastic rounding with the kernels is not reproducible: {stochastic}")
    return len(calls)


if __name__ == "__main__":
    device = sys.argv[1] if len(sys.argv) > 1 else "cpu"
    # Each word length compiles its own kernels on a GPU (about 0.5 s each): there, only
    # the paper's. The interpreter compiles nothing, so the CPU checks them all.
    n = check_values(device, (4, 6, 8) if device == "cuda" else (2, 4, 6, 8, 12, 16))
    check_noise(device)
    check_non_finite_rows(device)
    calls = check_training(device)
    print(
        f"triton kernels match eager rounding on {device}: {n} cases, noise, non-finite rows, "
        f"and a training round ({calls} kernel calls)"
    )
