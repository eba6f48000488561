"""Algorithm plugins: a researcher's own algorithm, found by name like a built-in one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from lpfl import cli
from lpfl.algorithms import ClientUpdate, FedAvg, PluginContext, plugins, register
from lpfl.config import ConfigError, make_config
from lpfl.engine import run_simulation, setup

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _forget_plugins(monkeypatch):
    """Each test starts with no plugin registered, and leaves none behind."""
    monkeypatch.setattr(plugins, "_registered", {})


@pytest.fixture
def examples_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    yield
    sys.modules.pop("examples.fedmedian", None)


def _quiet(cfg):
    return run_simulation(cfg, progress=False, log=lambda _m: None)


class Counting(FedAvg):
    """FedAvg that counts the rounds its server aggregated and the clients it saw."""

    name = "counting"

    def __init__(self) -> None:
        super().__init__()
        self.rounds: list[int] = []

    def aggregate(self, updates):
        self.rounds.append(len(updates))
        return super().aggregate(updates)


def test_a_registered_plugin_trains_a_run_under_its_name(tmp_path, tiny):
    made: list[Counting] = []
    register("counting", lambda context: made.append(Counting()) or made[-1])
    _quiet(make_config(**tiny, algorithm="counting", out=str(tmp_path)))
    (algorithm,) = made
    assert algorithm.rounds == [3, 3, 3]  # 6 clients, half of them a round, 3 rounds
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["config"]["algorithm"] == "counting" and saved["status"] == "completed"


def test_the_factory_gets_the_run_and_a_validation_score_only_when_it_asks(tiny):
    seen: list[PluginContext] = []

    def factory(context: PluginContext) -> FedAvg:
        seen.append(context)
        return FedAvg(context.aggregation)

    register("plain", factory)
    register("scored", factory, needs_server_data=True)
    one_round = dict(tiny, rounds=1)
    _quiet(make_config(**one_round, algorithm="plain", seed=4, aggregation="weighted"))
    _quiet(make_config(**one_round, algorithm="scored", server_val_fraction=0.2))
    plain, scored = seen
    assert (plain.seed, plain.aggregation, plain.device.type) == (4, "weighted", "cpu")
    assert plain.score is None
    # the server's split is carved from the training data; the score is an accuracy on it
    state = setup.initial_model(make_config(**tiny), torch.device("cpu")).state_dict()
    assert 0.0 <= scored.score(state) <= 1.0


def test_the_example_plugin_loads_as_module_colon_attribute_and_learns(examples_importable, tiny):
    settings = dict(tiny, clients=10, alpha=1.0, rounds=15, local_epochs=2, moving_average=0.5)
    median = _quiet(make_config(**settings, algorithm="examples.fedmedian:plugin"))
    mean = _quiet(make_config(**settings))
    accuracy = median.summary()["final_accuracy_mean"]
    assert accuracy > 0.8, f"the median of 8-bit clients should learn digits, got {accuracy:.3f}"
    assert abs(accuracy - mean.summary()["final_accuracy_mean"]) < 0.05  # no bad client here


def test_the_example_median_ignores_one_extreme_client(examples_importable):
    from examples.fedmedian import FedMedian

    honest = [{"w": torch.full((3,), float(v))} for v in (1.0, 2.0, 3.0, 4.0)]
    attacker = {"w": torch.full((3,), 1e6)}
    updates = [ClientUpdate(k, s, 10, 0.0) for k, s in enumerate([*honest, attacker])]
    assert torch.equal(FedMedian().aggregate(updates)["w"], torch.full((3,), 3.0))
    assert FedAvg().aggregate(updates)["w"][0] > 1e5  # the mean is dragged away


class _EntryPoint:
    def __init__(self, name: str, target) -> None:
        self.name, self.value, self._target = name, f"pkg:{name}", target

    def load(self):
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


def test_installed_entry_points_are_found_listed_and_reported_when_broken(monkeypatch, tiny):
    points = [
        _EntryPoint("fromapackage", lambda context: FedAvg()),
        _EntryPoint("broken", ImportError("No module named 'pkg'")),
        _EntryPoint("notafactory", 42),
    ]

    def entry_points(group, name=None):
        assert group == plugins.ENTRY_POINT_GROUP
        return [p for p in points if name in (None, p.name)]

    monkeypatch.setattr(plugins, "entry_points", entry_points)
    assert make_config(**tiny, algorithm="fromapackage").algorithm == "fromapackage"
    with pytest.raises(ConfigError, match=r"^--algorithm: the plugin 'broken' failed to load"):
        make_config(**tiny, algorithm="broken")
    with pytest.raises(ConfigError, match="not a factory"):
        make_config(**tiny, algorithm="notafactory")
    with pytest.raises(ConfigError, match=r"or a plugin: broken, fromapackage, notafactory, got"):
        make_config(**tiny, algorithm="nosuch")


def test_an_object_without_every_hook_is_refused_before_the_first_round(tiny):
    class Partial:
        name = "partial"

        def aggregate(self, updates):
            return FedAvg().aggregate(updates)

    register("partial", lambda context: Partial())
    with pytest.raises(ConfigError, match=r"partial: Partial is not an lpfl algorithm: it lacks b"):
        _quiet(make_config(**tiny, algorithm="partial"))


def test_unknown_names_and_built_in_names_are_refused(tiny, capsys):
    with pytest.raises(ConfigError, match=r"fedavg, .*\(no algorithm plugin installed\), got 'x'"):
        make_config(**tiny, algorithm="x")
    with pytest.raises(ValueError, match="built-in"):
        register("fedprox", lambda context: FedAvg())
    assert cli.main(["run", "--dataset", "digits", "--algorithm", "x", "--quiet"]) == 2
    assert "--algorithm: must be one of" in capsys.readouterr().err
