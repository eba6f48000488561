"""The vectorized engine: all sampled clients of a round train together, in one batched step.

Parameters and optimizer state of the K sampled clients are stacked along a leading
client dimension; ``torch.func.vmap`` maps one client's forward over all of them and
a single backward pass gives every client's gradient, with the same per-client
rounding as the sequential engine (activations and errors rounded per client,
weights and gradients per client block).

Clients hold different amounts of data. Every step takes one batch from each client;
a client that has run out of batches is padded and left out of the optimizer step,
so neither its weights nor its optimizer state change. Padding repeats real samples of the same
batch, which leaves each client's per-tensor activation maxima, and so its rounding,
exactly as in the sequential engine; padded samples carry zero loss weight.

Server-made inputs a step consumes (FedGen's generated features) are drawn for all
clients at once, outside ``vmap``, in the order the sequential engine draws them for
one client; the regulariser that uses them runs inside, with each client's own head.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.func import functional_call, vmap
from torch.nn.utils.rnn import pad_sequence

from ..algorithms import ClientUpdate, Inputs, State
from ..models import head_forward
from ..quant import BlockFormat, quantize
from ..quant.finite import finite_slices
from .client import ClientTrainer
from .messages import ClientData, Rejection
from .stacked_optim import Stacked, Step, build_stacked_optimizer
from .step_graph import Capturer, StepGraph


def _all_finite(tensors: Stacked) -> Tensor:
    """Per client: True when none of its slices holds NaN/Inf."""
    return torch.stack([finite_slices(t) for t in tensors.values()]).all(0)


class VectorizedTrainer(ClientTrainer):
    def __init__(self, *args: Any, graphs: Capturer | None = None, **kwargs: Any) -> None:
        """``graphs``: capture the step where every client takes a batch and replay it
        (``step_graph.py``)."""
        super().__init__(*args, **kwargs)
        spec = self.optimizer
        self.stacked_optimizer = build_stacked_optimizer(spec.name, spec.lr, spec.momentum)
        self.graph = (
            None if graphs is None else StepGraph(self._step, self.stacked_optimizer, graphs)
        )
        model, algorithm = self.model, self.algorithm
        buffers = dict(model.named_buffers())

        def loss(
            params: Stacked, x: Tensor, y: Tensor, weight: Tensor, drawn: Inputs
        ) -> tuple[Tensor, Tensor]:
            logits = functional_call(model, (params, buffers), (x,))
            task = algorithm.client_loss(model, logits, y, weight)
            total = task
            for term in (
                algorithm.penalty(params),
                algorithm.regularizer(
                    lambda f: head_forward(model, f, params), logits, y, weight, drawn
                ),
            ):
                total = total if term is None else total + term
            return total, task

        self._losses = vmap(loss, randomness="different")

    def _grad(
        self, params: Stacked, x: Tensor, y: Tensor, weight: Tensor, drawn: Inputs
    ) -> tuple[Stacked, tuple[Tensor, Tensor]]:
        """Per-client gradients and losses (total, task).

        Clients share no parameter, so the gradient of the summed loss with respect to a
        client's slice is that client's own gradient: one plain backward pass through the
        mapped forward gives them all, with the rounding points' backward as ordinary
        autograd nodes (cheaper than mapping a gradient transform). Gradients come back
        contiguous, so rounding and the fused optimizer read them in memory order.
        """
        leaves = {n: p.detach().requires_grad_() for n, p in params.items()}
        total, task = self._losses(leaves, x, y, weight, drawn)
        grads = torch.autograd.grad(total.sum(), list(leaves.values()))
        contiguous = {n: g.contiguous() for n, g in zip(leaves, grads, strict=True)}
        return contiguous, (total.detach(), task.detach())

    def train_round(
        self, sampled: list[int], start: State, data: list[ClientData]
    ) -> list[ClientUpdate | Rejection]:
        k = len(sampled)
        self.algorithm.begin_local_training(start)
        names = [n for n, _ in self.model.named_parameters()]
        params = {n: start[n].unsqueeze(0).repeat(k, *([1] * start[n].ndim)) for n in names}
        state = self._gather_state(sampled, params)
        x_all = torch.cat([d.x for d in data])
        y_all = torch.cat([d.y for d in data])
        sizes = [len(d) for d in data]
        counts = torch.stack([self.label_counts(d) for d in data])
        loss_sum = torch.zeros(k, dtype=torch.float64, device=y_all.device)
        failed = torch.zeros(k, dtype=torch.bool, device=y_all.device)
        steps = [math.ceil(n / self.batch_size) for n in sizes]
        graph = self.graph
        if graph is not None:  # the step runs on the graph's fixed tensors, this round's values
            fixed = graph.load(
                params, state, x_all, y_all, counts, self.batch_size, self.algorithm.graph_key()
            )
            params, state, counts, step = fixed.params, fixed.state, fixed.counts, fixed.step
            x_all, y_all = fixed.x, fixed.y
        else:
            step = self.stacked_optimizer.bind(params, state)
        for index, weight in self._schedule(sizes, y_all.device):  # one (index, weight) per epoch
            for s, (idx, w) in enumerate(zip(index, weight, strict=True)):  # a batch per client
                active = self._active(steps, s)
                if graph is not None and len(active) == k:
                    losses = graph.step(idx, w)
                else:
                    losses = self._step(params, step, active, x_all, y_all, idx, w, counts)
                # A client whose loss turns NaN/Inf is rejected at the end, and its optimizer
                # state is not kept. Its NaN cannot reach other clients: every rounding block
                # and optimizer update stays inside one client's slice. Letting it train on
                # spares every step a masked update, and the GPU a wait on the host.
                failed |= ~losses.isfinite()
                loss_sum += torch.where(failed, 0.0, losses.double() * w.sum(1))
        ok = _all_finite(params) & ~failed
        self._save_state(sampled, state, ok)
        if graph is not None:  # the graph's tensors take the next round's clients
            params = {n: p.clone() for n, p in params.items()}
        return self._results(sampled, params, loss_sum / self.local_epochs, ok, counts, start)

    def _step(
        self, params: Stacked, step: Step, active: list[int], x_all: Tensor, y_all: Tensor,
        idx: Tensor, w: Tensor, counts: Tensor,
    ) -> Tensor:  # fmt: skip
        """One step of every client on the batch ``idx`` picks from the round's data: the
        gradients rounded, the ``active`` clients stepped, the weights rounded back. Returns
        the per-client task losses. ``benchmarks/graph_probe.py`` times this very step."""
        x = self.normalize(x_all[idx.flatten()]).unflatten(0, idx.shape)
        y = y_all[idx]
        drawn = self.algorithm.draw(y, counts, self.generator)
        grads, (_, losses) = self._grad(params, x, y, w, drawn)
        self._round(grads, self.policy.grad)
        step(grads, active)
        self._round(params, self.policy.weight)
        return losses

    @staticmethod
    def _active(steps: list[int], s: int) -> list[int]:
        """The clients with a batch at step s of an epoch (the others ran out of data)."""
        return [j for j, n in enumerate(steps) if s < n]

    def _schedule(self, sizes: list[int], device: torch.device) -> list[tuple[Tensor, Tensor]]:
        """For each epoch: sample indices (steps, K, batch) into the concatenated data, and
        0/1 weights.

        Each client's data is shuffled per epoch and cut into batches as the sequential
        engine does, drawing the permutations in the same order (client by client), so
        with nearest rounding both engines see the same batches. Short batches are
        padded by repeating their own samples.
        """
        b = self.batch_size
        gen = self.generator
        orders = [
            [
                torch.randperm(n, generator=gen, device=gen.device).cpu()
                for _ in range(self.local_epochs)
            ]
            for n in sizes
        ]
        steps = max(math.ceil(n / b) for n in sizes)
        n = torch.tensor(sizes)
        offsets = n.cumsum(0) - n
        idle = torch.where(n > 0, offsets, 0)  # an idle step reads any valid sample
        s = torch.arange(steps).view(-1, 1, 1)
        t = torch.arange(b)
        real = (n.view(1, -1, 1) - s * b).clamp(0, b)  # (steps, K, 1): samples in batch s
        pos = s * b + t % real.clamp(min=1)  # a short batch repeats its own samples
        weight = (t < real).float()
        epochs = []
        for e in range(self.local_epochs):
            perms = pad_sequence([order[e] for order in orders], batch_first=True)
            picked = perms.gather(1, pos.clamp(max=perms.shape[1] - 1).transpose(0, 1).flatten(1))
            sample = offsets.view(1, -1, 1) + picked.view(len(sizes), steps, b).transpose(0, 1)
            index = torch.where(real > 0, sample, idle.view(1, -1, 1))
            epochs.append((index.to(device), weight.to(device)))
        return epochs

    def _round(self, tensors: Stacked, fmt: BlockFormat) -> None:
        """Round each client's slice in place, with that client's own blocks, in one call."""
        if fmt.full_precision:
            return
        with torch.no_grad():
            for t in tensors.values():
                t.copy_(quantize(t, fmt, self.generator, batch_dims=1, check=False))

    def _gather_state(self, sampled: list[int], params: Stacked) -> Stacked:
        """The sampled clients' optimizer states, stacked in ``sampled`` order.

        Every client's state lives in one tensor per key with a row per client id (the
        ConvNet's Adam moments for 80 clients are about 320 MB), so gathering and keeping
        a round's states is one indexing op per key, not one copy per client and key:
        on a GPU that is a few dozen kernel launches a round instead of thousands. A
        client that never trained holds zeros, which is each optimizer's fresh state
        (zero moments and step count, a zero momentum buffer).
        """
        init = self.stacked_optimizer.init_state
        if not self.persist:
            return init(params)
        have = len(next(iter(self.saved.values()))) if self.saved else 0
        rows = max(sampled) + 1
        if have < rows:  # clients seen for the first time: fresh rows for them
            extra = rows - have  # init_state reads shapes only: give it unallocated ones
            room = init({n: p.new_empty(()).expand(extra, *p.shape[1:]) for n, p in params.items()})
            self.saved = {k: torch.cat([self.saved[k], v]) if have else v for k, v in room.items()}
        index = torch.tensor(sampled, device=next(iter(params.values())).device)
        return {key: value[index] for key, value in self.saved.items()}

    def _save_state(self, sampled: list[int], state: Stacked, ok: Tensor) -> None:
        """Keep each client's optimizer state; a rejected client keeps its previous one."""
        if self.persist:
            kept = ok.nonzero().flatten()
            clients = torch.tensor(sampled, device=kept.device)[kept]
            everyone = len(kept) == len(sampled)  # the usual case: no gather needed
            for key, value in state.items():
                self.saved[key][clients] = value if everyone else value[kept]

    def load_state_dict(self, state: dict) -> None:
        if any(not isinstance(key, str) for key in state["saved"]):
            raise ValueError(
                "this checkpoint holds optimizer states per client, the layout of lpfl "
                "before 2026-11-27; this version keeps them stacked: start the run afresh"
            )
        super().load_state_dict(state)

    @staticmethod
    def _results(
        sampled: list[int],
        params: Stacked,
        loss_sum: Tensor,
        ok: Tensor,
        counts: Tensor,
        start: State,
    ) -> list[ClientUpdate | Rejection]:
        results: list[ClientUpdate | Rejection] = []
        # Each to the host in one copy: per client and value, a GPU would wait 3 x K times.
        all_counts, losses, oks = counts.tolist(), loss_sum.tolist(), ok.tolist()
        for j, client in enumerate(sampled):
            label_counts = tuple(all_counts[j])
            n = sum(label_counts)
            loss = losses[j] / n if n else math.nan
            if n and not (oks[j] and math.isfinite(loss)):
                results.append(Rejection(client, f"client {client}: training produced NaN/Inf"))
                continue
            # Views into this round's stacked weights, which nothing writes to any more.
            state = dict(start) | {name: p[j] for name, p in params.items()}
            results.append(ClientUpdate(client, state, n, loss, label_counts))
        return results
