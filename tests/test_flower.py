"""lpfl on Flower: the client handler, the server round loop and a Flower simulation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from flower_fakes import FakeGrid, node_context, task_identity  # noqa: F401 (fixture)
from flwr.app import Array, ArrayRecord, Message, MessageType, MetricRecord, RecordDict

from lpfl.config import ConfigError, make_config
from lpfl.data import DATASETS, load_dataset, normalize
from lpfl.engine import evaluate, run_simulation, setup
from lpfl.flower import protocol, replies, rounds, settings
from lpfl.flower.client_app import app as client_app
from lpfl.flower.client_app import evaluate_local, train
from lpfl.flower.local_data import load_partition
from lpfl.flower.node_state import OptimizerStore
from lpfl.flower.rounds import run_rounds
from lpfl.flower.settings import FlowerSettings
from lpfl.models import build_model
from lpfl.quant import block_quantize
from lpfl.wire import WireFormat, decode, encode

TINY = dict(dataset="digits", model="mlp", alpha=0.5, batch_size=32, bits=8)


def _initial_model(cfg) -> dict[str, torch.Tensor]:
    spec = DATASETS[cfg.dataset]
    torch.manual_seed(cfg.seed)
    return build_model(cfg.model, spec.channels, spec.size, spec.num_classes).state_dict()


def _train_message(
    cfg, broadcast: bytes, node: int = 7, server_round: int = 1, kind: str = "train"
) -> Message:
    content = RecordDict(
        {
            protocol.MODEL_KEY: protocol.to_record(broadcast),
            protocol.CONFIG_KEY: settings.to_record(cfg, server_round),
        }
    )
    return Message(content, dst_node_id=node, message_type=kind)


def _accuracy_on_partition(cfg, state, partition_id: int, num_partitions: int) -> tuple:
    """What a node holding this partition should report for ``state``: computed here."""
    data = load_partition(cfg, partition_id, num_partitions)
    model = setup.new_model(cfg, torch.device("cpu"))
    model.load_state_dict(state)
    accuracy, loss = evaluate(model, data.x, data.y, lambda x: normalize(x, DATASETS[cfg.dataset]))
    return accuracy, loss, len(data)


def test_settings_round_trip_and_refusals() -> None:
    cfg = make_config(**TINY, out="here", data_dir="there")
    asked = settings.from_record(settings.to_record(cfg, 3, "run-a", 2))
    assert (asked.server_round, asked.run_token, asked.checkpointed) == (3, "run-a", 2)
    assert asked.plan is None
    assert asked.cfg.out is None and asked.cfg.data_dir is None  # host-local settings stay home
    assert asked.cfg == make_config(**TINY)
    cfg, flower = settings.from_run_config({"moving-average": 0, "round-timeout": 5, "bits": 6})
    assert (cfg.moving_average, cfg.bits, flower.round_timeout) == (0.0, 6, 5.0)
    assert flower.client_eval_every == 0  # the nodes evaluate only when asked to
    assert settings.from_run_config({"client-eval-every": 3})[1].client_eval_every == 3
    with pytest.raises(ConfigError, match="--client-eval-every"):
        settings.from_run_config({"client-eval-every": -1})
    assert settings.from_run_config({"resume": True})[1].resume
    with pytest.raises(ConfigError, match="--resume: must be true or false"):
        settings.from_run_config({"resume": "yes"})
    with pytest.raises(ConfigError, match="--bogus"):
        settings.to_run_config({"bogus": 1})
    with pytest.raises(ConfigError, match="--bits"):
        settings.to_run_config({"bits": 1})


def test_the_flower_app_config_lists_every_method_setting_with_lpfl_s_defaults() -> None:
    """``flwr run --run-config`` refuses keys the app does not list, so every setting of
    the methods Flower runs must be there, with ``lpfl run``'s default unless it is one
    of the small-federation settings the app deliberately starts from."""
    import dataclasses
    import tomllib
    from pathlib import Path

    from lpfl.config import RunConfig

    app = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    listed = app["tool"]["flwr"]["app"]["config"]
    defaults = RunConfig()
    own = {settings.ROUND_TIMEOUT_KEY, settings.CLIENT_EVAL_KEY, settings.RESUME_KEY}
    small = {"model", "clients", "participation", "rounds", "alpha", "out"}
    for key, value in listed.items():
        if key in own:
            continue
        name = key.replace("-", "_")
        assert hasattr(defaults, name), f"{key} is not an lpfl setting"
        if name not in small:
            assert value == getattr(defaults, name), key
    prefixes = ("fedgen_", "fedftg_", "prox_", "server_val", "hetero_", "splitmix_")
    methods = [f.name for f in dataclasses.fields(RunConfig) if f.name.startswith(prefixes)]
    assert len(methods) > 20 and all(m.replace("_", "-") in listed for m in methods)


def test_payload_record_refuses_float_tensors() -> None:
    payload = b"\x00\x01lpfl"
    assert protocol.from_record(protocol.to_record(payload)) == payload
    with pytest.raises(ValueError, match="uint8"):
        protocol.from_record(ArrayRecord({"payload": Array(np.zeros(3, np.float32))}))


def test_client_train_replies_wire_bytes_on_the_8_bit_grid() -> None:
    cfg = make_config(**TINY)
    broadcast = encode(_initial_model(cfg), cfg.downlink(), torch.Generator().manual_seed(0))
    context = node_context(7, partition_id=1, num_partitions=4)
    reply = train(_train_message(cfg, broadcast), context)

    array = reply.content[protocol.UPDATE_KEY]["payload"].numpy()
    assert array.dtype == np.uint8
    state = decode(array.tobytes())
    assert array.size == len(encode(state, cfg.uplink()))
    for name, tensor in state.items():
        on_grid = block_quantize(tensor, 8, cfg.weight_block, "nearest")
        assert torch.equal(on_grid, tensor), name
    metrics = reply.content[protocol.METRICS_KEY]
    assert metrics[protocol.NUM_EXAMPLES] > 0 and np.isfinite(metrics[protocol.TRAIN_LOSS])
    assert reply.metadata.src_node_id == 7
    assert "lpfl-optimizer" in context.state  # Adam's moments wait for the next round


def test_client_evaluate_handler_scores_the_model_on_its_own_partition() -> None:
    cfg = make_config(**TINY)
    state = _initial_model(cfg)
    message = _train_message(cfg, encode(state, WireFormat()), kind="evaluate")
    reply = evaluate_local(message, node_context(7, partition_id=2, num_partitions=4))

    metrics = reply.content[protocol.METRICS_KEY]
    got = (metrics[protocol.ACCURACY], metrics[protocol.LOSS], metrics[protocol.NUM_EXAMPLES])
    assert got == pytest.approx(_accuracy_on_partition(cfg, state, 2, 4))
    assert 0 < metrics[protocol.NUM_EXAMPLES] < len(load_dataset("digits")[0])


def test_server_rounds_reject_malformed_silent_and_dead_nodes_and_go_on(tmp_path) -> None:
    cfg = make_config(**TINY, clients=5, participation=1.0, rounds=2, out=str(tmp_path))
    grid = FakeGrid(5, corrupt=2, silent=3, dead=4)
    recorder = run_rounds(grid, cfg, FlowerSettings(round_timeout=5))

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "completed"
    assert [r["uploads"] for r in results["rounds"]] == [3, 3]  # silent and dead sent nothing
    assert [r["rejected"] for r in results["rounds"]] == [3, 3]
    reasons = {(r["client"], r["reason"].split(":")[0]) for r in results["rejections"]}
    # Clients are named by the partition they hold (node n holds n - 1), reasons name the node.
    assert reasons == {
        (2, "no reply within 5 s from node 3"), (1, "truncated payload"), (3, "node 4 failed")
    }  # fmt: skip
    assert all(r["test_accuracy"] is not None for r in results["rounds"])
    broadcast = protocol.from_record(grid.sent[0].content[protocol.MODEL_KEY])
    assert results["rounds"][0]["bytes_down"] == 5 * len(broadcast)
    good = len(encode(_initial_model(cfg), cfg.uplink()))
    assert results["rounds"][0]["bytes_up"] == 2 * good + (good - 7)
    assert recorder.rounds[-1].round == 2
    assert (tmp_path / "metrics.csv").read_text().count("\n") == 3
    assert all(m.metadata.message_type == "train" for m in grid.sent)  # no client-eval-every
    assert all(r["client_accuracy"] is None for r in results["rounds"])


def test_server_has_nodes_evaluate_every_client_eval_every_rounds(tmp_path) -> None:
    cfg = make_config(**TINY, clients=4, participation=0.5, rounds=2, out=str(tmp_path))
    grid = FakeGrid(4)
    run_rounds(grid, cfg, FlowerSettings(round_timeout=5, client_eval_every=2))

    results = json.loads((tmp_path / "results.json").read_text())
    asked = [m for m in grid.sent if m.metadata.message_type == "evaluate"]
    assert sorted(m.metadata.dst_node_id for m in asked) == [1, 2, 3, 4]  # all, round 2 only
    assert results["rounds"][0]["client_accuracy"] is None
    state = decode(protocol.from_record(asked[0].content[protocol.MODEL_KEY]))
    scores = [_accuracy_on_partition(cfg, state, node - 1, 4) for node in range(1, 5)]
    total = sum(n for *_, n in scores)
    expected = sum(acc * n for acc, _, n in scores) / total
    assert results["rounds"][1]["client_accuracy"] == pytest.approx(expected)
    assert results["rounds"][1]["client_loss"] == pytest.approx(
        sum(loss * n for _, loss, n in scores) / total
    )


def test_abavg_on_flower_scores_clients_on_the_server_holdout(tmp_path, monkeypatch) -> None:
    run = dict(TINY, algorithm="abavg", clients=4, participation=1.0, rounds=2)
    cfg = make_config(**run, out=str(tmp_path))
    train_set, _ = load_dataset("digits")
    parts, held = setup.split(cfg, train_set.y, 4)
    assert len(held) and not np.intersect1d(np.concatenate(parts), held).size
    for i, part in enumerate(parts):  # each node loads its part, holdout excluded
        assert torch.equal(load_partition(cfg, i, 4).y, torch.from_numpy(train_set.y[part]))

    scored: list[dict] = []
    make_scorer = setup.scorer

    def spying_scorer(model, x, y, norm):
        assert torch.equal(y, torch.from_numpy(train_set.y[held]))  # never the test set
        score = make_scorer(model, x, y, norm)

        def spy(state: dict) -> float:
            scored.append(state)
            return score(state)

        return spy

    monkeypatch.setattr(rounds.setup, "scorer", spying_scorer)
    run_rounds(FakeGrid(4), cfg, FlowerSettings(round_timeout=5))

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "completed" and results["config"]["algorithm"] == "abavg"
    assert len(scored) == 2 * 4  # every upload of every round was scored
    assert results["rounds"][-1]["test_accuracy"] > 0.2


SUBMODEL_RUNS = {
    "heterofl": dict(algorithm="heterofl", hetero_widths="1,1/2"),
    "splitmix": dict(algorithm="splitmix", hetero_widths="1/2,1/4", splitmix_base="1/4"),
}


@pytest.mark.parametrize("name", SUBMODEL_RUNS)
def test_submodels_on_flower_send_each_node_its_slice_and_match_the_simulator(
    tmp_path, name
) -> None:
    """Each node gets its own sub-model and plan and uploads that sub-model; with every
    node sampled, the traffic per round is the simulator's to the byte."""
    run = dict(TINY, **SUBMODEL_RUNS[name], clients=4, participation=1.0, rounds=3)
    grid = FakeGrid(4)
    results = _run_clean(grid, make_config(**run, out=str(tmp_path)), tmp_path)
    assert all(r["uploads"] == 4 for r in results["rounds"])
    simulated = run_simulation(make_config(**run), progress=False, log=lambda _m: None)
    for key in ("bytes_up", "bytes_down"):
        assert [r[key] for r in results["rounds"]] == [getattr(r, key) for r in simulated.rounds]
    first = grid.sent[:4]
    sizes = [len(protocol.from_record(m.content[protocol.MODEL_KEY])) for m in first]
    assert len(set(sizes)) == 2  # two budgets, two sub-model sizes
    for msg in first:
        config = msg.content[protocol.CONFIG_KEY]
        state = decode(protocol.from_record(msg.content[protocol.MODEL_KEY]))
        sources = dict(item.split("=") for item in config[settings.SOURCES_KEY])
        assert sources.keys() == state.keys()
    assert sum(sizes) == results["rounds"][0]["bytes_down"]
    assert results["rounds"][-1]["test_accuracy"] > 0.2


@pytest.mark.parametrize(
    "method", [dict(algorithm="fedavg"), dict(algorithm="fedgen"), SUBMODEL_RUNS["splitmix"]]
)
def test_flower_is_the_simulator_bit_for_bit_given_the_nodes_random_streams(
    tmp_path, monkeypatch, method
) -> None:
    """The strongest parity check: a Flower run differs from ``lpfl run`` only in where
    each client's random draws come from (a node seeds its own per round). Give the
    simulator's clients those same streams and every round's numbers must be equal:
    sampling, broadcast, plans, training, optimizer state kept across rounds, label
    counts and FedGen's generator in transit, decoding, aggregation and evaluation."""
    from lpfl.engine.client import LocalTrainer
    from lpfl.engine.submodel_trainer import SubModelTrainer
    from lpfl.flower.client_app import _generator

    run = dict(TINY, **method, clients=4, participation=0.5, rounds=4, engine="sequential")
    flower_cfg = make_config(**run, out=str(tmp_path / "flower"))
    run_rounds(FakeGrid(4), flower_cfg, FlowerSettings(round_timeout=5))
    on_flower = json.loads((tmp_path / "flower" / "results.json").read_text())

    server_round = [0]
    for engine in (LocalTrainer, SubModelTrainer):
        counted = engine.train_round

        def train_round(self, *args, counted=counted):
            server_round[0] += 1
            return counted(self, *args)

        monkeypatch.setattr(engine, "train_round", train_round)
    trained = LocalTrainer.train

    def train_like_a_node(self, client, start, data, opt_state):
        self.generator = _generator(flower_cfg, client, server_round[0], data.y.device)
        self.policy.attach(self.model, self.generator)
        return trained(self, client, start, data, opt_state)

    monkeypatch.setattr(LocalTrainer, "train", train_like_a_node)
    simulated = run_simulation(make_config(**run), progress=False, log=lambda _m: None)

    keys = ("clients", "uploads", "bytes_up", "bytes_down", "test_accuracy", "test_loss",
            "train_loss")  # fmt: skip
    got = [{k: r[k] for k in keys} for r in on_flower["rounds"]]
    assert got == [{k: getattr(r, k) for k in keys} for r in simulated.rounds]
    assert len({r["test_accuracy"] for r in got}) > 1  # it trained


def test_a_splitmix_node_keeps_each_base_s_optimizer_state_with_that_base() -> None:
    cfg = make_config(**TINY, **SUBMODEL_RUNS["splitmix"], clients=4)
    algorithm = setup.submodel_algorithm(cfg)
    global_model = algorithm.global_model().state_dict()
    context = node_context(7, partition_id=1, num_partitions=4)  # a 1/4 budget: one base
    trained = set()
    for server_round, base in ((1, 2), (2, 0), (3, 2)):
        plan = algorithm.plan(1)
        sources = {k: k.replace("bases.0.", f"bases.{base}.", 1) for k in plan.sources}
        plan = type(plan)(plan.arch, sources, plan.shapes)
        message = _train_message(cfg, encode(plan.extract(global_model), WireFormat()), 7,
                                 server_round)  # fmt: skip
        settings.add_plan(message.content[protocol.CONFIG_KEY], plan)
        reply = train(message, context)
        assert set(decode(protocol.from_record(reply.content[protocol.UPDATE_KEY]))) == set(
            plan.shapes
        )
        trained |= {g for k, g in sources.items() if "weight" in k or "bias" in k}
        kept = OptimizerStore(context, "", partition_id=1).load(server_round + 1)
        assert set(kept) == trained  # per global tensor: base 2's moments survive round 2
    assert all(int(v["step"]) > 0 for v in kept.values())
    with pytest.raises(ValueError, match="sub-model plan was not sent"):
        train(_train_message(cfg, encode(global_model, WireFormat())), context)


def test_roster_names_nodes_by_partition_and_leaves_out_a_duplicate_until_freed(
    caplog,
) -> None:
    from lpfl.flower.roster import Roster

    grid = FakeGrid(4)
    grid.contexts[2] = node_context(2, 0, 4)  # claims node 1's partition
    grid.contexts[3] = node_context(3, 7, 4)  # outside [0, 4)
    grid.contexts[4] = node_context(4, 3, 5)  # its data cut for a 5-client run
    roster = Roster(4)
    roster.learn(grid, [1, 2, 3, 4], timeout=5)
    assert roster.clients([1, 2, 3, 4]) == {0: 1}
    assert len(grid.queries) == 4
    said = caplog.text
    assert "node 2 left out" in said and "partition 0 is already held" in said
    assert "node 3 left out" in said and "partition 7 is not in [0, 4)" in said
    assert "node 4 left out" in said and "set its num-partitions to the run's clients" in said
    roster.learn(grid, [1, 2, 3, 4], timeout=5)  # the three left out are asked again
    assert len(grid.queries) == 7 and roster.clients([1, 2, 3, 4]) == {0: 1}
    roster.learn(grid, [2, 3], timeout=5)  # node 1 left: its partition is free for node 2
    assert roster.clients([2, 3]) == {0: 2}


def _run_clean(grid: FakeGrid, cfg, tmp_path) -> dict:
    """Run ``cfg`` over ``grid``; its results.json, checked to have run every round with
    no client rejected."""
    run_rounds(grid, cfg, FlowerSettings(round_timeout=5))
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "completed" and not results["rejections"]
    assert len(results["rounds"]) == cfg.rounds
    return results


def _partition_counts(cfg, nodes: int) -> list[tuple[int, ...]]:
    """Each node's samples per class, counted here from the partition it loads."""
    classes = DATASETS[cfg.dataset].num_classes
    return [
        tuple(np.bincount(load_partition(cfg, i, nodes).y.numpy(), minlength=classes).tolist())
        for i in range(nodes)
    ]


def test_fedgen_on_flower_sends_the_trained_generator_and_gets_label_counts(
    tmp_path, monkeypatch
) -> None:
    from lpfl.algorithms import FedGen

    cfg = make_config(**TINY, algorithm="fedgen", clients=3, participation=1.0, rounds=3,
                      out=str(tmp_path))  # fmt: skip
    taught: list[tuple[tuple[int, ...], ...]] = []  # the counts the server's generator learnt from
    loaded: list[int] = []  # trained_rounds of every generator a node loaded
    regularised: list[bool] = []  # whether a node step added FedGen's terms
    train_generator, load, regularizer = (
        FedGen.train_generator, FedGen.load_client_inputs, FedGen.regularizer
    )  # fmt: skip

    def spy_train(self, updates):
        taught.append(tuple(u.label_counts for u in sorted(updates, key=lambda u: u.client)))
        return train_generator(self, updates)

    def spy_load(self, inputs):
        load(self, inputs)
        loaded.append(self.trained_rounds)

    def spy_regularizer(self, *args):
        term = regularizer(self, *args)
        regularised.append(term is not None)
        return term

    monkeypatch.setattr(FedGen, "train_generator", spy_train)
    monkeypatch.setattr(FedGen, "load_client_inputs", spy_load)
    monkeypatch.setattr(FedGen, "regularizer", spy_regularizer)
    grid = FakeGrid(3)
    results = _run_clean(grid, cfg, tmp_path)
    assert taught == [tuple(_partition_counts(cfg, 3))] * 3
    assert loaded == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # each round's nodes got the latest generator
    assert not any(regularised[: len(regularised) // 3]) and all(regularised[-5:])
    sent = [m for m in grid.sent if m.metadata.message_type == "train"]
    inputs = [decode(protocol.from_record(m.content[protocol.INPUTS_KEY])) for m in sent]
    assert [int(i["trained-rounds"]) for i in inputs[::3]] == [0, 1, 2]
    weight = "generator.net.3.weight"
    assert not torch.equal(inputs[3][weight], inputs[6][weight])  # trained in between
    extra = len(protocol.from_record(sent[0].content[protocol.INPUTS_KEY]))
    broadcast = len(protocol.from_record(sent[0].content[protocol.MODEL_KEY]))
    assert all(r["bytes_down"] == 3 * (broadcast + extra) for r in results["rounds"])
    assert extra > 4 * sum(t.numel() for k, t in inputs[0].items() if k.endswith("weight"))


def test_fedftg_on_flower_fine_tunes_with_each_node_s_label_counts(tmp_path, monkeypatch) -> None:
    from lpfl.algorithms import FedFTG

    cfg = make_config(**TINY, algorithm="fedftg", clients=3, participation=1.0, rounds=2,
                      fedftg_iterations=2, out=str(tmp_path))  # fmt: skip
    taught: list[tuple[tuple[int, ...], ...]] = []
    fine_tune = FedFTG.fine_tune

    def spy(self, aggregate, updates):
        taught.append(tuple(u.label_counts for u in sorted(updates, key=lambda u: u.client)))
        tuned = fine_tune(self, aggregate, updates)
        assert any(not torch.equal(tuned[k], aggregate[k]) for k in aggregate)
        return tuned

    monkeypatch.setattr(FedFTG, "fine_tune", spy)
    grid = FakeGrid(3)
    _run_clean(grid, cfg, tmp_path)
    assert taught == [tuple(_partition_counts(cfg, 3))] * 2
    assert all(protocol.INPUTS_KEY not in m.content for m in grid.sent)  # nothing but the model


def test_replies_without_usable_label_counts_are_rejected_and_the_round_goes_on(tmp_path) -> None:
    cfg = make_config(**TINY, algorithm="fedftg", clients=4, participation=1.0, rounds=1,
                      fedftg_iterations=1, out=str(tmp_path))  # fmt: skip
    short = list(_partition_counts(cfg, 4)[2][:-1])
    grid = FakeGrid(4, counts={1: None, 2: [1.5] * 10, 3: short})
    run_rounds(grid, cfg, FlowerSettings(round_timeout=5))

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "completed"
    assert results["rounds"][0]["uploads"] == 3  # node 2's reply never reached the server
    reasons = {r["client"]: r["reason"] for r in results["rejections"]}  # node n: client n - 1
    assert sorted(reasons) == [0, 1, 2]
    assert "sent none" in reasons[0]
    assert reasons[1].startswith("malformed reply") and "list of integers" in reasons[1]
    assert "needs 10 non-negative per-class sample counts" in reasons[2]


@pytest.mark.flower
def test_flower_simulation_learns_and_sends_wire_sized_updates(tmp_path) -> None:
    from flwr.simulation import run_simulation

    from lpfl.flower.server_app import make_server_app

    run = dict(TINY, clients=4, participation=1.0, rounds=3, moving_average=0.5)
    server_app = make_server_app(**run, out=str(tmp_path))
    backend = {"client_resources": {"num_cpus": 1}, "init_args": {"num_cpus": 2}}
    run_simulation(server_app, client_app, num_supernodes=4, backend_config=backend)

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "completed", results.get("error")
    rounds = results["rounds"]
    assert [r["uploads"] for r in rounds] == [4, 4, 4] and not results["rejections"]
    assert rounds[-1]["test_accuracy"] > rounds[0]["test_accuracy"]
    cfg = make_config(**run)
    model = _initial_model(cfg)
    assert all(r["bytes_up"] == 4 * len(encode(model, cfg.uplink())) for r in rounds)
    assert all(r["bytes_down"] == 4 * len(encode(model, cfg.downlink())) for r in rounds)


def test_strategy_aggregation_called_directly(tmp_path) -> None:
    """configure_train -> (grid) -> aggregate_train: the global model becomes the mean of
    the decoded uploads (moving average off, unweighted), a truncated reply is rejected."""
    from lpfl.engine import Recorder
    from lpfl.flower.strategy import LowPrecisionStrategy

    cfg = make_config(**TINY, clients=3, participation=1.0, moving_average=0.0)
    server = setup.server(
        cfg, build_model("mlp", 1, 8, 10), setup.algorithm(cfg), torch.Generator().manual_seed(0)
    )
    recorder = Recorder(None, cfg.to_dict(), 1)
    strategy = LowPrecisionStrategy(
        cfg, server, recorder, lambda _r: None, FlowerSettings(5), "run-a"
    )
    grid = FakeGrid(3, corrupt=3)
    sent = list(strategy.configure_train(1, ArrayRecord(), None, grid))
    assert sorted(m.metadata.dst_node_id for m in sent) == [1, 2, 3]
    answers = grid.send_and_receive(sent, timeout=5)
    arrays, metrics = strategy.aggregate_train(1, answers)

    uploads = [
        decode(protocol.from_record(a.content[protocol.UPDATE_KEY]))
        for a in answers
        if a.metadata.src_node_id != 3
    ]
    for name, value in server.model.items():
        assert torch.allclose(value, (uploads[0][name] + uploads[1][name]) / 2, atol=1e-6)
        assert np.array_equal(arrays[name].numpy(), value.numpy())  # Flower's fp32 copy
    assert (metrics["uploads"], metrics["rejected"]) == (3, 1)  # the truncated one arrived
    assert [(r["client"], r["reason"].split(":")[0]) for r in recorder.rejections] == [
        (2, "truncated payload")  # node 3 holds partition 2
    ]


def test_replies_reach_the_server_in_client_order_whatever_order_they_arrive_in() -> None:
    """Float sums depend on the order of their terms: aggregating in arrival order would
    make a run's numbers depend on network timing."""
    sent = [Message(RecordDict(), dst_node_id=n, message_type=MessageType.TRAIN) for n in (5, 6, 7)]
    for i, msg in enumerate(sent):
        msg.metadata.__dict__["_message_id"] = f"m{i}"
    answers = [
        Message(
            RecordDict(
                {
                    protocol.UPDATE_KEY: protocol.to_record(bytes([i])),
                    protocol.METRICS_KEY: MetricRecord(
                        {protocol.NUM_EXAMPLES: 10 + i, protocol.TRAIN_LOSS: 0.5}
                    ),
                }
            ),
            reply_to=msg,
        )
        for i, msg in enumerate(sent)
    ]
    got, dropped = replies.collect(1, sent, [2, 0, 1], reversed(answers), timeout=5)
    assert [(r.client, r.num_samples) for r in got] == [(0, 11), (1, 12), (2, 10)]
    assert dropped == []
