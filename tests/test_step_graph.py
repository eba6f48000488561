"""The captured step's bookkeeping: fixed tensors filled each round, full steps replayed,
partial steps run eagerly, a new graph where a round outgrows the old one, and results
that outlive the round. A replay here either reruns the step (``Direct``) or replays its
recorded aten ops with the arguments they had at capture (``graph_emulator.Recorded``),
which is what a CUDA graph does: a tensor looked up anew or a number computed in Python
each round would be frozen, and the results would differ. That a real CUDA graph
computes the eager step's values is checked on a GPU (``cuda_graph_check.py``)."""

from __future__ import annotations

import itertools
from functools import partial

import pytest
import torch
from graph_emulator import Direct, Recorded

from lpfl.algorithms import FedAvg, FedProx
from lpfl.cli import build_parser
from lpfl.config import make_config
from lpfl.data import DATASETS, load_dataset, normalize
from lpfl.engine import ClientData, OptimizerSpec, VectorizedTrainer, setup
from lpfl.engine.step_graph import WARMUP_STEPS, StepGraph
from lpfl.models import build_model
from lpfl.quant import PrecisionPolicy, block

SPEC = DATASETS["digits"]


class Counting(Direct):
    def __init__(self) -> None:
        self.warms = self.replays = 0

    def warm(self, run):
        self.warms += 1
        return run()

    def capture(self, run):
        def replay():
            self.replays += 1
            return run()

        return replay


def _clients(sizes: tuple[int, ...]) -> list[ClientData]:
    train, _ = load_dataset("digits")
    x, y = torch.from_numpy(train.x), torch.from_numpy(train.y)
    bounds = torch.tensor((0, *sizes)).cumsum(0).tolist()
    return [ClientData(x[a:b], y[a:b]) for a, b in itertools.pairwise(bounds)]


def _trainer(graphs, algorithm=None, optimizer=None) -> VectorizedTrainer:
    torch.manual_seed(0)
    model = build_model("mlp", SPEC.channels, SPEC.size, SPEC.num_classes)
    return VectorizedTrainer(
        model, PrecisionPolicy.uniform(8, "stochastic"), algorithm or FedAvg(),
        optimizer or OptimizerSpec(), partial(normalize, spec=SPEC), 1, 16,
        torch.Generator().manual_seed(3), graphs=graphs,
    )  # fmt: skip


def _same(a: list[list], b: list[list]) -> bool:
    """Every round's updates and losses equal, bit for bit."""
    return all(
        u.client == v.client and u.train_loss == v.train_loss
        and all(torch.equal(u.state[k], v.state[k]) for k in u.state)
        for round_a, round_b in zip(a, b, strict=True)
        for u, v in zip(round_a, round_b, strict=True)
    )  # fmt: skip


# Batch 16. Rounds of 3, 3, 4 and 3 full steps (every client has a batch), then partial
# ones. The second round has less data than the first, the third more than the first
# round's room (a new graph), the fourth fewer clients (another).
SIZES = (64, 48, 50, 40, 90, 70)
ROUNDS = [[0, 1, 2], [1, 2, 3], [0, 4, 5], [2, 3]]


def _run(trainer: VectorizedTrainer, data: list[ClientData]) -> list[list]:
    torch.manual_seed(0)
    start = build_model("mlp", SPEC.channels, SPEC.size, SPEC.num_classes).state_dict()
    kept = []
    for sampled in ROUNDS:
        results = trainer.train_round(sampled, start, [data[k] for k in sampled])
        kept.append(results)
        start = trainer.algorithm.aggregate(results)  # FedGen trains its generator here
    return kept


def test_a_captured_step_trains_exactly_as_the_eager_one():
    """Stochastic 8-bit rounding, unequal clients: every update, loss and saved optimizer
    state equals the eager engine's, bit for bit, and the full steps were replayed."""
    data = _clients(SIZES)
    counting = Counting()
    eager, graphed = _trainer(None), _trainer(counting)
    assert _same(_run(eager, data), _run(graphed, data))  # all rounds: results outlive theirs
    assert all(torch.equal(eager.saved[k], graphed.saved[k]) for k in eager.saved)
    assert graphed.graph is not None and graphed.graph.captures == 3  # rounds 1, 3 and 4
    # Each new graph's first full steps warm it up; the others are replays.
    assert counting.warms == 3 * WARMUP_STEPS
    assert counting.replays == 3 + 3 + 4 + 3 - 3 * WARMUP_STEPS


@pytest.fixture
def torch_noise(monkeypatch):
    """Rounding noise from torch's generator, as on CUDA (where the kernels draw it): the
    CPU's numpy noise for large tensors is made outside aten, and a replay of recorded
    aten ops would keep it, as a CUDA graph would keep any noise made on the host."""
    monkeypatch.setattr(block, "_NUMPY_NOISE_MIN", 1 << 62)


def _recorded(algorithm=None, optimizer=None) -> tuple[VectorizedTrainer, Recorded]:
    trainer = _trainer(None, algorithm, optimizer)
    recorded = Recorded(trainer.generator)
    trainer.graph = StepGraph(trainer._step, trainer.stacked_optimizer, recorded)
    return trainer, recorded


@pytest.mark.parametrize(
    ("algorithm", "optimizer"),
    [(FedAvg, None), (lambda: FedProx(mu=0.1), None), (FedAvg, OptimizerSpec("sgd", 0.05, 0.9))],
    ids=["fedavg-adam", "fedprox", "sgd-momentum"],
)
def test_replayed_ops_train_exactly_as_the_eager_step(torch_noise, algorithm, optimizer):
    """The steps the engine captures, replayed as a CUDA graph would replay them."""
    data = _clients(SIZES)
    graphed, recorded = _recorded(algorithm(), optimizer)
    assert _same(_run(_trainer(None, algorithm(), optimizer), data), _run(graphed, data))
    assert recorded.replays == 3 + 3 + 4 + 3 - 3 * WARMUP_STEPS


def test_replays_catch_a_step_that_looks_up_a_replaced_tensor(torch_noise, monkeypatch):
    """The emulation can fail: FedProx as it was, with a new anchor every round, trains
    on the first round's anchor when replayed."""

    def new_anchor(self, start):
        self.anchor = {k: v.detach().float().clone() for k, v in start.items()}

    monkeypatch.setattr(FedProx, "begin_local_training", new_anchor)
    data = _clients(SIZES)
    graphed, _ = _recorded(FedProx(mu=0.1))
    assert not _same(_run(_trainer(None, FedProx(mu=0.1)), data), _run(graphed, data))


class Refusing(Direct):
    """A capture that fails, as one of a step with a host sync fails on a GPU."""

    def capture(self, run):
        raise RuntimeError("operation not permitted when stream is capturing")


def test_a_step_that_cannot_be_captured_trains_on_eagerly(caplog):
    """An algorithm or optimizer whose step no GPU check has captured must not end the
    run: it is told once, and trains exactly as without graphs."""
    data = _clients(SIZES)
    eager, refused = _trainer(None), _trainer(Refusing())
    with caplog.at_level("WARNING", logger="lpfl.engine.step_graph"):
        a, b = _run(eager, data), _run(refused, data)
    assert _same(a, b)
    assert refused.graph is not None and refused.graph.captures == 0
    warnings = [r for r in caplog.records if "cannot be captured" in r.getMessage()]
    assert len(warnings) == 1 and "stream is capturing" in warnings[0].getMessage()


def test_each_rounds_results_are_its_own():
    """The graph's fixed weights take the next round's clients: an update handed out
    must not change when they do."""
    data = _clients(SIZES)
    trainer = _trainer(Direct())
    start = trainer.model.state_dict()
    first = trainer.train_round([0, 1, 2], start, [data[k] for k in (0, 1, 2)])
    copies = [{k: v.clone() for k, v in u.state.items()} for u in first]
    trainer.train_round([1, 2, 3], start, [data[k] for k in (1, 2, 3)])
    for u, copy in zip(first, copies, strict=True):
        assert all(torch.equal(u.state[k], copy[k]) for k in copy)


def test_fedprox_keeps_its_anchor_in_the_same_tensors():
    """A captured FedProx step reads the anchor at fixed addresses: a new round's start
    must land in those tensors."""
    prox = FedProx(mu=0.1)
    first = {"w": torch.ones(3), "b": torch.zeros(2)}
    prox.begin_local_training(first)
    tensors = dict(prox.anchor)
    prox.begin_local_training({"w": torch.full((3,), 2.0), "b": torch.ones(2)})
    assert all(prox.anchor[k] is tensors[k] for k in tensors)
    assert torch.equal(prox.anchor["w"], torch.full((3,), 2.0))
    assert torch.equal(first["w"], torch.ones(3))  # the anchor never aliased the start


def _fedgen():
    cfg = make_config(dataset="digits", model="mlp", algorithm="fedgen", bits=8)
    return setup.algorithm(cfg, device=torch.device("cpu"))


def test_fedgen_steps_replay_with_each_rounds_coefficients(torch_noise):
    """FedGen's clients draw generated features once the generator has trained, with
    weights that decay every round: replayed steps must see each round's, and the step
    is captured anew when the drawing starts (``graph_key``)."""
    data = _clients(SIZES)
    graphed, recorded = _recorded(_fedgen())
    eager = _run(_trainer(None, _fedgen()), data)
    assert _same(eager, _run(graphed, data)) and recorded.replays > 0
    # Rounds 1 (no drawing yet), 2 (drawing), 3 (more data) and 4 (fewer clients).
    assert graphed.graph is not None and graphed.graph.captures == 4
    assert graphed.algorithm.trained_rounds == 4


def test_fedgen_coefficients_follow_the_rounds_in_one_tensor():
    fedgen = _fedgen()
    weights = fedgen.client_weights
    for rounds in (0, 1, 3):
        fedgen.trained_rounds = rounds
        assert fedgen.client_weights is weights
        assert weights.tolist() == pytest.approx(fedgen.coefficients())


@pytest.mark.parametrize(
    ("flag", "value"), [(["--cuda-graph"], True), (["--no-cuda-graph"], False), ([], None)]
)
def test_the_setting_reaches_a_trainer_only_on_cuda(flag, value):
    args = build_parser().parse_args(["run", *flag])
    assert args.cuda_graph is value  # None: the config's default
    cfg = make_config(dataset="digits", cuda_graph=True)
    model = setup.new_model(cfg, torch.device("cpu"))
    cpu = torch.Generator()
    trainer = setup.trainer(cfg, model, FedAvg(), lambda t: t.float(), cpu, "vectorized")
    assert trainer.graph is None  # a CPU generator: nothing to capture with
