"""The other FL methods' defining computations, and that they learn at 8 bits."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lpfl.algorithms import FedAvg, FedProx
from lpfl.config import make_config
from lpfl.data import normalize
from lpfl.engine import LocalTrainer, OptimizerSpec, VectorizedTrainer, run_simulation
from lpfl.models import build_model
from lpfl.quant import PrecisionPolicy

sys.path.insert(0, str(Path(__file__).parent))
from test_vectorized import _setup


def test_proximal_gradient_is_two_mu_times_the_drift():
    prox = FedProx(mu=0.1)
    anchor = {"w": torch.tensor([1.0, -2.0, 0.5])}
    prox.begin_local_training(anchor)
    w = torch.tensor([1.5, -2.0, 0.0], requires_grad=True)
    penalty = prox.penalty({"w": w})
    penalty.backward()
    assert penalty.item() == pytest.approx(0.1 * (0.25 + 0.0 + 0.25))
    assert torch.allclose(w.grad, 2 * 0.1 * (w.detach() - anchor["w"]))  # no 1/2: 2μ(w - w_g)
    assert FedAvg().penalty({"w": w}) is None


def test_fedprox_pulls_clients_toward_the_start_and_engines_agree():
    spec, data, start = _setup("mlp", (40, 23))
    drift = {}
    for name, algorithm in (("fedavg", FedAvg()), ("fedprox", FedProx(mu=5.0))):
        results = {}
        for engine in (LocalTrainer, VectorizedTrainer):
            trainer = engine(
                build_model("mlp", 1, 8, 10), PrecisionPolicy.uniform(8, "nearest"), algorithm,
                OptimizerSpec("sgd", 0.05), lambda t: normalize(t, spec), 2, 16,
                torch.Generator().manual_seed(3),
            )  # fmt: skip
            results[engine] = algorithm.aggregate(trainer.train_round([0, 1], start, data))
        a, b = results[LocalTrainer], results[VectorizedTrainer]
        assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-4
        drift[name] = sum(float((a[k] - start[k]).norm()) for k in a)
    assert drift["fedprox"] < 0.8 * drift["fedavg"]


def test_fedprox_learns_digits_at_8_bits():
    cfg = make_config(dataset="digits", model="mlp", clients=10, participation=0.5, alpha=1.0,
                      rounds=15, local_epochs=2, algorithm="fedprox", bits=8)  # fmt: skip
    acc = run_simulation(cfg, progress=False, log=lambda _m: None).summary()["final_accuracy_mean"]
    assert acc > 0.5


def test_abavg_weights_by_server_accuracy_and_they_sum_to_one():
    from lpfl.algorithms import ABAvg, ClientUpdate

    scores = {0: 0.9, 1: 0.3, 2: 0.0}
    abavg = ABAvg(score=lambda state: scores[int(state["id"])])
    states = {k: {"id": torch.tensor(float(k)), "w": torch.full((2,), float(k))} for k in scores}
    updates = [ClientUpdate(k, state, 5, 0.1) for k, state in states.items()]
    agg = abavg.aggregate(updates)
    assert sum(abavg.last_weights) == pytest.approx(1.0)
    assert abavg.last_weights == pytest.approx([0.75, 0.25, 0.0])
    assert torch.allclose(agg["w"], torch.full((2,), 0.25))
    zero = ABAvg(score=lambda state: 0.0)
    zero.aggregate(updates)
    assert zero.last_weights == pytest.approx([1 / 3] * 3)


def test_abavg_scores_on_a_training_holdout_never_the_test_set(monkeypatch):
    import lpfl.engine.loop as loop
    import lpfl.engine.setup as setup
    from lpfl.data import holdout, load_dataset

    train, test = load_dataset("digits")
    pool, held = holdout(train.y, 0.1, seed=0)
    assert len(np.intersect1d(pool, held)) == 0 and len(pool) + len(held) == len(train)
    assert set(np.unique(train.y[held])) == set(range(10)), "stratified"
    seen = []
    real_evaluate = loop.evaluate

    def spy(model, x, y, norm):
        seen.append(len(y))
        return real_evaluate(model, x, y, norm)

    monkeypatch.setattr(loop, "evaluate", spy)  # server-side scoring
    monkeypatch.setattr(setup, "evaluate", spy)  # test-set evaluation
    cfg = make_config(dataset="digits", model="mlp", clients=10, participation=0.5, alpha=1.0,
                      rounds=12, local_epochs=2, algorithm="abavg", bits=8)  # fmt: skip
    rec = run_simulation(cfg, progress=False, log=lambda _m: None)
    assert set(seen) == {len(held), len(test)}, "scores use the holdout; the test set only reports"
    assert rec.summary()["final_accuracy_mean"] > 0.5


def test_cross_entropy_is_torchs_value_for_value_also_under_vmap():
    from torch.func import vmap

    from lpfl.algorithms.base import cross_entropy

    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(4, 32, 10, generator=gen) * 5).requires_grad_()
    targets = torch.randint(0, 10, (4, 32), generator=gen)
    g = torch.randn(4, 32, generator=gen)
    flat = (logits.flatten(0, 1), targets.flatten())
    theirs = torch.nn.functional.cross_entropy(*flat, reduction="none")
    for ours in (cross_entropy(logits, targets), vmap(cross_entropy)(logits, targets)):
        assert torch.equal(ours, theirs.view(4, 32))
        (mine,) = torch.autograd.grad(ours, logits, g)
        (ref,) = torch.autograd.grad(theirs, logits, g.flatten(), retain_graph=True)
        assert torch.equal(mine, ref)
