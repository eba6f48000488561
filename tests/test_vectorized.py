"""The vectorized engine trains each client exactly as the sequential engine does."""

from __future__ import annotations

import itertools
import math
from functools import partial

import pytest
import torch

from lpfl.algorithms import ClientUpdate, FedAvg
from lpfl.config import make_config
from lpfl.data import DATASETS, load_dataset, normalize
from lpfl.engine import (
    ClientData,
    LocalTrainer,
    OptimizerSpec,
    Rejection,
    VectorizedTrainer,
    setup,
    stacked_optim,
)
from lpfl.engine.stacked_optim import StackedAdam, StackedSGD, build_stacked_optimizer
from lpfl.engine.submodel_trainer import SubModelTrainer
from lpfl.models import build_model
from lpfl.quant import PrecisionPolicy


def _setup(model_name: str, sizes: tuple[int, ...]):
    spec = DATASETS["digits"]
    train, _ = load_dataset("digits")
    x, y = torch.from_numpy(train.x), torch.from_numpy(train.y)
    bounds = torch.tensor((0, *sizes)).cumsum(0).tolist()
    data = [ClientData(x[a:b], y[a:b]) for a, b in itertools.pairwise(bounds)]
    torch.manual_seed(0)
    start = build_model(model_name, spec.channels, spec.size, spec.num_classes).state_dict()
    return spec, data, start


ADAM = OptimizerSpec()


def _round(engine, model_name, bits, data, start, spec, optimizer=ADAM, rounds=1):
    policy = PrecisionPolicy.uniform(bits, "nearest")
    model = build_model(model_name, spec.channels, spec.size, spec.num_classes)
    trainer = engine(
        model, policy, FedAvg(), optimizer, lambda t: normalize(t, spec), 2, 16,
        torch.Generator().manual_seed(5),
    )  # fmt: skip
    sampled = list(range(len(data)))
    for _ in range(rounds):
        results = trainer.train_round(sampled, start, data)
    return results


SGD = OptimizerSpec("sgd", 0.05, 0.9)


@pytest.mark.parametrize(
    ("model_name", "optimizer", "bits"),
    [("mlp", OptimizerSpec(), 32), ("mlp", OptimizerSpec(), 8), ("convnet", SGD, 32)],
)
def test_one_round_matches_sequential_with_unequal_clients(model_name, optimizer, bits):
    """Sizes that leave partial batches and clients that run out early (batch 16).

    The ConvNet uses SGD: its conv biases sit right before a per-channel norm, so their
    true gradient is zero and what remains is float noise, which Adam scales up to ±lr
    steps; the engines' different (equally valid) conv summation orders then disagree
    by ~1e-3 on those biases alone. For the same reason the ConvNet is not compared at
    8 bits: a 1e-6 difference from the batched conv flips some nearest roundings of
    the errors, and a flipped rounding is a whole quantum. The MLP's batched matmuls
    are bit-identical, so it is compared at 8 bits, rounding points and all.
    """
    spec, data, start = _setup(model_name, (40, 7, 23, 16))
    seq = _round(LocalTrainer, model_name, bits, data, start, spec, optimizer)
    vec = _round(VectorizedTrainer, model_name, bits, data, start, spec, optimizer)
    assert [u.num_samples for u in vec] == [40, 7, 23, 16]
    for a, b in zip(seq, vec, strict=True):
        assert a.client == b.client and a.train_loss == pytest.approx(b.train_loss, rel=1e-4)
    agg_seq, agg_vec = FedAvg().aggregate(seq), FedAvg().aggregate(vec)
    worst = max(float((agg_seq[k] - agg_vec[k]).abs().max()) for k in agg_seq)
    assert worst <= 1e-4


def test_persistent_optimizer_state_and_sgd_match_sequential():
    spec, data, start = _setup("mlp", (30, 12))
    for opt in (OptimizerSpec(), SGD):
        seq = _round(LocalTrainer, "mlp", 8, data, start, spec, opt, rounds=2)
        vec = _round(VectorizedTrainer, "mlp", 8, data, start, spec, opt, rounds=2)
        a, b = FedAvg().aggregate(seq), FedAvg().aggregate(vec)
        assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-4


def test_optimizer_state_persists_across_changing_participation():
    """Clients 0-2 in rounds of two: each resumes its own state, whichever rounds it sat out."""
    spec, data, start = _setup("mlp", (30, 12, 20))
    policy = PrecisionPolicy.uniform(8, "nearest")
    trainers = {}
    for engine in (LocalTrainer, VectorizedTrainer):
        model = build_model("mlp", spec.channels, spec.size, spec.num_classes)
        trainers[engine] = engine(
            model, policy, FedAvg(), ADAM, lambda t: normalize(t, spec), 1, 16,
            torch.Generator().manual_seed(5),
        )  # fmt: skip
    for sampled in ([2, 0], [1, 2], [0, 1], [0, 2]):
        seq, vec = (
            t.train_round(sampled, start, [data[k] for k in sampled]) for t in trainers.values()
        )
        a, b = FedAvg().aggregate(seq), FedAvg().aggregate(vec)
        assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-4, sampled
    steps = trainers[VectorizedTrainer].saved["step.classifier.weight"]
    assert steps.tolist() == [3 * 2, 2 * 1, 3 * 2]  # rounds taken x batches a round


def test_reset_optimizer_state_matches_sequential_and_keeps_nothing():
    spec, data, start = _setup("mlp", (30, 12))
    results, trainers = [], []
    for engine in (LocalTrainer, VectorizedTrainer):
        model = build_model("mlp", spec.channels, spec.size, spec.num_classes)
        trainer = engine(
            model, PrecisionPolicy.uniform(8, "nearest"), FedAvg(), ADAM,
            lambda t: normalize(t, spec), 1, 16, torch.Generator().manual_seed(5), persist=False,
        )  # fmt: skip
        for _ in range(2):
            out = trainer.train_round([0, 1], start, data)
        results.append(FedAvg().aggregate(out))
        trainers.append(trainer)
    a, b = results
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-4
    assert all(t.saved == {} for t in trainers)


def test_a_checkpoint_with_per_client_states_is_refused_clearly():
    spec, _, _ = _setup("mlp", (1,))
    trainer = VectorizedTrainer(
        build_model("mlp", 1, 8, 10), PrecisionPolicy.uniform(8), FedAvg(), ADAM,
        lambda t: normalize(t, spec), 1, 16, torch.Generator(),
    )  # fmt: skip
    with pytest.raises(ValueError, match="start the run afresh"):
        trainer.load_state_dict({"saved": {3: {"step.w": torch.zeros(())}}})


@pytest.mark.parametrize("sizes", [(40, 7, 23, 16), (5, 0, 2), (32, 32), (1,)])
def test_schedule_cuts_each_clients_permutation_into_padded_batches(sizes):
    """The batch plan, checked against a plain loop over each client's permutation."""
    trainer = VectorizedTrainer(
        build_model("mlp", 1, 8, 10), PrecisionPolicy.uniform(8), FedAvg(), ADAM,
        lambda t: t.float(), 2, 16, torch.Generator().manual_seed(4),
    )  # fmt: skip
    plan = trainer._schedule(list(sizes), torch.device("cpu"))
    gen = torch.Generator().manual_seed(4)  # the same draws, in the same order
    orders = [[torch.randperm(n, generator=gen) for _ in range(2)] for n in sizes]
    steps, offset = max(-(-n // 16) for n in sizes), 0
    for j, n in enumerate(sizes):
        for e, (index, weight) in enumerate(plan):
            assert index.shape == weight.shape == (steps, len(sizes), 16)
            batches = [c for c in orders[j][e].split(16) if len(c)]  # no batch from no data
            for s in range(steps):
                if s < len(batches):
                    real = len(batches[s])
                    expected = offset + batches[s][torch.arange(16) % real]
                    assert torch.equal(index[s, j], expected)
                    assert weight[s, j].tolist() == [1.0] * real + [0.0] * (16 - real)
                else:  # idle: any valid sample, no weight
                    assert not weight[s, j].any() and bool(
                        (index[s, j] == (offset if n else 0)).all()
                    )
        offset += n


def test_inactive_clients_keep_weights_and_optimizer_state():
    params = {"w": torch.ones(3, 2)}
    grads = {"w": torch.full((3, 2), 0.5)}
    active = [0, 2]  # client 1 has no batch this step
    for opt in (StackedAdam(0.1), StackedSGD(0.1, 0.9)):
        state = opt.init_state(params)
        p = {"w": params["w"].clone()}
        opt.bind(p, state)(grads, active)
        assert torch.equal(p["w"][1], torch.ones(2)) and not torch.equal(p["w"][0], torch.ones(2))
        for value in state.values():
            assert not value[1].any(), "an inactive client's optimizer state must not move"
    adam = StackedAdam(0.1)
    state = adam.init_state(params)
    adam.bind({"w": params["w"].clone()}, state)(grads, active)
    assert state["step.w"].tolist() == [1, 0, 1]


@pytest.mark.parametrize("fused", [True, False])  # False: a device without fused kernels
@pytest.mark.parametrize("optimizer", [OptimizerSpec(), SGD])
def test_stacked_step_is_torch_optimizers_step_per_client(optimizer, fused, monkeypatch):
    """Three steps with different clients active equal each client's own torch optimizer."""
    monkeypatch.setattr(stacked_optim, "fused_available", lambda device: fused)
    gen = torch.Generator().manual_seed(3)
    start = {"w": torch.randn(3, 4, 5, generator=gen), "b": torch.randn(3, 5, generator=gen)}
    grads = [{k: torch.randn(v.shape, generator=gen) for k, v in start.items()} for _ in range(3)]
    grads[0]["w"] = grads[0]["w"].transpose(1, 2).contiguous().transpose(1, 2)  # as autograd gives
    schedule = [[0, 1, 2], [0, 2], [2]]
    stacked = build_stacked_optimizer(optimizer.name, optimizer.lr, optimizer.momentum)
    params = {k: v.clone() for k, v in start.items()}
    step = stacked.bind(params, stacked.init_state(params))
    for g, active in zip(grads, schedule, strict=True):
        step(g, active)
    for j in range(3):
        own = [start[k][j].clone() for k in start]
        opt = optimizer.build(own)
        for g, active in zip(grads, schedule, strict=True):
            if j in active:
                for p, k in zip(own, start, strict=True):
                    p.grad = g[k][j].contiguous()  # fused CPU Adam ignores strides
                opt.step()
        for p, k in zip(own, start, strict=True):
            assert torch.equal(p, params[k][j]), (optimizer.name, j, k)


@pytest.mark.parametrize("engine", [VectorizedTrainer, LocalTrainer])
@pytest.mark.parametrize("value", [math.nan, 3e38])  # 3e38 overflows to Inf in the first layer
def test_a_client_that_blows_up_is_rejected_alone(engine, value):
    """Neither engine looks for NaN/Inf at every rounding; both catch it at the end."""
    spec, data, start = _setup("mlp", (20, 20, 20))
    marked = data[1].x.clone()
    marked[:, 0, 0, 0] = 255  # a pixel only client 1 has; its inputs turn to value below
    data[1] = ClientData(marked, data[1].y)
    for d in (data[0], data[2]):
        d.x[:, 0, 0, 0] = 0

    def poison(t):
        x = normalize(t, spec)
        return torch.where(t[:, :1, :1, :1] == 255, torch.full_like(x, value), x)

    trainer = engine(
        build_model("mlp", 1, 8, 10), PrecisionPolicy.uniform(8), FedAvg(), OptimizerSpec(),
        poison, 1, 16, torch.Generator().manual_seed(0),
    )  # fmt: skip
    results = trainer.train_round([0, 1, 2], start, data)
    assert isinstance(results[1], Rejection) and "NaN" in results[1].reason
    saved = trainer.state_dict()["saved"]
    if engine is VectorizedTrainer:  # one row per client
        kept = saved["exp_avg_sq.classifier.weight"]
        assert kept[[0, 2]].any() and not kept[1].any(), "client 1 keeps its (fresh) state"
    else:  # one torch optimizer state per client
        assert sorted(saved) == [0, 2], "client 1 keeps no state"
    assert all(isinstance(results[j], ClientUpdate) for j in (0, 2))
    assert all(torch.isfinite(v).all() for j in (0, 2) for v in results[j].state.values())


def test_sequential_engine_rejects_weights_that_broke_after_the_last_loss(monkeypatch):
    """The loss is finite, but the last update left a NaN weight: still rejected."""
    spec, data, start = _setup("mlp", (20,))
    real = PrecisionPolicy.quantize_weights_

    def breaking(self, params, generator=None):
        real(self, params, generator)
        next(iter(params)).data[0] = math.nan

    monkeypatch.setattr(PrecisionPolicy, "quantize_weights_", breaking)
    trainer = LocalTrainer(
        build_model("mlp", 1, 8, 10), PrecisionPolicy.uniform(8), FedAvg(), OptimizerSpec(),
        partial(normalize, spec=spec), 1, 32, torch.Generator().manual_seed(0),
    )  # fmt: skip
    (result,) = trainer.train_round([0], start, data)  # one batch: one loss, then the break
    assert isinstance(result, Rejection) and "NaN/Inf weights" in result.reason


@pytest.mark.parametrize(
    ("settings", "engine"),
    [
        (dict(model="mlp"), "vectorized"),
        (dict(model="convnet"), "sequential"),  # vmap's grouped convolutions are slow on CPU
        (dict(model="convnet", engine="vectorized"), "vectorized"),  # asked for: obeyed
        (dict(model="mlp", engine="sequential"), "sequential"),
        (dict(model="mlp", algorithm="heterofl", engine="vectorized"), "sequential"),
    ],
)
def test_auto_engine_on_the_cpu(settings, engine):
    cfg = make_config(dataset="digits", device="cpu", **settings)
    model = setup.new_model(cfg, torch.device("cpu"))
    algo = setup.algorithm(cfg)
    assert setup.engine_name(cfg, model, algo) == engine
    trainer = setup.trainer(cfg, model, algo, lambda x: x.float(), torch.Generator())
    expected = {"vectorized": VectorizedTrainer, "sequential": (LocalTrainer, SubModelTrainer)}
    assert isinstance(trainer, expected[engine])
