"""The sequential engine: one client after another, in low precision from start to finish.

Per step: forward with activations rounded, backward with errors rounded, gradients
rounded, optimizer step (its moment buffers stay float32, as in the reference),
weights rounded back onto the low-bit grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from ..algorithms import Algorithm, ClientUpdate, State
from ..models import head_forward, num_classes
from ..quant import PrecisionPolicy
from ..quant.finite import all_finite
from .messages import ClientData, DivergenceError, Rejection
from .stacked_optim import fused_available


@dataclass(frozen=True)
class OptimizerSpec:
    name: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0

    def build(self, params: list[Tensor]) -> torch.optim.Optimizer:
        """The torch optimizer, fused where the device has the kernel: the same update the
        vectorized engine applies to its stacked clients, and a single kernel per step."""
        fused = fused_available(params[0].device)
        if self.name == "adam":
            return torch.optim.Adam(params, lr=self.lr, fused=fused)
        if self.name == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, fused=fused)
        raise ValueError(f"unknown optimizer {self.name!r}")


class ClientTrainer:
    """What both engines are built from, and the per-client optimizer state they keep.

    Each client's optimizer state is kept between rounds (``persist``, the
    reference's behaviour) or started afresh every round.
    """

    def __init__(
        self,
        model: nn.Module,
        policy: PrecisionPolicy,
        algorithm: Algorithm,
        optimizer: OptimizerSpec,
        normalize: Callable[[Tensor], Tensor],
        local_epochs: int,
        batch_size: int,
        generator: torch.Generator,
        persist: bool = True,
    ) -> None:
        self.model = model
        self.policy = policy
        self.algorithm = algorithm
        self.optimizer = optimizer
        self.normalize = normalize
        self.local_epochs = local_epochs
        self.batch_size = batch_size
        self.generator = generator
        self.persist = persist
        # Each client's optimizer state between rounds, in the engine's own layout.
        self.saved: dict[Any, Any] = {}
        self.num_classes = num_classes(model)
        policy.attach(model, generator)

    def label_counts(self, data: ClientData) -> Tensor:
        """Samples per class: sent with the update, and what FedGen draws labels from."""
        return torch.bincount(data.y, minlength=self.num_classes)

    def state_dict(self) -> dict:
        """The per-client optimizer states, for checkpoints."""
        return {"saved": self.saved}

    def load_state_dict(self, state: dict) -> None:
        self.saved = state["saved"]


class LocalTrainer(ClientTrainer):
    """The sequential engine: trains the sampled clients one after another."""

    def train_round(
        self, sampled: list[int], start: State, data: list[ClientData]
    ) -> list[ClientUpdate | Rejection]:
        """Train every sampled client from ``start``; a client that diverges is rejected."""
        results: list[ClientUpdate | Rejection] = []
        for k, client_data in zip(sampled, data, strict=True):
            try:
                update, opt_state = self.train(k, start, client_data, self.saved.get(k))
            except DivergenceError as exc:
                results.append(Rejection(k, str(exc)))
                continue
            if self.persist:
                self.saved[k] = opt_state
            results.append(update)
        return results

    def train(
        self, client: int, start: State, data: ClientData, opt_state: dict | None
    ) -> tuple[ClientUpdate, dict]:
        """Train from ``start``; return the update and the optimizer state to keep for next time."""
        model, gen = self.model, self.generator
        model.load_state_dict(start)
        self.algorithm.begin_local_training(start)
        model.train()
        params = list(model.parameters())
        opt = self.optimizer.build(params)
        if opt_state is not None:
            opt.load_state_dict(opt_state)
        loss_sum = torch.zeros((), device=data.y.device)
        n = len(data)
        counts = self.label_counts(data)
        head = partial(head_forward, model)
        for _ in range(self.local_epochs):
            order = torch.randperm(n, generator=gen, device=gen.device).to(data.y.device)
            for idx in order.split(self.batch_size):
                targets = data.y[idx]
                drawn = self.algorithm.draw(targets, counts, gen)
                logits = model(self.normalize(data.x[idx]))
                task = self.algorithm.client_loss(model, logits, targets)
                penalty = self.algorithm.penalty(dict(model.named_parameters()))
                extra = self.algorithm.regularizer(head, logits, targets, None, drawn)
                loss = task
                for term in (penalty, extra):
                    loss = loss if term is None else loss + term
                opt.zero_grad(set_to_none=True)
                loss.backward()
                self.policy.quantize_grads_(params, gen)
                opt.step()
                self.policy.quantize_weights_(params, gen)
                loss_sum += task.detach() * len(idx)
        # One look for NaN/Inf, here rather than at every rounding (see ActQuant): a NaN
        # anywhere in training reaches the loss or the weights, and rounding turns an
        # Inf into NaN.
        train_loss = float(loss_sum) / (n * self.local_epochs) if n else float("nan")
        if n and not math.isfinite(train_loss):
            raise DivergenceError(f"client {client}: training loss became NaN/Inf ({train_loss})")
        if not all(all_finite(p) for p in params):
            raise DivergenceError(f"client {client}: training produced NaN/Inf weights")
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        update = ClientUpdate(client, state, n, train_loss, tuple(counts.tolist()))
        return update, opt.state_dict()
