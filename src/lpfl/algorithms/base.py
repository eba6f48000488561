"""What a client sends back, and the two hooks every FL algorithm fills in.

An algorithm is a client-side objective plus a server-side aggregator, in the
spirit of Flower's strategies: small, with the round loop kept elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self

import torch
from torch import Tensor, nn

State = dict[str, Tensor]
Check = tuple[str, bool, str]  # (setting, whether it holds, the rule it must follow)
Inputs = dict[str, Tensor]  # server-made tensors a client step consumes (FedGen's features)


@dataclass(frozen=True)
class ClientUpdate:
    client: int
    state: State  # the client's low-precision model after local training
    num_samples: int
    train_loss: float  # mean loss over the client's local samples (nan when it has none)
    # How many samples of each class the client holds: FedGen and FedFTG weigh their
    # teachers per class with it. None where the client did not say.
    label_counts: tuple[int, ...] | None = None


class Algorithm(Protocol):
    name: str

    def client_loss(
        self, model: nn.Module, logits: Tensor, targets: Tensor, weight: Tensor | None = None
    ) -> Tensor:
        """The loss a client minimises on one batch.

        ``weight`` (0/1 per sample) marks the real samples of a padded batch: the
        vectorized engine pads clients that run out of data, and padding must not count.
        """
        ...

    def begin_local_training(self, start: State) -> None:
        """Told the model a client starts from (FedProx anchors its penalty there)."""
        ...

    def penalty(self, params: Mapping[str, Tensor]) -> Tensor | None:
        """A term added to the client loss that depends on the weights alone, or None."""
        ...

    def graph_key(self) -> tuple:
        """What, besides shapes, decides which ops a client step runs (() for nothing):
        a step captured as a CUDA graph is captured anew when it changes (FedGen's
        clients start drawing generated features once the generator has trained).

        A captured step is replayed in later rounds, so whatever the client step reads
        must keep its memory from round to round (updated in place, as FedProx's anchor
        and FedGen's coefficients are), not be a new tensor or a Python number each
        round (``engine/step_graph.py``; ``tests/test_step_graph.py`` replays each
        algorithm's step as a graph would).
        """
        ...

    def draw(self, targets: Tensor, label_counts: Tensor, generator: torch.Generator) -> Inputs:
        """Server-made inputs one client step consumes besides its data ({} for none).

        Drawn outside autograd and for all clients of a step at once: ``targets`` is
        (..., batch) and ``label_counts`` (..., classes), with the same leading client
        dimensions; every returned tensor keeps them (the vectorized engine maps over them).
        """
        ...

    def regularizer(
        self,
        head: Callable[[Tensor], Tensor],
        logits: Tensor,
        targets: Tensor,
        weight: Tensor | None,
        drawn: Inputs,
    ) -> Tensor | None:
        """A term added to one client's loss, from what ``draw`` gave it, or None.

        ``head`` maps features to logits with that client's current weights and rounding.
        """
        ...

    def client_inputs(self) -> State:
        """What the sampled clients receive besides the model ({} for nothing).

        FedGen's clients regularise with the generator the server trains, so in a real
        federation it must travel to them with each round's broadcast (and count as
        downlink traffic); the simulator's clients share the server's object.
        """
        ...

    def load_client_inputs(self, inputs: State) -> None:
        """On a client: take what ``client_inputs`` gave the server's copy."""
        ...

    def check_update(self, update: ClientUpdate) -> str | None:
        """Why this algorithm cannot use a client's update, or None.

        The server rejects such an update like a malformed one, before aggregating, so
        a client that leaves out what the algorithm needs cannot stop the round.
        """
        ...

    def aggregate(self, updates: Sequence[ClientUpdate]) -> State:
        """Combine client models into one high-precision (float32) model.

        Server-side training (FedGen's generator, FedFTG's fine-tuning) happens here too.
        """
        ...

    def state_dict(self) -> dict[str, Any]:
        """What the algorithm learns across rounds, for checkpoints ({} for nothing)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Options:
    """Base of an algorithm's hyper-parameter dataclass: one list of range checks, which
    ``validate`` applies and ``RunConfig.validate`` reuses under its flag names."""

    def checks(self) -> list[Check]:
        return []

    def validate(self) -> Self:
        for name, ok, rule in self.checks():
            if not ok:
                raise ValueError(
                    f"{type(self).__name__}.{name}: {rule}, got {getattr(self, name)!r}"
                )
        return self


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-sample cross-entropy, ``F.cross_entropy(..., reduction="none")`` value for value.

    Written as log-softmax and a gather because ``vmap`` has no batching rule for
    ``nll_loss``: it decomposes it into a dozen small ops per call, 2.6 % of a 32-bit
    vectorized round on the digits demo. Both ops here map natively, and forward and
    backward compute the same numbers as ``nll_loss``'s (a pick and a negation).
    """
    return -logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def sample_mean(per_sample: Tensor, weight: Tensor | None) -> Tensor:
    """Mean over the real samples of a batch (all of them when ``weight`` is None)."""
    if weight is None:
        return per_sample.mean()
    return (per_sample * weight).sum() / weight.sum().clamp(min=1.0)


def weighted_mean(states: Sequence[State], weights: Sequence[float]) -> State:
    """Average states in float32 with normalised weights: the server's high-precision step."""
    if not states:
        raise ValueError("nothing to aggregate: no client updates")
    w = torch.tensor(weights, dtype=torch.float64)
    if not bool(torch.isfinite(w).all()) or float(w.sum()) <= 0:
        raise ValueError(f"aggregation weights must be finite with a positive sum, got {weights}")
    w = (w / w.sum()).tolist()
    return {
        name: sum(wk * s[name].float() for wk, s in zip(w, states, strict=True))  # type: ignore[misc]
        for name in states[0]
    }


def label_counts_problem(update: ClientUpdate, num_classes: int) -> str | None:
    """Why ``update``'s per-class counts are unusable, or None: they must be given, one
    non-negative count per class, summing to the client's sample count."""
    counts = update.label_counts
    if counts is None:
        return f"needs its {num_classes} per-class sample counts, sent none"
    if len(counts) != num_classes or min(counts, default=0) < 0:
        return f"needs {num_classes} non-negative per-class sample counts, got {counts!r}"
    if sum(counts) != update.num_samples:
        return f"per-class counts sum to {sum(counts)}, not its {update.num_samples} samples"
    return None


def label_count_matrix(updates: Sequence[ClientUpdate], num_classes: int) -> Tensor:
    """(clients, classes) float32 sample counts; refuses an update whose counts are
    unusable (``label_counts_problem``), as the server already has before aggregating."""
    for u in updates:
        if (problem := label_counts_problem(u, num_classes)) is not None:
            raise ValueError(f"client {u.client}: {problem}")
    rows = [u.label_counts for u in updates]
    return torch.tensor(rows, dtype=torch.float32)
