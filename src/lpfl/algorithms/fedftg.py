"""FedFTG (Zhang et al., CVPR 2022): data-free fine-tuning of the aggregate on the server.

After FedAvg, the server (float32 throughout; clients train exactly as in FedAvg) runs
``iterations`` rounds of a two-player game on the aggregate D with the uploaded client
models D_k as teachers:

* label sampling: y ~ p(y) ∝ Σ_k n_k^y (customised label sampling);
* class-level ensemble: p_ens(x) = Σ_k α_k^y softmax(D_k(x)), α_k^y = n_k^y / Σ_j n_j^y;
* generator G (``generator_steps`` Adam steps) minimises
  Σ_k α_k^y CE(D_k(G(z, y)), y)                      fidelity: each teacher says y
  - β_tran · ε · KL(p_ens ‖ softmax(D(G(z, y))))      hard samples: where D and the
                                                       ensemble still agree (ε = 1),
                                                       push toward their disagreement
  + β_div · L_div(z, G(z, y))                          diversity;
* the global model (``distill_steps`` Adam steps) minimises KL(p_ens ‖ softmax(D)) on
  those samples: it distils the class-weighted ensemble.

Defaults are the reference's settings (its ``fedtgp`` mode: 10 iterations of 1
generator + 5 distillation steps, Adam 1e-2 for G and 1e-4 for D, noise 128). The
reference's generator loss instead uses an L1 logit gap per teacher for the hard-sample
term and scales a batch-mean cross-entropy by the batch-mean weight; the per-sample
forms above are the paper's. The generator and both optimizers persist across rounds,
as in the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from .. import random_state
from ..models import stacking_pays
from .base import Check, ClientUpdate, Options, State, label_count_matrix, label_counts_problem
from .fedavg import FedAvg
from .generator import ImageGenerator, diversity_loss


@dataclass(frozen=True)
class FedFTGOptions(Options):
    iterations: int = 10  # generator/distillation alternations per round
    generator_steps: int = 1
    distill_steps: int = 5
    generator_lr: float = 1e-2
    lr: float = 1e-4  # the global model's Adam learning rate during fine-tuning
    batch_size: int = 32
    noise_dim: int = 128
    hard: float = 1.0  # β_tran
    diversity: float = 1.0  # β_div

    def checks(self) -> list[Check]:
        return [
            ("iterations", self.iterations >= 1, "must be >= 1"),
            ("generator_steps", self.generator_steps >= 0, "must be >= 0"),
            ("distill_steps", self.distill_steps >= 1, "must be >= 1"),
            ("generator_lr", self.generator_lr > 0, "must be > 0"),
            ("lr", self.lr > 0, "must be > 0"),
            ("batch_size", self.batch_size >= 2, "must be >= 2"),  # BatchNorm needs two
            ("noise_dim", self.noise_dim >= 1, "must be >= 1"),
            ("hard", self.hard >= 0, "must be >= 0"),
            ("diversity", self.diversity >= 0, "must be >= 0"),
        ]


def stack_states(updates: Sequence[ClientUpdate], device: torch.device) -> State:
    """The client models as one state whose tensors stack them (K, ...), in float32 on
    ``device``: a copy, so that their BatchNorm statistics may move (a teacher in training
    mode updates them) without touching the decoded uploads."""
    names = updates[0].state
    return {k: torch.stack([u.state[k] for u in updates]).to(device).float() for k in names}


def distillation_loss(student_logits: Tensor, ensemble: Tensor) -> Tensor:
    """Per sample KL(ensemble ‖ softmax(student)): what the global model minimises."""
    return (torch.xlogy(ensemble, ensemble) - ensemble * student_logits.log_softmax(-1)).sum(-1)


class FedFTG(FedAvg):
    name = "fedftg"

    def __init__(
        self,
        model: nn.Module,
        channels: int,
        size: int,
        num_classes: int,
        options: FedFTGOptions | None = None,
        weighting: str = "mean",
        seed: int = 0,
    ) -> None:
        """``model`` is a full-precision model of the task (no rounding attached): the
        global model is fine-tuned in it, and client models are run through it."""
        super().__init__(weighting)
        self.options = opts = (options or FedFTGOptions()).validate()
        self.model, self.num_classes = model, num_classes
        self.device = next(model.parameters()).device
        self.batched = stacking_pays(model)
        self.generator = ImageGenerator(num_classes, channels, size, opts.noise_dim).to(self.device)
        self.generator_optimizer = torch.optim.Adam(
            self.generator.parameters(), lr=opts.generator_lr
        )
        self.optimizer = torch.optim.Adam(model.parameters(), lr=opts.lr)
        self.seed = seed
        self.rng = torch.Generator(self.device).manual_seed(seed)
        self.last_distill_losses: list[float] = []

    def aggregate(self, updates: Sequence[ClientUpdate]) -> State:
        return self.fine_tune(super().aggregate(updates), updates)

    def check_update(self, update: ClientUpdate) -> str | None:
        return label_counts_problem(update, self.num_classes)

    def fine_tune(self, aggregate: State, updates: Sequence[ClientUpdate]) -> State:
        """The aggregate after data-free distillation from the client models."""
        opts = self.options
        counts = label_count_matrix(updates, self.num_classes).to(self.device)
        total = counts.sum(0)
        if not bool(total.sum() > 0):
            return aggregate  # no client holds data: nothing to distil
        label_p = total / total.sum()
        weights = counts / total.clamp(min=1)  # (K, C): α_k^y
        teachers = stack_states(updates, self.device)
        self.model.load_state_dict(aggregate)
        self.model.train()
        self.generator.train()
        self.last_distill_losses = []
        for _ in range(opts.iterations):
            y = torch.multinomial(label_p, opts.batch_size, replacement=True, generator=self.rng)
            z = torch.randn(opts.batch_size, opts.noise_dim, device=self.device, generator=self.rng)
            alpha = weights[:, y]  # (K, B)
            self.model.requires_grad_(False)
            for _ in range(opts.generator_steps):
                self._generator_step(y, z, alpha, teachers)
            self.model.requires_grad_(True)
            with torch.no_grad():
                x = self.generator(y, z)
                ensemble, _ = self._ensemble(x, alpha, teachers)
            for _ in range(opts.distill_steps):
                loss = distillation_loss(self.model(x), ensemble).mean()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.last_distill_losses.append(loss.item())
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def _ensemble(self, x: Tensor, alpha: Tensor, teachers: State) -> tuple[Tensor, Tensor]:
        """The class-weighted ensemble prediction (B, C) and each teacher's logits (K, B, C).

        ``teachers`` holds the K client models stacked (``stack_states``). Where stacking
        pays (a GPU), they run as one batched forward, as the vectorized engine trains
        clients, instead of K small ones launched from Python; each of a round's
        iterations runs them twice, once with a backward pass.
        """
        if self.batched:
            logits = vmap(lambda params: functional_call(self.model, params, (x,)))(teachers)
        else:  # a ConvNet on the CPU: K forwards are faster there (``stacking_pays``)
            each = ({k: v[i] for k, v in teachers.items()} for i in range(len(alpha)))
            logits = torch.stack([functional_call(self.model, t, (x,)) for t in each])
        return (alpha[..., None] * logits.softmax(-1)).sum(0), logits

    def _generator_step(self, y: Tensor, z: Tensor, alpha: Tensor, teachers: State) -> None:
        opts = self.options
        x = self.generator(y, z)
        ensemble, logits = self._ensemble(x, alpha, teachers)
        targets = y.repeat(len(alpha))  # each teacher's logits against the drawn labels
        ce = F.cross_entropy(logits.flatten(0, 1), targets, reduction="none").view_as(alpha)
        fidelity = (alpha * ce).sum(0).mean()
        student = self.model(x)
        agree = (student.argmax(-1) == ensemble.argmax(-1)).float()
        hard = (agree * distillation_loss(student, ensemble)).mean()
        loss = fidelity - opts.hard * hard + opts.diversity * diversity_loss(z, x)
        self.generator_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.generator_optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.state_dict(),
            "generator_optimizer": self.generator_optimizer.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self.rng.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.generator_optimizer.load_state_dict(state["generator_optimizer"])
        self.optimizer.load_state_dict(state["optimizer"])
        random_state.restore(self.rng, state["rng"], self.seed + 1)
