"""The round loop end to end on digits: learning, determinism, persistence, divergence."""

from __future__ import annotations

import json

import pytest
import torch

from lpfl.algorithms import FedAvg
from lpfl.config import make_config
from lpfl.data import DATASETS, load_dataset, normalize
from lpfl.engine import ClientData, DivergenceError, LocalTrainer, OptimizerSpec, run_simulation
from lpfl.engine.recorder import PHASES, TIMINGS
from lpfl.models import build_model
from lpfl.quant import PrecisionPolicy, block_exponents
from lpfl.wire import encode_many


def _quiet(cfg):
    return run_simulation(cfg, progress=False, log=lambda _m: None)


def _final(recorder) -> float:
    return recorder.summary()["final_accuracy_mean"]


LEARN = dict(
    dataset="digits",
    model="mlp",
    clients=10,
    participation=0.5,
    alpha=1.0,
    rounds=40,
    local_epochs=2,
    moving_average=0.9,
)


def test_eight_bit_with_moving_average_learns_and_matches_full_precision():
    low = _final(_quiet(make_config(**LEARN, bits=8)))
    full = _final(_quiet(make_config(**LEARN, bits=32)))
    assert low > 0.6, f"8-bit + moving average should learn digits, got {low:.3f}"
    assert abs(low - full) < 0.06, f"8-bit {low:.3f} vs 32-bit {full:.3f}"


def test_same_seed_same_rounds(tmp_path, tiny):
    rounds = []
    for name in ("a", "b"):
        _quiet(make_config(**tiny, bits=6, out=str(tmp_path / name)))
        data = json.loads((tmp_path / name / "results.json").read_text())
        rounds.append([{k: v for k, v in r.items() if k not in TIMINGS} for r in data["rounds"]])
    assert rounds[0] == rounds[1]
    other = _quiet(make_config(**tiny, bits=6, seed=1))
    assert [r.test_loss for r in other.rounds] != [r["test_loss"] for r in rounds[0]]


def test_results_schema_and_csv(tmp_path, tiny):
    out = tmp_path / "run"
    _quiet(make_config(**(tiny | {"rounds": 7}), eval_every=3, out=str(out)))
    data = json.loads((out / "results.json").read_text())
    assert data["status"] == "completed"
    assert data["config"]["bits"] == 8 and data["config"]["device"] == "cpu"
    assert [r["round"] for r in data["rounds"]] == list(range(1, 8))
    evaluated = [r["round"] for r in data["rounds"] if r["test_accuracy"] is not None]
    assert evaluated == [3, 6, 7], "every eval-every rounds, and the last"
    assert set(data["rounds"][0]) == {
        "round", "test_accuracy", "test_loss", "train_loss", "seconds",
        "clients", "uploads", "rejected", "bytes_up", "bytes_down",
        "quantized_test_accuracy", "quantized_test_loss", "client_accuracy", "client_loss",
        "train_seconds", "upload_seconds", "server_seconds", "eval_seconds", "client_drift",
    }  # fmt: skip
    assert all(0 < r["client_drift"] < 1 for r in data["rounds"])
    accs = [r["test_accuracy"] for r in data["rounds"] if r["test_accuracy"] is not None]
    assert data["summary"]["final_accuracy_mean"] == pytest.approx(sum(accs) / len(accs))
    # Where each round's time went: every phase timed, and together within the round.
    for r in data["rounds"]:
        phases = [r[f"{phase}_seconds"] for phase in PHASES]
        assert min(phases) >= 0 and r["train_seconds"] > 0
        assert sum(phases) <= r["seconds"]
    assert set(data["summary"]["phase_seconds_median"]) == set(PHASES)
    train = sorted(r["train_seconds"] for r in data["rounds"])
    assert data["summary"]["phase_seconds_median"]["train"] == train[3]
    (session,) = data["sessions"]
    assert session["data_seconds"] >= 0 and session["setup_seconds"] > 0
    lines = (out / "metrics.csv").read_text().splitlines()
    assert (
        lines[0].startswith("round,test_accuracy,test_loss,train_loss,seconds,") and len(lines) == 8
    )


def test_divergence_stops_the_run_and_keeps_earlier_rounds(tmp_path, tiny, monkeypatch):
    calls = {"n": 0}
    original = FedAvg.aggregate

    def poisoned(self, updates):
        calls["n"] += 1
        state = original(self, updates)
        if calls["n"] == 3:
            next(iter(state.values())).fill_(float("nan"))
        return state

    monkeypatch.setattr(FedAvg, "aggregate", poisoned)
    out = tmp_path / "run"
    with pytest.raises(DivergenceError, match="round 3"):
        _quiet(make_config(**(tiny | {"rounds": 5}), out=str(out)))
    data = json.loads((out / "results.json").read_text())
    assert data["status"] == "diverged" and "round 3" in data["error"]
    assert [r["round"] for r in data["rounds"]] == [1, 2]
    assert len((out / "metrics.csv").read_text().splitlines()) == 3


@pytest.mark.parametrize("bits", [8, 32])
def test_clients_whose_training_blows_up_are_dropped_and_the_run_goes_on(tiny, monkeypatch, bits):
    # At 8 bits the NaN errors come out of the rounding as NaN; at 32 bits they stay. Either
    # way the trainer sees a NaN loss, drops the client and leaves the global model unchanged.
    monkeypatch.setattr(
        FedAvg, "client_loss", lambda self, m, logits, y, w=None: logits.sum() * float("nan")
    )
    rec = _quiet(make_config(**tiny, bits=bits))
    assert all(r.rejected == r.clients == 3 for r in rec.rounds)
    assert len({r.test_loss for r in rec.rounds}) == 1, "the global model must not move"
    assert len(rec.rejections) == 9 and "NaN" in rec.rejections[0]["reason"]


def _trainer(bits: int):
    spec = DATASETS["digits"]
    train, _ = load_dataset("digits")
    torch.manual_seed(0)
    model = build_model("mlp", spec.channels, spec.size, spec.num_classes)
    gen = torch.Generator().manual_seed(0)
    trainer = LocalTrainer(
        model,
        PrecisionPolicy.uniform(bits),
        FedAvg(),
        OptimizerSpec(),
        lambda x: normalize(x, spec),
        1,
        32,
        gen,
    )
    data = ClientData(torch.from_numpy(train.x[:100]), torch.from_numpy(train.y[:100]))
    return trainer, model, data


def test_client_update_is_on_the_low_bit_grid_and_optimizer_state_persists():
    trainer, model, data = _trainer(8)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    update, opt_state = trainer.train(0, start, data, None)
    for name, w in update.state.items():
        step = torch.exp2((block_exponents(w, "BC") - 6).float())
        assert torch.equal(w / step, (w / step).round()), name
    assert update.num_samples == 100 and update.train_loss > 0
    steps = float(opt_state["state"][0]["step"])
    assert steps == 4  # 100 samples in batches of 32
    _, again = trainer.train(0, start, data, opt_state)
    assert float(again["state"][0]["step"]) == 2 * steps
    _, fresh = trainer.train(0, start, data, None)
    assert float(fresh["state"][0]["step"]) == 4


def test_wire_bytes_are_counted_in_both_directions(tiny):
    low = _quiet(make_config(**tiny, bits=8, weight_block="B"))
    full = _quiet(make_config(**tiny, bits=32))
    for rec, lo, hi in [(low, 0.25, 0.26), (full, 1.0, 1.01)]:
        s = rec.summary()
        assert lo <= s["up_ratio_to_fp32"] <= hi and lo <= s["down_ratio_to_fp32"] <= hi
        r = rec.rounds[0]
        assert r.bytes_up % r.uploads == 0 and r.bytes_down % r.clients == 0, "equal messages"
        assert s["bytes_up_total"] == sum(x.bytes_up for x in rec.rounds)
    off = _quiet(make_config(**tiny, bits=8, weight_block="B", download_quant=False))
    assert off.summary()["down_ratio_to_fp32"] >= 1.0, "no download quantization: fp32 down"


def test_corrupted_uploads_are_rejected_and_the_run_goes_on(tmp_path, tiny, monkeypatch, caplog):
    import lpfl.engine.loop as loop

    def flaky(states, fmt):
        first, *rest = encode_many(states, fmt)
        return [first[:-10], *rest]  # every round's first upload

    monkeypatch.setattr(loop, "encode_many", flaky)
    out = tmp_path / "run"
    rec = _quiet(make_config(**tiny, out=str(out)))
    assert [r.rejected for r in rec.rounds] == [1, 1, 1]
    assert [r.uploads for r in rec.rounds] == [3, 3, 3]
    assert "update rejected: truncated payload" in caplog.text
    data = json.loads((out / "results.json").read_text())
    assert [x["round"] for x in data["rejections"]] == [1, 2, 3]
    assert all("truncated" in x["reason"] for x in data["rejections"])
    assert data["status"] == "completed"


def test_eval_quantized_reports_both_views_without_changing_training(tiny):
    plain = _quiet(make_config(**tiny, bits=4))
    both = _quiet(make_config(**tiny, bits=4, eval_quantized=True))
    assert [r.test_loss for r in both.rounds] == [r.test_loss for r in plain.rounds]
    assert all(r.quantized_test_accuracy is None for r in plain.rounds)
    assert all(r.quantized_test_loss is not None for r in both.rounds)
    assert [r.quantized_test_loss for r in both.rounds] != [r.test_loss for r in both.rounds]


def test_results_json_holds_every_round_however_its_config_reads(tmp_path, tiny, monkeypatch):
    """results.json splices in rounds serialised once each; a config string equal to the
    placeholder they replace changes nothing of what is read back."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "<rounds>"
    recorder = _quiet(make_config(**(tiny | {"rounds": 3}), out="<rounds>"))  # a config value
    data = json.loads((out / "results.json").read_text())
    assert data["config"]["out"] == "<rounds>"
    assert [r["round"] for r in data["rounds"]] == [1, 2, 3]
    assert data["rounds"][2]["test_loss"] == recorder.rounds[2].test_loss
    assert data["summary"] == json.loads(json.dumps(recorder.summary()))
