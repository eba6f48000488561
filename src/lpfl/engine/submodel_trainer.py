"""The sub-model engine: clients of different shapes (HeteroFL, SplitMix), one after another.

The vectorized engine stacks clients that share one architecture; these clients do
not, so each is trained by the sequential engine on its own sub-model: cut from the
broadcast model by the algorithm's plan, trained in low precision exactly as a
FedAvg client, and uploaded as the sub-model alone.

Per-client optimizer state is kept per *global* tensor name, so a SplitMix client
that trains bases 2-3 this round and 5-6 the next keeps each base's Adam moments
with that base.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from functools import partial

import torch
from torch import Tensor

from ..algorithms import ClientUpdate, State, SubModelAlgorithm
from ..quant import PrecisionPolicy
from .client import LocalTrainer, OptimizerSpec
from .messages import ClientData, DivergenceError, Rejection


def gather_state(
    kept: Mapping[str, dict], names: list[str], sources: Mapping[str, str], optimizer: OptimizerSpec
) -> dict | None:
    """A torch optimizer state for a sub-model's parameters ``names`` from the states a
    client kept per global tensor (``sources`` maps each name to its global tensor), or
    None when it kept none of them."""
    found = {i: kept.get(sources[n]) for i, n in enumerate(names)}
    if all(v is None for v in found.values()):
        return None
    groups = optimizer.build([torch.zeros(1)]).state_dict()["param_groups"]
    groups[0]["params"] = list(range(len(names)))
    return {"state": {i: v for i, v in found.items() if v is not None}, "param_groups": groups}


def by_global_name(opt_state: dict, names: list[str], sources: Mapping[str, str]) -> dict:
    """A sub-model's torch optimizer state, per global tensor: what ``gather_state`` reads."""
    return {
        sources[n]: opt_state["state"][i] for i, n in enumerate(names) if i in opt_state["state"]
    }


class SubModelTrainer:
    def __init__(
        self,
        algorithm: SubModelAlgorithm,
        policy: PrecisionPolicy,
        optimizer: OptimizerSpec,
        normalize: Callable[[Tensor], Tensor],
        local_epochs: int,
        batch_size: int,
        generator: torch.Generator,
        device: torch.device,
        persist: bool = True,
    ) -> None:
        self.algorithm = algorithm
        self.optimizer = optimizer
        self.device = device
        self.persist = persist
        # Every architecture's worker trains like the sequential engine; optimizer state is
        # kept here, per global tensor, so the workers themselves keep none.
        self._new_trainer = partial(
            LocalTrainer, policy=policy, algorithm=algorithm, optimizer=optimizer,
            normalize=normalize, local_epochs=local_epochs, batch_size=batch_size,
            generator=generator, persist=False,
        )  # fmt: skip
        self.trainers: dict[Hashable, LocalTrainer] = {}  # one worker model per architecture
        self.saved: dict[int, dict[str, dict]] = {}  # client -> global tensor -> optimizer state

    def _trainer(self, arch: Hashable) -> LocalTrainer:
        if arch not in self.trainers:
            self.trainers[arch] = self._new_trainer(
                self.algorithm.client_model(arch).to(self.device)
            )
        return self.trainers[arch]

    def train_round(
        self, sampled: list[int], start: State, data: list[ClientData]
    ) -> list[ClientUpdate | Rejection]:
        """Train each sampled client's sub-model from its slice of ``start``."""
        results: list[ClientUpdate | Rejection] = []
        self.algorithm.begin_round()
        for k, client_data in zip(sampled, data, strict=True):
            plan = self.algorithm.plan(k)
            trainer = self._trainer(plan.arch)
            names = [n for n, _ in trainer.model.named_parameters()]
            kept = self.saved.get(k, {})
            try:
                update, opt_state = trainer.train(
                    k, plan.extract(start), client_data,
                    gather_state(kept, names, plan.sources, self.optimizer),
                )  # fmt: skip
            except DivergenceError as exc:
                results.append(Rejection(k, str(exc)))
                continue
            if self.persist:
                self.saved[k] = kept | by_global_name(opt_state, names, plan.sources)
            results.append(update)
        return results

    def state_dict(self) -> dict:
        """The per-client optimizer states, for checkpoints (the server keeps the planner's)."""
        return {"saved": self.saved}

    def load_state_dict(self, state: dict) -> None:
        self.saved = {}
        for key, value in state["saved"].items():
            if isinstance(key, tuple):  # checkpoints before 2026-11-27: (client, tensor) keys
                self.saved.setdefault(key[0], {})[key[1]] = value
            else:
                self.saved[key] = value
