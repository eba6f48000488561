"""Flower's key/value configs <-> lpfl's :class:`RunConfig`, through ``make_config``.

Flower configs hold flat kebab-case keys (``[tool.flwr.app.config]``, ``--run-config``,
message ConfigRecords) and cannot hold None, so an unset optional setting is simply
absent. Everything goes through ``make_config``, so a Flower run refuses exactly the
values ``lpfl run`` refuses, with the same one-line message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from flwr.app import ConfigRecord

from ..algorithms.submodels import SubModel
from ..config import ConfigError, RunConfig, coerce_settings, make_config

ROUND_KEY = "server-round"
ARCH_KEY = "submodel-arch"  # HeteroFL: the width; SplitMix: how many bases
SOURCES_KEY = "submodel-sources"  # "client tensor=global tensor", one per tensor
RUN_TOKEN_KEY = "run-token"  # names the lpfl run across Flower runs (a resumed one is new)
CHECKPOINTED_KEY = "checkpointed-round"  # the round a resumed server would replay after
ROUND_TIMEOUT_KEY = "round-timeout"
CLIENT_EVAL_KEY = "client-eval-every"
RESUME_KEY = "resume"

# Where the data lies, where results go and what hardware trains are facts about one
# host, so the server keeps them to itself; each node uses its own (see client_app).
HOST_LOCAL = ("data_dir", "out", "device")


@dataclass(frozen=True)
class Plan:
    """A sub-model plan as a node receives it: enough to build and train it."""

    arch: Fraction
    sources: dict[str, str]


@dataclass(frozen=True)
class Instructions:
    """What a train message tells a node: the run's settings, the round, the sub-model
    to train (HeteroFL, SplitMix; else None), the lpfl run it belongs to, and the last
    round the server checkpointed (the node keeps what a resumed server would replay)."""

    cfg: RunConfig
    server_round: int
    plan: Plan | None
    run_token: str
    checkpointed: int


@dataclass(frozen=True)
class FlowerSettings:
    """What Flower adds to an lpfl run: how long to wait for nodes per round, how often
    the nodes evaluate the global model on their own data (0: never), and whether to
    continue the run checkpointed in ``out`` instead of starting afresh."""

    round_timeout: float = 600.0
    client_eval_every: int = 0
    resume: bool = False


def to_run_config(values: Mapping[str, Any], **local: Any) -> RunConfig:
    """Build a validated RunConfig from Flower key/values (kebab- or snake-case)."""
    return make_config(**coerce_settings(values, "the Flower run config"), **local)


def from_run_config(values: Mapping[str, Any]) -> tuple[RunConfig, FlowerSettings]:
    """Split the ServerApp's run config into the lpfl run and the Flower settings."""
    rest = {key.replace("_", "-"): value for key, value in values.items()}
    timeout = rest.pop(ROUND_TIMEOUT_KEY, FlowerSettings.round_timeout)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        raise ConfigError(f"--{ROUND_TIMEOUT_KEY}: must be seconds > 0, got {timeout!r}")
    every = rest.pop(CLIENT_EVAL_KEY, FlowerSettings.client_eval_every)
    if not isinstance(every, int) or isinstance(every, bool) or every < 0:
        raise ConfigError(f"--{CLIENT_EVAL_KEY}: must be rounds >= 0 (0: never), got {every!r}")
    resume = rest.pop(RESUME_KEY, FlowerSettings.resume)
    if not isinstance(resume, bool):
        raise ConfigError(f"--{RESUME_KEY}: must be true or false, got {resume!r}")
    return to_run_config(rest), FlowerSettings(float(timeout), every, resume)


def to_record(
    cfg: RunConfig, server_round: int, run_token: str = "", checkpointed: int = 0
) -> ConfigRecord:
    """The settings every client needs for this round, without the server's host-local
    ones; a train message adds the run's token and its last checkpointed round."""
    values = {
        name.replace("_", "-"): value
        for name, value in cfg.to_dict().items()
        if value is not None and name not in HOST_LOCAL
    }
    run = {ROUND_KEY: server_round, RUN_TOKEN_KEY: run_token, CHECKPOINTED_KEY: checkpointed}
    return ConfigRecord({**values, **run})


def add_plan(record: ConfigRecord, plan: SubModel) -> None:
    """What a HeteroFL/SplitMix client trains this round: the architecture to build, and
    the global tensor each of its tensors is a slice of (it keeps its optimizer state
    per global tensor, as a SplitMix client's bases change from round to round)."""
    record[ARCH_KEY] = str(plan.arch)
    record[SOURCES_KEY] = [f"{name}={source}" for name, source in plan.sources.items()]


def from_record(record: ConfigRecord, **local: Any) -> Instructions:
    """What a client was sent; ``local`` adds its host-local settings."""
    values = dict(record)
    server_round = values.pop(ROUND_KEY)
    run_token, checkpointed = values.pop(RUN_TOKEN_KEY), values.pop(CHECKPOINTED_KEY)
    plan = None
    if ARCH_KEY in values:
        sources = dict(item.split("=", 1) for item in values.pop(SOURCES_KEY))
        plan = Plan(Fraction(values.pop(ARCH_KEY)), sources)
    cfg = to_run_config(values, **local)
    return Instructions(cfg, int(server_round), plan, str(run_token), int(checkpointed))
