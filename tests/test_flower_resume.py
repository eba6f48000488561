"""A Flower run that dies continues where it stopped: the server from its checkpoint,
the nodes from the optimizer states they keep on disk, and the rounds come out as an
uninterrupted run's, bit for bit."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from flower_fakes import FakeGrid, PowerCut, node_context, task_identity  # noqa: F401 (fixture)

from lpfl.config import ConfigError, make_config
from lpfl.engine import checkpoint, run_simulation
from lpfl.flower.node_state import OptimizerStore
from lpfl.flower.rounds import run_rounds
from lpfl.flower.settings import FlowerSettings

RUN = dict(dataset="digits", model="mlp", alpha=0.5, batch_size=32, bits=8, clients=4,
           participation=0.5, rounds=5, checkpoint_every=2)  # fmt: skip
METHODS = {
    "fedavg": {},
    "fedgen": dict(algorithm="fedgen"),  # the server's generator is part of its state
    "splitmix": dict(algorithm="splitmix", hetero_widths="1/2,1/4", splitmix_base="1/4"),
}
KEYS = ("clients", "uploads", "bytes_up", "bytes_down", "test_accuracy", "test_loss",
        "train_loss")  # fmt: skip


def _rounds(out: Path) -> list[dict]:
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "completed"
    return [{k: r[k] for k in KEYS} | {"round": r["round"]} for r in results["rounds"]]


def _crash_then_resume(out: Path, run: dict, state_dir: Path | None) -> None:
    """Run until the server dies in round 4 (after the nodes trained it; the last
    checkpoint holds round 2), then resume on fresh nodes that keep only their disk."""
    cfg = make_config(**run, out=str(out))
    with pytest.raises(PowerCut):
        run_rounds(FakeGrid(4, state_dir=state_dir, crash_in_round=4), cfg, FlowerSettings(5))
    assert json.loads((out / "results.json").read_text())["status"] == "failed"
    assert torch.load(out / checkpoint.FILENAME, weights_only=False)["round"] == 2
    run_rounds(FakeGrid(4, state_dir=state_dir), cfg, FlowerSettings(5, resume=True))


@pytest.mark.parametrize("method", METHODS)
def test_a_resumed_flower_run_gives_the_uninterrupted_run_s_rounds(tmp_path, method) -> None:
    run = dict(RUN, **METHODS[method])
    whole = tmp_path / "whole"
    run_rounds(FakeGrid(4, state_dir=tmp_path / "nodes-whole"), make_config(**run, out=str(whole)),
               FlowerSettings(5))  # fmt: skip
    resumed = tmp_path / "resumed"
    _crash_then_resume(resumed, run, tmp_path / "nodes-resumed")

    assert _rounds(resumed) == _rounds(whole)  # rounds 3 and 4 replayed, from stale states
    assert [r["round"] for r in _rounds(resumed)] == [1, 2, 3, 4, 5]
    results = json.loads((resumed / "results.json").read_text())
    assert [s["first_round"] for s in results["sessions"]] == [1, 3]
    assert not (resumed / checkpoint.FILENAME).exists()  # a finished run needs none


def test_resumed_nodes_without_a_state_dir_restart_their_optimizer_and_are_named(
    tmp_path, caplog
) -> None:
    whole = tmp_path / "whole"
    run_rounds(FakeGrid(4), make_config(**RUN, out=str(whole)), FlowerSettings(5))
    resumed = tmp_path / "resumed"
    with caplog.at_level(logging.WARNING, logger="lpfl.flower.strategy"):
        _crash_then_resume(resumed, RUN, state_dir=None)
    assert "keep no optimizer state on disk" in caplog.text
    got, expected = _rounds(resumed), _rounds(whole)
    assert got[:2] == expected[:2]  # before the checkpoint: the same run
    assert [r["test_accuracy"] for r in got[2:]] != [r["test_accuracy"] for r in expected[2:]]


def test_resume_refuses_what_is_not_this_run_s_checkpoint(tmp_path) -> None:
    out = tmp_path / "run"
    cfg = make_config(**RUN, out=str(out))
    with pytest.raises(ConfigError, match="resume: no checkpoint to resume from"):
        run_rounds(FakeGrid(4), cfg, FlowerSettings(5, resume=True))
    with pytest.raises(PowerCut):
        run_rounds(FakeGrid(4, crash_in_round=3), cfg, FlowerSettings(5))
    with pytest.raises(ConfigError, match=r"out: .* unfinished run; continue it with `flwr run`"):
        run_rounds(FakeGrid(4), cfg, FlowerSettings(5))  # a fresh start would write over it
    changed = make_config(**dict(RUN, bits=6), out=str(out))
    with pytest.raises(ConfigError, match=r"differs .*bits = 6 here, 8 there"):
        run_rounds(FakeGrid(4), changed, FlowerSettings(5, resume=True))
    with pytest.raises(ConfigError, match="made by the flower runtime; continue it with `flwr"):
        run_simulation(cfg, progress=False, log=lambda _m: None, resume=True)

    simulated = tmp_path / "simulated"
    sim_cfg = make_config(**RUN, out=str(simulated))
    run_simulation(sim_cfg, progress=False, log=lambda _m: None)
    checkpoint.save(simulated, {"round": 2, "runtime": "simulator"})
    with pytest.raises(ConfigError, match="made by the simulator runtime; continue it with `lpfl"):
        run_rounds(FakeGrid(4), sim_cfg, FlowerSettings(5, resume=True))


def test_a_checkpoint_made_before_a_setting_existed_resumes_at_its_default(tmp_path) -> None:
    """A setting that came to lpfl after a run was checkpointed stands for its default
    there (eval-quantized plays that part); settings of how the run computes may change."""
    out = tmp_path / "run"
    cfg = make_config(**RUN, out=str(out))
    with pytest.raises(PowerCut):
        run_rounds(FakeGrid(4, crash_in_round=3), cfg, FlowerSettings(5))
    state = checkpoint.load(out)
    del state["config"]["eval_quantized"]
    checkpoint.save(out, state)
    elsewhere = make_config(**RUN, out=str(out), cuda_graph=False, fused_quant="on")
    run_rounds(FakeGrid(4), elsewhere, FlowerSettings(5, resume=True))
    assert [r["round"] for r in _rounds(out)] == [1, 2, 3, 4, 5]
    with pytest.raises(PowerCut):  # the default it stands for must still match
        run_rounds(FakeGrid(4, crash_in_round=3), cfg, FlowerSettings(5))
    state = checkpoint.load(out)
    del state["config"]["eval_quantized"]
    checkpoint.save(out, state)
    changed = make_config(**RUN, out=str(out), eval_quantized=True)
    with pytest.raises(ConfigError, match=r"differs .*eval_quantized = True here, False there"):
        run_rounds(FakeGrid(4), changed, FlowerSettings(5, resume=True))


def _state(step: int) -> dict[str, dict]:
    return {"fc.weight": {"step": torch.tensor(float(step))}}


def test_a_node_trains_from_its_newest_state_made_before_the_round(tmp_path) -> None:
    store = OptimizerStore(node_context(1, 0, 4, tmp_path), "run-a", 0)
    assert store.load(1) == {}
    for made in (2, 5, 7):
        store.save(made, _state(made), checkpointed=4)
    assert store.load(8) == _state(7)
    assert store.load(6) == _state(5)  # a resumed server replays round 6: round 7's is stale
    assert store.load(5) == _state(2)
    # Replaying round 6 drops what the lost rounds made; the newest state by the
    # checkpointed round (4) is all older history kept.
    store.save(6, _state(60), checkpointed=4)
    assert store.load(100) == _state(60) and store.load(6) == _state(5)
    store.save(9, _state(9), checkpointed=8)
    assert store.load(6) == {} and store.load(9) == _state(60)  # round 2's and 5's are gone
    other = OptimizerStore(node_context(1, 0, 4, tmp_path), "run-b", 0)
    assert other.load(100) == {}  # another lpfl run's states are not this one's
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "lpfl-run-a-partition-0.pt"
    ]  # written whole or not at all: no temporary left


def test_a_node_without_a_state_dir_keeps_its_newest_state_in_its_context() -> None:
    context = node_context(1, 0, 4)
    store = OptimizerStore(context, "run-a", 0)
    store.save(3, _state(3), checkpointed=0)
    store.save(5, _state(5), checkpointed=0)
    assert store.load(9) == _state(5) and store.load(5) == {}  # nothing older is kept
    assert OptimizerStore(context, "run-a", 0).load(9) == _state(5)  # it is the context's
