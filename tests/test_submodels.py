"""HeteroFL and SplitMix: exact slicing, per-slice averaging, the ensemble, and learning."""

from __future__ import annotations

import logging
from fractions import Fraction
from functools import partial

import pytest
import torch
from torch import nn

from lpfl.algorithms import FedAvg, HeteroFL, SplitMix
from lpfl.algorithms.base import ClientUpdate
from lpfl.algorithms.submodels import assign_widths, parse_widths
from lpfl.config import ConfigError, make_config
from lpfl.data import DATASETS, normalize
from lpfl.engine import LocalTrainer, OptimizerSpec, Server, run_simulation, setup
from lpfl.engine.messages import ClientData, ClientReply
from lpfl.engine.submodel_trainer import SubModelTrainer
from lpfl.models import build_model
from lpfl.models.ensemble import Ensemble
from lpfl.quant import PrecisionPolicy
from lpfl.wire import WireFormat, encode

WIDTHS = [Fraction(1), Fraction(1, 2), Fraction(1, 4), Fraction(1, 8)]
convnet = partial(build_model, "convnet", 3, 32, 10)
mlp = partial(build_model, "mlp", 1, 8, 10)


def _random_state(model: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=gen) for k, v in model.state_dict().items()}


def test_slicing_then_embedding_back_reproduces_the_global_model():
    algo = HeteroFL(convnet, WIDTHS)
    g = _random_state(algo.global_model())
    zeros = {k: torch.zeros_like(v) for k, v in g.items()}
    for client, w in enumerate(WIDTHS):
        plan = algo.plan(client)
        local = plan.extract(g)
        convnet(float(w)).load_state_dict(local)  # exactly the width-w model's shapes
        back = algo.aggregate_into(g, [_update(client, local)])  # one holder: its own values
        assert all(torch.equal(back[k], g[k]) for k in g)
        # Into a zero model: the slice lands where it came from and nowhere else.
        placed = algo.aggregate_into(zeros, [_update(client, local)])
        for k in g:
            region = tuple(slice(0, n) for n in plan.shapes[k])
            assert torch.equal(placed[k][region], g[k][region])
            rest = placed[k].clone()
            rest[region] = 0
            assert not rest.any()


def test_a_sliced_convnet_computes_what_the_global_one_does_without_the_other_channels():
    """The slice must be the *same* channels in every layer, classifier columns included."""
    torch.manual_seed(0)
    algo = HeteroFL(convnet, [Fraction(1), Fraction(1, 4)])
    big = algo.global_model()
    state = big.state_dict()
    keep = 32  # channels of the 1/4-width model
    with torch.no_grad():
        for i in (7, 14):  # the second and third convs stop reading the dropped channels
            state[f"features.{i}.weight"][:, keep:] = 0
        feat = state["classifier.weight"].shape[1] // 128  # positions per channel
        state["classifier.weight"][:, keep * feat :] = 0
    big.load_state_dict(state)
    small = convnet(0.25)
    small.load_state_dict(algo.plan(1).extract(state))
    x = torch.randn(5, 3, 32, 32)
    big.eval(), small.eval()
    torch.testing.assert_close(small(x), big(x), rtol=1e-5, atol=1e-5)


def _update(client: int, state: dict, n: int = 10) -> ClientUpdate:
    return ClientUpdate(client, state, n, 0.0)


def test_each_element_is_averaged_over_the_clients_that_hold_it_only():
    algo = HeteroFL(mlp, [Fraction(1), Fraction(1, 2), Fraction(1, 2)])
    g = _random_state(algo.global_model())
    plans = [algo.plan(k) for k in range(3)]
    values = (1.0, 4.0, 7.0)
    updates = [
        _update(k, {n: torch.full(s, v) for n, s in p.shapes.items()})
        for k, (p, v) in enumerate(zip(plans, values, strict=True))
    ]
    new = algo.aggregate_into(g, updates)
    w = new["features.1.weight"]  # (200, 64): clients 1 and 2 hold the first 100 rows
    assert torch.all(w[:100] == 4.0)  # (1 + 4 + 7) / 3
    assert torch.all(w[100:] == 1.0)  # only client 0 holds these: its value, not a third of it
    only_narrow = algo.aggregate_into(g, updates[1:])
    assert torch.all(only_narrow["features.1.weight"][:100] == 5.5)
    # untouched where no one held it:
    assert torch.equal(only_narrow["features.1.weight"][100:], g["features.1.weight"][100:])

    weighted = HeteroFL(mlp, [Fraction(1), Fraction(1, 2)], weighting="weighted")
    p0, p1 = weighted.plan(0), weighted.plan(1)
    ups = [_update(0, {n: torch.full(s, 0.0) for n, s in p0.shapes.items()}, n=30),
           _update(1, {n: torch.full(s, 4.0) for n, s in p1.shapes.items()}, n=10)]  # fmt: skip
    assert torch.all(weighted.aggregate_into(g, ups)["features.1.weight"][:100] == 1.0)


def test_splitmix_ensemble_is_the_mean_of_its_bases_and_trains_each_base_alone():
    torch.manual_seed(0)
    bases = [mlp(0.25) for _ in range(3)]
    ens = Ensemble(bases)
    x = torch.randn(4, 1, 8, 8)
    ens.eval()
    torch.testing.assert_close(ens(x), torch.stack([b(x) for b in bases]).mean(0))
    ens.train()
    per_base = ens(x)
    assert per_base.shape == (4, 3, 10)
    algo = SplitMix(mlp, [Fraction(1)], Fraction(1, 4), seed=0)
    y = torch.tensor([0, 1, 2, 3])
    ce = sum(nn.functional.cross_entropy(per_base[:, i], y) for i in range(3))
    torch.testing.assert_close(algo.client_loss(ens, per_base, y), ce)


def test_splitmix_plans_cover_the_bases_and_average_each_over_its_trainers():
    algo = SplitMix(mlp, [Fraction(1, 2), Fraction(1, 4)], Fraction(1, 4), seed=1)
    assert algo.count == 4 and algo.client_bases == [2, 1]
    g = _random_state(algo.global_model())
    seen = set()
    for _ in range(20):
        algo.begin_round()
        p0, p1 = algo.plan(0), algo.plan(1)
        trained0 = {int(s.split(".")[1]) for s in p0.sources.values()}
        trained1 = {int(s.split(".")[1]) for s in p1.sources.values()}
        seen |= trained0 | trained1
        assert len(trained0) == 2 and len(trained1) == 1
        ups = [_update(0, {n: torch.full(s, 2.0) for n, s in p0.shapes.items()}),
               _update(1, {n: torch.full(s, 6.0) for n, s in p1.shapes.items()})]  # fmt: skip
        new = algo.aggregate_into(g, ups)
        for b in range(4):
            v = new[f"bases.{b}.features.1.weight"]
            expected = {(True, True): 4.0, (True, False): 2.0, (False, True): 6.0}.get(
                (b in trained0, b in trained1)
            )
            if expected is None:
                assert torch.equal(v, g[f"bases.{b}.features.1.weight"])
            else:
                assert torch.all(v == expected)
    assert seen == {0, 1, 2, 3}


def _spec_data(sizes: tuple[int, ...]) -> tuple:
    spec = DATASETS["digits"]
    gen = torch.Generator().manual_seed(0)
    data = [
        ClientData(
            torch.randint(0, 17, (n, 1, 8, 8), generator=gen, dtype=torch.uint8),
            torch.randint(0, 10, (n,), generator=gen),
        )
        for n in sizes
    ]
    return spec, data


def test_heterofl_at_full_width_is_fedavg_exactly():
    spec, data = _spec_data((40, 23))
    norm = partial(normalize, spec=spec)
    policy = PrecisionPolicy.uniform(8, "nearest")
    opt = OptimizerSpec("adam", 1e-2)
    torch.manual_seed(0)
    start = mlp().state_dict()
    models = {}
    for name in ("fedavg", "heterofl"):
        gen = torch.Generator().manual_seed(3)
        if name == "fedavg":
            algo = FedAvg()
            trainer = LocalTrainer(mlp(), policy, algo, opt, norm, 2, 16, gen)
        else:
            algo = HeteroFL(mlp, [Fraction(1), Fraction(1)])
            trainer = SubModelTrainer(algo, policy, opt, norm, 2, 16, gen, torch.device("cpu"))
        server = Server(start, algo, moving_average=0.0)
        for rnd in (1, 2):  # the second round uses the kept optimizer state
            updates = trainer.train_round([0, 1], server.model, data)
            replies = [
                ClientReply(u.client, encode(u.state, WireFormat(8)), 1, 0.0) for u in updates
            ]
            assert server.update(rnd, replies) == []
        models[name] = server.model
    for k, v in models["fedavg"].items():
        assert torch.equal(v, models["heterofl"][k]), k


def test_server_refuses_an_upload_shaped_for_another_width():
    algo = HeteroFL(mlp, [Fraction(1), Fraction(1, 2)])
    model = algo.global_model()
    server = Server(model.state_dict(), algo)
    algo.begin_round()
    plans = [algo.plan(0), algo.plan(1)]
    full = encode(model.state_dict(), WireFormat())
    half = encode(plans[1].extract(model.state_dict()), WireFormat())
    accepted, rejected = server.receive(
        [ClientReply(1, full, 5, 0.0), ClientReply(1, half, 5, 0.0), ClientReply(0, half, 5, 0.0)]
    )
    assert [u.client for u in accepted] == [1]
    assert [r.client for r in rejected] == [1, 0]
    algo.begin_round()  # a new round: last round's plans no longer place uploads
    assert server.receive([ClientReply(1, half, 5, 0.0)])[0] == []
    plans = [algo.plan(0), algo.plan(1)]
    down = server.downlink_bytes([0, 1], server.broadcast())
    assert down == len(full) + len(half)


def test_sub_model_uploads_shrink_by_the_parameter_ratio():
    from lpfl.costs import client_costs

    cfg = make_config(dataset="cifar10", model="convnet", clients=2, algorithm="heterofl",
                      hetero_widths="1,1/2", bits=32)  # fmt: skip
    full, half = client_costs(cfg, torch.device("cpu"), samples=8, measure=False)
    assert (full.params, half.params) == (320010, 86282)
    ratio = half.upload_bytes / full.upload_bytes
    assert ratio == pytest.approx(86282 / 320010, abs=2e-3)
    assert 4 * half.params < half.upload_bytes < 4 * half.params + 4096  # values + header
    low = client_costs(
        make_config(dataset="cifar10", model="convnet", clients=1, bits=8),
        torch.device("cpu"), samples=8, measure=False,
    )[0]  # fmt: skip
    assert low.upload_bytes < full.upload_bytes / 3  # 8-bit mantissas + exponents


def test_engine_selection_is_explicit(caplog):
    cfg = make_config(dataset="digits", model="mlp", clients=4, algorithm="splitmix",
                      hetero_widths="1/2,1/4", splitmix_base="1/4",
                      engine="vectorized")  # fmt: skip
    model = setup.new_model(cfg, torch.device("cpu"))
    assert isinstance(model, Ensemble) and len(model.bases) == 4
    algo = setup.algorithm(cfg)
    with caplog.at_level(logging.WARNING):
        trainer = setup.trainer(cfg, model, algo, lambda t: t.float(), torch.Generator())
    assert isinstance(trainer, SubModelTrainer)
    assert "sequential sub-model engine" in caplog.text  # vectorized was asked for
    assert [int(b / Fraction(1, 4)) for b in (Fraction(1, 2), Fraction(1, 4))] == [2, 1]


def test_submodel_checkpoints_of_the_older_layout_still_resume():
    """Optimizer states were kept by (client, global tensor) before 2026-11-27; such a
    checkpoint loads into today's per-client layout and saves back in it."""
    cfg = make_config(dataset="digits", model="mlp", clients=4, algorithm="heterofl",
                      hetero_widths="1,1/2")  # fmt: skip
    algo = setup.algorithm(cfg)
    model = setup.new_model(cfg, torch.device("cpu"))
    trainer = setup.trainer(cfg, model, algo, lambda t: t.float(), torch.Generator())
    old = {(0, "a.weight"): {"step": 1}, (0, "a.bias"): {"step": 2}, (3, "a.weight"): {"step": 3}}
    trainer.load_state_dict({"saved": old})
    expected = {0: {"a.weight": {"step": 1}, "a.bias": {"step": 2}}, 3: {"a.weight": {"step": 3}}}
    assert trainer.state_dict() == {"saved": expected}
    trainer.load_state_dict(trainer.state_dict())
    assert trainer.state_dict() == {"saved": expected}


def test_width_settings_are_checked():
    assert parse_widths("1/4, 1/8") == (Fraction(1, 4), Fraction(1, 8))
    assert assign_widths(parse_widths("1,1/2"), 5, "cycle", 0) == [1, 0.5, 1, 0.5, 1]
    drawn = assign_widths(parse_widths("1,1/2"), 50, "random", 0)
    assert drawn == assign_widths(parse_widths("1,1/2"), 50, "random", 0)
    assert set(drawn) == {Fraction(1), Fraction(1, 2)}
    bad_settings = [
        dict(hetero_widths="2"),
        dict(hetero_widths="x"),
        dict(splitmix_base="1/3,1/4"),
        dict(splitmix_base="2/5"),
        dict(algorithm="splitmix", hetero_widths="1/16"),
    ]
    for bad in bad_settings:
        with pytest.raises(ConfigError):
            make_config(**bad)


@pytest.mark.parametrize(
    "settings",
    [
        dict(algorithm="heterofl", hetero_widths="1,1/2"),
        dict(algorithm="splitmix", hetero_widths="1,1/2", splitmix_base="1/4"),
    ],
)
def test_sub_model_methods_learn_digits_at_8_bits(settings):
    cfg = make_config(dataset="digits", model="mlp", clients=10, participation=0.5, alpha=1.0,
                      rounds=15, local_epochs=2, bits=8, **settings)  # fmt: skip
    acc = run_simulation(cfg, progress=False, log=lambda _m: None).summary()["final_accuracy_mean"]
    assert acc > 0.5
