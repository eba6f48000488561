"""The device-arithmetic switches: fused rounding is bit-identical, TF32/bf16 hold BFP exactly."""

import pytest
import torch

from lpfl.config import make_config
from lpfl.engine import numerics
from lpfl.quant import block_quantize
from lpfl.quant.block import fused_enabled


def _tf32(x: torch.Tensor) -> torch.Tensor:
    """Round float32 to TF32 (10 stored significand bits), to nearest even, as tensor cores do."""
    bits = x.view(torch.int32)
    drop = 13
    half = 1 << (drop - 1)
    odd = (bits >> drop) & 1
    rounded = (bits + half - 1 + odd) & ~((1 << drop) - 1)
    return rounded.view(torch.float32)


def _cases() -> list[tuple[torch.Tensor, str, int]]:
    g = torch.Generator().manual_seed(0)
    wide = torch.randn(6, 5, 3, 3, generator=g) * torch.logspace(-30, 30, 6).view(6, 1, 1, 1)
    return [
        (wide, "BC", 0),
        (torch.randn(4, 3, 8, 8, generator=g), "tensor", 1),  # a stack of 4 clients
        (torch.randn(10, 20, generator=g), "BC", 0),  # one exponent per element
        (torch.randn(3, 12, generator=g), "B", 1),
        (torch.zeros(5, 9), "BC", 0),  # all-zero blocks: the smallest exponent
        (torch.tensor([[-0.5, 0.25, 3e-39], [1.0, -2.0, 0.0]]), "B", 0),  # -2^k, subnormal
    ]


def test_fused_rounding_is_bit_identical_to_eager():
    assert not fused_enabled()
    for rounding in ("stochastic", "nearest"):
        for x, block, batch_dims in _cases():
            args = (x, 8, block, rounding)
            eager = block_quantize(*args, torch.Generator().manual_seed(1), batch_dims)
            with numerics.fused_rounding(True):
                assert fused_enabled()
                fused = block_quantize(*args, torch.Generator().manual_seed(1), batch_dims)
            assert torch.equal(eager, fused), (block, batch_dims, rounding)
    assert not fused_enabled()  # the switch is restored


@pytest.mark.parametrize("bits", [4, 8, 9, 12])
def test_quantized_values_are_exact_in_tf32(bits):
    for x, block, batch_dims in _cases():
        q = block_quantize(
            x, bits, block, "stochastic", torch.Generator().manual_seed(2), batch_dims
        )
        assert torch.equal(_tf32(q), q)


def test_tf32_would_round_finer_formats_and_raw_data():
    x = torch.randn(1000, generator=torch.Generator().manual_seed(3))
    assert not torch.equal(_tf32(x), x)
    q = block_quantize(x, 14, "tensor", "nearest")
    assert not torch.equal(_tf32(q), q)  # 13 significant bits do not fit 11


@pytest.mark.parametrize("bits", [4, 8, 9])
def test_quantized_values_are_exact_in_bfloat16(bits):
    """W <= 9: W-1 significand bits fit bf16's 8, so quantize -> bf16 -> float32 is the identity."""
    for x, block, batch_dims in _cases():
        q = block_quantize(
            x, bits, block, "stochastic", torch.Generator().manual_seed(4), batch_dims
        )
        assert torch.equal(q.bfloat16().float(), q)


def test_tf32_only_where_exact_and_on_cuda():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert numerics.tf32_wanted(make_config(bits=8), cuda)
    assert numerics.tf32_wanted(make_config(bits=12), cuda)
    assert not numerics.tf32_wanted(make_config(bits=13), cuda)
    assert not numerics.tf32_wanted(make_config(bits=32), cuda)
    assert numerics.tf32_wanted(make_config(bits=32, tf32="on"), cuda)
    assert not numerics.tf32_wanted(make_config(bits=8, tf32="off"), cuda)
    assert not numerics.tf32_wanted(make_config(bits=8), cpu)
    wanted = numerics.fused_wanted
    for engine in ("vectorized", "sequential"):
        assert wanted(make_config(rounds=5), cuda, engine, 1000)
        assert not wanted(make_config(rounds=5, fused_quant="off"), cuda, engine, 1000)
        assert wanted(make_config(rounds=5, fused_quant="on"), cpu, engine, 1000)
    # On the CPU only a long low-bit run repays the compile: of the sequential engine,
    # or of the vectorized one once the stacked model outgrows the cache.
    assert not wanted(make_config(rounds=99, bits=8), cpu, "sequential", 1000)
    assert wanted(make_config(rounds=100, bits=8), cpu, "sequential", 1000)
    assert not wanted(make_config(rounds=100, bits=32), cpu, "sequential", 1000)
    big = make_config(rounds=50, bits=8, clients=80, participation=0.125)  # 10 a round
    assert wanted(big, cpu, "vectorized", 100_000)  # 1 M stacked values
    assert not wanted(big, cpu, "vectorized", 99_999)
    assert not wanted(make_config(rounds=49, bits=8), cpu, "vectorized", 10**7)
    assert not wanted(make_config(rounds=500, bits=32), cpu, "vectorized", 10**7)


def test_tensor_cores_switch_is_restored():
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    with numerics.tensor_cores(True):
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    with numerics.tensor_cores(False):
        assert not torch.backends.cudnn.allow_tf32
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before


def test_a_fused_kernel_that_fails_falls_back_to_eager(monkeypatch, caplog):
    from lpfl.quant import block

    def broken(*_args):
        raise RuntimeError("no compiler")

    x = torch.randn(4, 6)
    eager = block_quantize(x, 8, "B", "stochastic", torch.Generator().manual_seed(5))
    monkeypatch.setitem(block._fused, "fn", broken)
    monkeypatch.setitem(block._fused, "on", True)
    out = block_quantize(x, 8, "B", "stochastic", torch.Generator().manual_seed(5))
    assert torch.equal(out, eager)
    assert not fused_enabled()
    assert "fused rounding unavailable" in caplog.text


@pytest.mark.parametrize(
    "engine, min_stack, fused",
    [("sequential", 10**6, True), ("vectorized", 10**6, False), ("vectorized", 1, True)],
)
def test_a_cpu_run_fuses_rounding_only_where_it_repays_the_compile(
    monkeypatch, engine, min_stack, fused
):
    from lpfl.engine import client, run_simulation, vectorized
    from lpfl.quant import block

    monkeypatch.setitem(block._fused, "fn", block._fake_quantize)  # nothing to compile here
    monkeypatch.setattr(numerics, "CPU_FUSED_MIN_ROUNDS", {"sequential": 2, "vectorized": 2})
    monkeypatch.setattr(numerics, "CPU_FUSED_MIN_STACK", min_stack)
    trainer = client.LocalTrainer if engine == "sequential" else vectorized.VectorizedTrainer
    seen = []
    original = trainer.train_round

    def spy(self, *args):
        seen.append(fused_enabled())
        return original(self, *args)

    monkeypatch.setattr(trainer, "train_round", spy)
    cfg = make_config(
        dataset="digits", model="mlp", clients=4, rounds=2, bits=8, engine=engine, device="cpu"
    )
    run_simulation(cfg, progress=False, log=lambda _m: None)
    assert seen == [fused, fused]
    assert not fused_enabled()  # the switch is restored after the run


def test_fused_norm_switch_follows_the_setting_and_is_restored(monkeypatch):
    """A run sets the stacked GroupNorm + ReLU path from --fused-norm around training."""
    from lpfl.cli import build_parser
    from lpfl.models import norm_relu

    seen = []
    with numerics.fused_norm(False):
        seen.append(norm_relu.FUSED["on"])
        with numerics.fused_norm(True):
            seen.append(norm_relu.FUSED["on"])
        seen.append(norm_relu.FUSED["on"])
    assert seen == [False, True, False] and norm_relu.FUSED["on"] is True
    args = build_parser().parse_args(["run", "--no-fused-norm"])
    assert args.fused_norm is False
    assert make_config(fused_norm=False).fused_norm is False and make_config().fused_norm


def test_a_run_trains_under_its_fused_norm_setting(monkeypatch):
    from contextlib import nullcontext

    from lpfl.engine import run_simulation

    asked = []
    monkeypatch.setattr(numerics, "fused_norm", lambda on: asked.append(on) or nullcontext())
    cfg = make_config(dataset="digits", clients=4, participation=0.5, rounds=2, fused_norm=False)
    run_simulation(cfg, progress=False, log=lambda _m: None)
    assert asked == [False, False]  # once per round, around the clients' training
