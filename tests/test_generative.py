"""FedGen and FedFTG: their defining computations on tiny tensors, and short digits runs."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lpfl.algorithms import ClientUpdate, FedAvg, FedFTG, FedFTGOptions, FedGen, FedGenOptions
from lpfl.algorithms.fedftg import stack_states
from lpfl.config import ConfigError, make_config
from lpfl.data import normalize
from lpfl.engine import LocalTrainer, OptimizerSpec, VectorizedTrainer, run_simulation
from lpfl.models import build_model, feature_dim, head_forward
from lpfl.quant import BlockFormat, PrecisionPolicy, quantize
from lpfl.wire import WireFormat, decode, encode

sys.path.insert(0, str(Path(__file__).parent))
from test_vectorized import _setup

FEATURES, CLASSES = 6, 4
ACT8 = BlockFormat(8, "tensor", "stochastic")


def _head_update(client: int, counts: tuple[int, ...], seed: int) -> ClientUpdate:
    g = torch.Generator().manual_seed(seed)
    state = {
        "classifier.weight": torch.randn(CLASSES, FEATURES, generator=g),
        "classifier.bias": torch.randn(CLASSES, generator=g),
    }
    return ClientUpdate(client, state, sum(counts), 0.0, counts)


def _fedgen(**options) -> FedGen:
    return FedGen(FEATURES, CLASSES, ACT8, FedGenOptions(**options), seed=1)


def test_fedgen_generator_loss_falls_and_follows_each_clients_head():
    # Client 0 holds classes 0-1 only, client 1 classes 2-3 only: the generator must learn
    # features that *client 0's* head calls 0 or 1 and *client 1's* head calls 2 or 3.
    updates = [_head_update(0, (50, 50, 0, 0), 10), _head_update(1, (0, 0, 50, 50), 11)]
    fedgen = _fedgen(lr=1e-2, steps=40)
    fedgen.train_generator(updates)
    first = fedgen.last_generator_losses
    for _ in range(4):
        fedgen.train_generator(updates)
    last = fedgen.last_generator_losses
    assert sum(last[-10:]) / 10 < 0.3 * sum(first[:10]) / 10, (first[:10], last[-10:])

    fedgen.generator.eval()
    y = torch.arange(CLASSES).repeat_interleave(50)
    with torch.no_grad():
        features = fedgen.generator(y, torch.randn(len(y), fedgen.options.noise_dim))
    for update, classes in zip(updates, ((0, 1), (2, 3)), strict=True):
        w, b = update.state["classifier.weight"], update.state["classifier.bias"]
        mine = torch.isin(y, torch.tensor(classes))
        predicted = (features[mine] @ w.T + b).argmax(1)
        assert (predicted == y[mine]).float().mean() > 0.9


def test_fedgen_client_regulariser_is_off_until_trained_then_decays():
    fedgen = _fedgen(alpha=0.1, beta=2.5, decay=0.5)
    gen = torch.Generator().manual_seed(0)
    targets = torch.tensor([0, 1, 1, 0, 1])
    counts = torch.tensor([3, 2, 0, 0])
    assert fedgen.coefficients() == (0.0, 0.0)
    assert fedgen.draw(targets, counts, gen) == {}, "no regulariser before any generator training"

    updates = [_head_update(0, (3, 2, 0, 0), 3), _head_update(1, (1, 1, 1, 1), 4)]
    head = torch.nn.Linear(FEATURES, CLASSES)
    logits = torch.randn(len(targets), CLASSES)
    coefficients, values = [], []
    for _ in range(3):
        fedgen.train_generator(updates)
        drawn = fedgen.draw(targets, counts, gen)
        assert set(drawn["labels"].tolist()) <= {0, 1}, "labels come from the client's classes"
        for key in ("same", "sampled"):  # rounded like activations: already on the 8-bit grid
            on_grid = quantize(drawn[key], BlockFormat(8, "tensor", "nearest"))
            assert torch.equal(on_grid, drawn[key])
        reg = fedgen.regularizer(head, logits, targets, None, drawn)
        assert reg is not None and reg.item() > 0
        reg.backward()
        assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
        head.zero_grad()
        coefficients.append(fedgen.coefficients())
        values.append(reg.item())
    assert coefficients == [(0.05, 1.25), (0.025, 0.625), (0.0125, 0.3125)]
    assert values[0] > values[1] > values[2]
    fedgen.trained_rounds = 40
    assert fedgen.coefficients() == (1e-4, 1e-4), "floored, never zero"


def test_fedgen_clients_regularise_alike_from_the_generator_as_sent():
    """A client's FedGen loaded from ``client_inputs`` draws what the server's own would."""
    server = _fedgen(lr=1e-2, steps=3)
    server.train_generator([_head_update(0, (3, 2, 0, 0), 3), _head_update(1, (1, 1, 1, 1), 4)])
    client = _fedgen()
    assert client.draw(torch.tensor([0, 1]), torch.tensor([1, 1, 0, 0]), torch.Generator()) == {}
    client.load_client_inputs(decode(encode(server.client_inputs(), WireFormat())))
    assert client.trained_rounds == 1 and client.coefficients() == server.coefficients()
    targets, counts = torch.tensor([0, 1, 1, 3]), torch.tensor([2, 1, 0, 1])
    drawn = [f.draw(targets, counts, torch.Generator().manual_seed(5)) for f in (server, client)]
    assert drawn[0].keys() == drawn[1].keys() == {"same", "sampled", "labels"}
    assert all(torch.equal(drawn[0][k], drawn[1][k]) for k in drawn[0])
    with pytest.raises(ValueError, match="need the generator"):
        client.load_client_inputs({})
    with pytest.raises(ValueError, match="take nothing but the model"):
        FedAvg().load_client_inputs(server.client_inputs())


@pytest.mark.parametrize(
    ("counts", "problem"),
    [(None, "sent none"), ((4, 0, 0), "needs 4 non-negative"), ((5, -1, 0, 0), "needs 4"),
     ((1, 1, 1, 0), "sum to 3, not its 4 samples")],
)  # fmt: skip
def test_generative_methods_name_what_is_wrong_with_a_client_s_label_counts(counts, problem):
    update = ClientUpdate(0, {}, 4, 0.0, counts)
    fedftg = FedFTG(build_model("mlp", 1, 8, CLASSES), 1, 8, CLASSES, FedFTGOptions(noise_dim=4))
    for algorithm in (_fedgen(), fedftg):
        assert problem in algorithm.check_update(update)
        assert algorithm.check_update(replace(update, label_counts=(1, 1, 1, 1))) is None
    assert FedAvg().check_update(update) is None


def test_fedgen_downlink_counts_the_generator_sent_to_each_client():
    cfg = make_config(**SHORT, rounds=2, algorithm="fedgen", bits=8)
    recorder = run_simulation(cfg, progress=False, log=lambda _m: None)
    model = build_model("mlp", 1, 8, 10).state_dict()
    fedgen = FedGen(feature_dim(build_model("mlp", 1, 8, 10)), 10, ACT8)
    per_client = len(encode(model, cfg.downlink())) + len(
        encode(fedgen.client_inputs(), WireFormat())
    )
    assert [r.bytes_down for r in recorder.rounds] == [5 * per_client] * 2


def test_fedgen_regulariser_is_the_same_in_both_engines():
    """One client with full batches (so both engines draw the same), full precision."""
    spec, data, start = _setup("mlp", (32,))
    model = build_model("mlp", 1, 8, 10)
    fedgen = FedGen(200, 10, BlockFormat(32), FedGenOptions(beta=5.0, alpha=5.0), seed=2)
    heads = [start | {"classifier.weight": torch.randn(10, 200)} for _ in range(2)]
    fedgen.train_generator([ClientUpdate(k, h, 50, 0.0, (5,) * 10) for k, h in enumerate(heads)])
    results = {}
    for name, algorithm in (("fedavg", FedAvg()), ("fedgen", fedgen)):
        for engine in (LocalTrainer, VectorizedTrainer):
            trainer = engine(
                model, PrecisionPolicy.uniform(32, "nearest"), algorithm,
                OptimizerSpec("sgd", 0.05), lambda t: normalize(t, spec), 1, 16,
                torch.Generator().manual_seed(3),
            )  # fmt: skip
            (update,) = trainer.train_round([0], start, data)
            results[name, engine] = update.state
    a, b = results["fedgen", LocalTrainer], results["fedgen", VectorizedTrainer]
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-5
    plain = results["fedavg", LocalTrainer]
    assert max(float((a[k] - plain[k]).abs().max()) for k in a) > 1e-3, "the regulariser acts"


def _ftg_updates(model_seed: int, counts: tuple[int, ...]) -> ClientUpdate:
    torch.manual_seed(model_seed)
    state = build_model("mlp", 1, 8, CLASSES).state_dict()
    return ClientUpdate(model_seed, state, sum(counts), 0.0, counts)


def test_fedftg_distillation_moves_the_global_model_toward_the_ensemble():
    updates = [_ftg_updates(1, (40, 40, 0, 0)), _ftg_updates(2, (0, 10, 40, 40))]
    options = FedFTGOptions(iterations=1, generator_steps=2, distill_steps=30, lr=1e-2,
                            batch_size=16, noise_dim=8)  # fmt: skip
    fedftg = FedFTG(build_model("mlp", 1, 8, CLASSES), 1, 8, CLASSES, options, seed=0)
    aggregate = FedAvg().aggregate(updates)
    tuned = fedftg.fine_tune(aggregate, updates)
    losses = fedftg.last_distill_losses
    assert len(losses) == 30
    assert losses[-1] < 0.5 * losses[0], losses
    assert any(not torch.equal(tuned[k], aggregate[k]) for k in aggregate)

    # The ensemble weighs each client by its share of the sample's label: a label only
    # client 0 holds is client 0's prediction alone.
    x = torch.randn(3, 1, 8, 8)
    alpha = torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.5, 1.0]])
    ensemble, logits = fedftg._ensemble(x, alpha, stack_states(updates, torch.device("cpu")))
    assert torch.allclose(ensemble.sum(1), torch.ones(3))
    assert torch.allclose(ensemble[0], logits[0, 0].softmax(-1))
    assert torch.allclose(ensemble[2], logits[1, 2].softmax(-1))


def test_fedftg_without_label_counts_is_refused():
    update = _ftg_updates(1, (1, 1, 1, 1))
    bare = ClientUpdate(update.client, update.state, 4, 0.0)
    fedftg = FedFTG(build_model("mlp", 1, 8, CLASSES), 1, 8, CLASSES, FedFTGOptions(noise_dim=4))
    with pytest.raises(ValueError, match="per-class sample counts"):
        fedftg.aggregate([bare])


SHORT = dict(dataset="digits", model="mlp", clients=10, participation=0.5, alpha=1.0,
             local_epochs=2, fedftg_iterations=3)  # fmt: skip


@pytest.mark.parametrize("algorithm", ["fedgen", "fedftg"])
def test_learns_digits_at_8_bits(algorithm):
    cfg = make_config(**SHORT, rounds=10, algorithm=algorithm, bits=8)
    acc = run_simulation(cfg, progress=False, log=lambda _m: None).summary()["final_accuracy_mean"]
    assert acc > 0.5


@pytest.mark.parametrize("algorithm", ["fedgen", "fedftg"])
@pytest.mark.parametrize(("bits", "moving_average"), [(32, 0.0), (4, 0.9)])
def test_runs_at_any_precision_with_or_without_the_average(algorithm, bits, moving_average):
    cfg = make_config(**SHORT, rounds=2, algorithm=algorithm, bits=bits,
                      moving_average=moving_average, engine="sequential")  # fmt: skip
    recorder = run_simulation(cfg, progress=False, log=lambda _m: None)
    assert recorder.status == "completed" and len(recorder.rounds) == 2
    assert all(0 <= r.test_accuracy <= 1 for r in recorder.rounds)


def test_fedgen_clients_use_the_generator_the_server_trains_with_the_average_on(monkeypatch):
    cfg = make_config(**SHORT, rounds=3, algorithm="fedgen", moving_average=0.9)
    seen = []
    real_draw = FedGen.draw

    def spy(self, targets, label_counts, generator):
        drawn = real_draw(self, targets, label_counts, generator)
        seen.append((self.trained_rounds, bool(drawn)))
        return drawn

    monkeypatch.setattr(FedGen, "draw", spy)
    run_simulation(cfg, progress=False, log=lambda _m: None)
    assert {t for t, _ in seen} == {0, 1, 2}
    assert all(active == (t > 0) for t, active in seen), "regularised from round 2 on"


@pytest.mark.parametrize(
    ("flag", "value"),
    [("fedgen_decay", 0.0), ("fedgen_batch_size", 1), ("fedftg_iterations", 0),
     ("fedftg_lr", 0.0), ("fedgen_alpha", -1.0)],
)  # fmt: skip
def test_bad_settings_are_refused(flag, value):
    with pytest.raises(ConfigError, match="--" + flag.replace("_", "-")):
        make_config(algorithm="fedgen", **{flag: value})


def test_options_refuse_bad_values_outside_the_cli_too():
    with pytest.raises(ValueError, match=r"FedGenOptions\.decay"):
        _fedgen(decay=0.0)
    with pytest.raises(ValueError, match=r"FedFTGOptions\.batch_size"):
        FedFTGOptions(batch_size=1).validate()


@pytest.mark.parametrize("name", ["mlp", "convnet", "resnet8"])
def test_head_forward_matches_the_models_forward(name):
    model = build_model(name, 1, 8, 10)
    PrecisionPolicy.uniform(8, "nearest").attach(model)
    x = torch.randn(2, 1, 8, 8)
    params = dict(model.named_parameters())
    captured = {}
    model.classifier.register_forward_hook(lambda _m, i, _o: captured.setdefault("f", i[0]))
    logits = model(x)
    assert torch.equal(head_forward(model, captured["f"]), logits), "same rounding"
    assert torch.equal(head_forward(model, captured["f"], params), logits)


@pytest.mark.parametrize("batched", [True, False])  # a GPU's way; a ConvNet on the CPU
@pytest.mark.parametrize("model", ["convnet", "resnet8"])  # GroupNorm; BatchNorm, training
def test_fedftg_teachers_give_each_its_own_logits_batched_or_not(model, batched):
    """Each teacher's logits as its own forward gives them; the uploads stay untouched
    though training-mode BatchNorm moves the teachers' running statistics."""
    torch.manual_seed(0)
    net = build_model(model, 3, 16, CLASSES)
    states = [{k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v.clone()
               for k, v in net.state_dict().items()} for _ in range(3)]  # fmt: skip
    updates = [ClientUpdate(i, s, 10, 0.0, (5, 5, 0, 0)) for i, s in enumerate(states)]
    before = [{k: v.clone() for k, v in s.items()} for s in states]
    fedftg = FedFTG(net, 3, 16, CLASSES, FedFTGOptions(noise_dim=4))
    assert not fedftg.batched, "on the CPU a convolutional model's teachers run one by one"
    fedftg.batched = batched
    net.train()
    x = torch.randn(4, 3, 16, 16)
    alpha = torch.full((3, 4), 1 / 3)
    _, logits = fedftg._ensemble(x, alpha, stack_states(updates, torch.device("cpu")))
    for k, state in enumerate(states):
        alone = torch.func.functional_call(net, {n: t.clone() for n, t in state.items()}, (x,))
        torch.testing.assert_close(logits[k], alone, rtol=1e-4, atol=1e-5)
    assert all(torch.equal(s[k], b[k]) for s, b in zip(states, before, strict=True) for k in s)
