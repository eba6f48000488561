"""The vectorized engine: all sampled clients of a round train together, in one batched step.

Parameters and optimizer state of the K sampled clients are stacked along a leading
client dimension; ``torch.func.vmap`` runs forward and backward for all of them at
once, with the same per-client rounding as the sequential engine (activations and
errors rounded per client, weights and gradients per client block).

Clients hold different amounts of data. Every step takes one batch from each client;
a client that has run out of batches is padded and marked inactive, so neither its
weights nor its optimizer state change. Padding repeats real samples of the same
batch, which leaves each client's per-tensor activation maxima, and so its rounding,
exactly as in the sequential engine; padded samples carry zero loss weight.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

from ..algorithms import Algorithm, ClientUpdate, State
from ..quant import BlockFormat, PrecisionPolicy, quantize
from .client import OptimizerSpec
from .messages import ClientData, Rejection
from .stacked_optim import Stacked, build_stacked_optimizer


class VectorizedTrainer:
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
        self.normalize = normalize
        self.local_epochs = local_epochs
        self.batch_size = batch_size
        self.generator = generator
        self.persist = persist
        self.optimizer = build_stacked_optimizer(optimizer.name, optimizer.lr, optimizer.momentum)
        self.saved: dict[int, Stacked] = {}  # each client's optimizer state, between rounds
        policy.attach(model, generator, traceable=True)
        self.buffers = dict(model.named_buffers())

        def loss(params: Stacked, x: Tensor, y: Tensor, weight: Tensor) -> Tensor:
            logits = functional_call(model, (params, self.buffers), (x,))
            return algorithm.client_loss(model, logits, y, weight)

        self._grad = vmap(grad_and_value(loss), randomness="different")

    def train_round(
        self, sampled: list[int], start: State, data: list[ClientData]
    ) -> list[ClientUpdate | Rejection]:
        k = len(sampled)
        names = [n for n, _ in self.model.named_parameters()]
        params = {n: start[n].unsqueeze(0).repeat(k, *([1] * start[n].ndim)) for n in names}
        state = self._gather_state(sampled, params)
        x_all = torch.cat([d.x for d in data])
        y_all = torch.cat([d.y for d in data])
        sizes = [len(d) for d in data]
        loss_sum = torch.zeros(k, dtype=torch.float64, device=y_all.device)
        for _ in range(self.local_epochs):
            index, weight = self._schedule(sizes, y_all.device)
            for idx, w in zip(index, weight, strict=True):  # one step: a batch per client
                x = self.normalize(x_all[idx.flatten()]).unflatten(0, idx.shape)
                grads, losses = self._grad(params, x, y_all[idx], w)
                active = w.sum(1) > 0
                self._round(grads, self.policy.grad)
                self.optimizer.step(params, grads, state, active)
                self._round(params, self.policy.weight)
                loss_sum += losses.detach().double() * w.sum(1)
        self._save_state(sampled, state)
        return self._results(sampled, params, loss_sum, sizes, start)

    def _schedule(self, sizes: list[int], device: torch.device) -> tuple[Tensor, Tensor]:
        """Per-step sample indices (steps, K, batch) into the concatenated data, and 0/1 weights.

        Each client's data is shuffled for the epoch and cut into batches as the
        sequential engine does; short batches are padded by repeating their own samples.
        """
        b = self.batch_size
        steps = max(math.ceil(n / b) for n in sizes)
        index = torch.zeros(steps, len(sizes), b, dtype=torch.long)
        weight = torch.zeros(steps, len(sizes), b)
        offset = 0
        for j, n in enumerate(sizes):
            order = torch.randperm(n, generator=self.generator, device=self.generator.device).cpu()
            for s, batch in enumerate(order.split(b)):
                index[s, j] = offset + batch[torch.arange(b) % len(batch)]
                weight[s, j, : len(batch)] = 1
            index[math.ceil(n / b) :, j] = offset if n else 0  # inactive steps: any valid sample
            offset += n
        return index.to(device), weight.to(device)

    def _round(self, tensors: Stacked, fmt: BlockFormat) -> None:
        """Round each client's slice in place, with that client's own blocks."""
        if fmt.full_precision:
            return
        one = vmap(
            lambda t: quantize(t, fmt, self.generator, traceable=True), randomness="different"
        )
        with torch.no_grad():
            for t in tensors.values():
                t.copy_(one(t))

    def _gather_state(self, sampled: list[int], params: Stacked) -> Stacked:
        fresh = self.optimizer.init_state(params)
        for j, client in enumerate(sampled):
            for key, value in self.saved.get(client, {}).items():
                fresh[key][j] = value
        return fresh

    def _save_state(self, sampled: list[int], state: Stacked) -> None:
        if self.persist:
            for j, client in enumerate(sampled):
                self.saved[client] = {key: value[j].clone() for key, value in state.items()}

    @staticmethod
    def _results(
        sampled: list[int], params: Stacked, loss_sum: Tensor, sizes: list[int], start: State
    ) -> list[ClientUpdate | Rejection]:
        finite = torch.stack([p.flatten(1).isfinite().all(1) for p in params.values()]).all(0)
        results: list[ClientUpdate | Rejection] = []
        for j, client in enumerate(sampled):
            n = sizes[j]
            loss = float(loss_sum[j]) / n if n else math.nan
            if n and not (bool(finite[j]) and math.isfinite(loss)):
                results.append(Rejection(client, f"client {client}: training produced NaN/Inf"))
                continue
            state = dict(start) | {name: p[j].clone() for name, p in params.items()}
            results.append(ClientUpdate(client, state, n, loss))
        return results
