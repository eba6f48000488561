"""The other FL methods' defining computations, and that they learn at 8 bits."""

from __future__ import annotations

import sys
from pathlib import Path

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
