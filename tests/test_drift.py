"""Client drift: the share of a round's update energy that is disagreement between clients."""

from __future__ import annotations

import json

import pytest
import torch

from lpfl.algorithms import ClientUpdate, FedAvg
from lpfl.config import make_config
from lpfl.engine import run_simulation
from lpfl.engine.drift import client_drift
from lpfl.engine.server import Server
from lpfl.wire import WireFormat


def _state(seed: int, scale: float = 1.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "w": scale * torch.randn(4, 5, generator=g),
        "b": scale * torch.randn(5, generator=g),
        "count": torch.tensor(seed, dtype=torch.int64),  # not a weight: left out
    }


def _stacked(start, states) -> float:
    """The definition, written out: mean_k ||d_k - mean d||^2 / mean_k ||d_k||^2."""
    names = [k for k, v in start.items() if v.is_floating_point()]
    d = torch.stack([torch.cat([(s[k] - start[k]).flatten() for k in names]) for s in states])
    return float((d - d.mean(0)).square().sum() / d.square().sum())


def test_drift_is_zero_for_clients_that_agree_and_one_for_updates_that_cancel():
    start, step = _state(0), _state(1)
    same = [{k: start[k] + step[k] if k != "count" else step[k] for k in start}] * 3
    assert client_drift(start, same) == pytest.approx(0.0, abs=1e-6)
    forth = {k: start[k] + step[k] for k in ("w", "b")} | {"count": step["count"]}
    back = {k: start[k] - step[k] for k in ("w", "b")} | {"count": step["count"]}
    assert client_drift(start, [forth, back]) == pytest.approx(1.0, abs=1e-6)


def test_drift_follows_its_definition_and_ignores_integer_entries():
    start = _state(0)
    states = [
        {k: (v + _state(k0 + 10, 0.1)[k] + 0.05 if v.is_floating_point() else v * k0)
         for k, v in start.items()}
        for k0 in range(6)
    ]  # fmt: skip
    assert client_drift(start, states) == pytest.approx(_stacked(start, states), rel=1e-5)
    assert 0.2 < client_drift(start, states) < 0.9  # a shared part and a personal one


def test_no_drift_without_two_clients_or_without_movement():
    start = _state(0)
    assert client_drift(start, [_state(1)]) is None
    assert client_drift(start, [start, start]) is None


def test_the_server_measures_drift_from_what_it_broadcast_not_from_its_model():
    """At 4 bits Q(w̄) is far from w̄; measured from w̄ the download's rounding would count
    as movement shared by every client, and the drift would come out lower."""
    model = {k: v for k, v in _state(0).items() if k != "count"}
    server = Server(model, FedAvg(), moving_average=0.9, downlink=WireFormat(bits=4))
    server.broadcast()
    sent = server.sent
    assert sent is not None and not torch.equal(sent["w"], model["w"])
    states = [{k: sent[k] + _state(s, 0.01)[k] for k in sent} for s in (1, 2, 3)]
    server.step(2, [ClientUpdate(k, s, 10, 0.0) for k, s in enumerate(states)])
    assert server.drift == pytest.approx(client_drift(sent, states))
    assert server.drift > client_drift(model, states) + 0.1


def test_runs_record_the_drift_of_every_round_and_none_for_sub_models(tmp_path, tiny):
    run_simulation(make_config(**tiny, out=str(tmp_path / "a")), progress=False, log=print)
    rounds = json.loads((tmp_path / "a" / "results.json").read_text())["rounds"]
    assert all(0 < r["client_drift"] < 1 for r in rounds)
    hetero = make_config(**tiny, algorithm="heterofl", hetero_widths="1,1/2")
    recorder = run_simulation(hetero, progress=False, log=lambda _m: None)
    assert all(r.client_drift is None for r in recorder.rounds)
