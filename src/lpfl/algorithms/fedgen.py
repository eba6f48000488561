"""FedGen (Zhu, Hong & Zhou, 2021): a server-trained feature generator regularises clients.

Server, each round, in float32: a label-conditioned generator G(y, ε) learns to produce
features that the uploaded client heads classify as y, each client's cross-entropy
weighted by its share of label y, plus a diversity term. Then FedAvg.

Client, each step, in low precision: with the generator fixed, features are generated
for the batch's labels and for labels drawn from the client's own classes, rounded in
the model's activation format (they enter the head like activations), and

    loss = CE(f(x), y) + β_t·KL(softmax(h(G(y))) ‖ softmax(f(x))) + α_t·CE(h(G(ỹ)), ỹ),

with h the client's own head (the KL target is detached) and α_t, β_t decaying by
``decay`` per round from ``alpha``, ``beta`` (floored at 1e-4). No regulariser before
the generator has been trained once. Zhu et al. and the reference scale the last term
by n_gen / batch, which is 1 at their settings (32 / 32); here it is α_t alone, so a
short last batch weighs it the same in both engines.

Defects of the reference fixed here: the clients regularise with the generator the
server trains (the reference's clients read an untrained one whenever the moving average
is on), and the server's teacher logits come from each uploaded client head (the
reference used the global model's head for every client).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .. import random_state
from ..models import HEAD
from ..quant import BlockFormat, quantize
from .base import (
    Check,
    ClientUpdate,
    Inputs,
    Options,
    State,
    label_count_matrix,
    label_counts_problem,
    sample_mean,
)
from .fedavg import FedAvg
from .generator import FeatureGenerator, diversity_loss

COEFFICIENT_FLOOR = 1e-4  # Zhu et al. and the reference never let the weights reach 0
_GENERATOR, _TRAINED = "generator.", "trained-rounds"  # names in ``client_inputs``


@dataclass(frozen=True)
class FedGenOptions(Options):
    """Defaults are the reference's (the paper's runs) unless said otherwise."""

    lr: float = 3e-4  # generator Adam learning rate
    steps: int = 5  # generator steps per round
    batch_size: int = 32  # generated samples per generator step and per client step
    noise_dim: int = 32
    hidden_dim: int = 32
    alpha: float = 0.1  # client weight of CE on generated features of sampled labels
    beta: float = 2.5  # client weight of the KL toward the head's view of G(y)
    diversity: float = 1.0  # generator diversity weight (Zhu et al.; the reference uses 0)
    decay: float = 0.98  # per round: α, β and the generator learning rate

    def checks(self) -> list[Check]:
        return [
            ("lr", self.lr > 0, "must be > 0"),
            ("steps", self.steps >= 1, "must be >= 1"),
            ("batch_size", self.batch_size >= 2, "must be >= 2"),  # BatchNorm needs two
            ("noise_dim", self.noise_dim >= 1, "must be >= 1"),
            ("hidden_dim", self.hidden_dim >= 1, "must be >= 1"),
            ("alpha", self.alpha >= 0, "must be >= 0"),
            ("beta", self.beta >= 0, "must be >= 0"),
            ("diversity", self.diversity >= 0, "must be >= 0"),
            ("decay", 0 < self.decay <= 1, "must be in (0, 1]"),
        ]


class FedGen(FedAvg):
    name = "fedgen"

    def __init__(
        self,
        feature_dim: int,
        num_classes: int,
        act: BlockFormat,
        options: FedGenOptions | None = None,
        weighting: str = "mean",
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        super().__init__(weighting)
        self.options = opts = (options or FedGenOptions()).validate()
        self.num_classes = num_classes
        self.act = act  # clients round generated features like their activations
        self.device = torch.device(device)
        self.generator = FeatureGenerator(
            num_classes, feature_dim, opts.noise_dim, opts.hidden_dim
        ).to(self.device)
        self.optimizer = torch.optim.Adam(self.generator.parameters(), lr=opts.lr)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, opts.decay)
        self.seed = seed
        self.rng = torch.Generator(self.device).manual_seed(seed)  # server-side draws only
        # (α_t, β_t) as the clients' step reads them: set with trained_rounds, in place.
        self.client_weights = torch.zeros(2, device=self.device)
        self.trained_rounds = 0
        self.last_generator_losses: list[float] = []

    @property
    def trained_rounds(self) -> int:
        return self._trained_rounds

    @trained_rounds.setter
    def trained_rounds(self, value: int) -> None:
        """How many rounds trained the generator; it sets the clients' coefficients, kept
        in one tensor from round to round because a captured client step (a CUDA graph)
        reads them from there: Python numbers would be frozen at the capture."""
        self._trained_rounds = value
        self.client_weights.copy_(torch.tensor(self.coefficients()))

    def graph_key(self) -> tuple:
        return (self.trained_rounds > 0,)  # from the first trained round on, clients draw

    def coefficients(self) -> tuple[float, float]:
        """The client weights (α_t, β_t) for the coming round; (0, 0) before any training."""
        if self.trained_rounds == 0:
            return 0.0, 0.0
        f = self.options.decay**self.trained_rounds
        return (
            max(COEFFICIENT_FLOOR, self.options.alpha * f),
            max(COEFFICIENT_FLOOR, self.options.beta * f),
        )

    # --- client side -------------------------------------------------------------------

    def draw(self, targets: Tensor, label_counts: Tensor, generator: torch.Generator) -> Inputs:
        """Generated features for the batch's labels and for n_gen labels drawn uniformly
        from the client's own classes, rounded like activations, one block set per client."""
        if self.trained_rounds == 0:
            return {}
        lead = targets.shape[:-1]
        n = self.options.batch_size
        # Gumbel-max: a uniform draw among the classes the client holds, for any lead shape.
        gumbel = (
            -torch.empty(*lead, n, self.num_classes, device=targets.device)
            .exponential_(generator=generator)
            .log()
        )
        held = torch.where(label_counts > 0, 0.0, -torch.inf).unsqueeze(-2)
        sampled = (held + gumbel).argmax(-1)
        self.generator.eval()  # fixed on clients: running statistics, one map for every sample
        with torch.no_grad():
            same = self._generate(targets, generator)
            other = self._generate(sampled, generator)
        # Unchecked, as the engines round activations: a check would wait for the host
        # (which a captured step cannot), and a NaN here rejects the client anyway.
        dims = len(lead)
        return {
            "same": quantize(same, self.act, generator, batch_dims=dims, check=False),
            "sampled": quantize(other, self.act, generator, batch_dims=dims, check=False),
            "labels": sampled,
        }

    def _generate(self, labels: Tensor, generator: torch.Generator) -> Tensor:
        noise = torch.randn(
            labels.numel(), self.options.noise_dim, device=labels.device, generator=generator
        )
        return self.generator(labels.flatten(), noise).view(*labels.shape, -1)

    def regularizer(
        self,
        head: Callable[[Tensor], Tensor],
        logits: Tensor,
        targets: Tensor,
        weight: Tensor | None,
        drawn: Inputs,
    ) -> Tensor | None:
        if not drawn:
            return None
        alpha, beta = self.client_weights
        teacher = head(drawn["same"]).detach().softmax(-1)
        kl = (torch.xlogy(teacher, teacher) - teacher * logits.log_softmax(-1)).sum(-1)
        generated = head(drawn["sampled"])
        ce = torch.nn.functional.cross_entropy(generated, drawn["labels"])
        return beta * sample_mean(kl, weight) + alpha * ce

    # --- what travels between them ----------------------------------------------------

    def client_inputs(self) -> State:
        """The generator as the server left it (running statistics included) and how many
        rounds trained it, which sets the clients' coefficients."""
        state = {f"{_GENERATOR}{k}": v for k, v in self.generator.state_dict().items()}
        return state | {_TRAINED: torch.tensor(self.trained_rounds)}

    def load_client_inputs(self, inputs: State) -> None:
        if _TRAINED not in inputs:
            raise ValueError(f"fedgen clients need the generator, got {list(inputs)}")
        self.trained_rounds = int(inputs[_TRAINED])
        generator = {k.removeprefix(_GENERATOR): v for k, v in inputs.items() if k != _TRAINED}
        self.generator.load_state_dict(generator)

    def check_update(self, update: ClientUpdate) -> str | None:
        return label_counts_problem(update, self.num_classes)

    # --- server side -------------------------------------------------------------------

    def aggregate(self, updates: Sequence[ClientUpdate]) -> State:
        self.train_generator(updates)
        return super().aggregate(updates)

    def train_generator(self, updates: Sequence[ClientUpdate]) -> None:
        """``steps`` Adam steps on G against the uploaded heads, in float32."""
        counts = label_count_matrix(updates, self.num_classes).to(self.device)
        total = counts.sum(0)
        weights = counts / total.clamp(min=1)  # (K, C): client k's share of label y
        labels = total.nonzero().flatten()  # classes some client holds
        if len(labels) == 0:
            return  # no client holds data: nothing to learn from this round
        heads_w = torch.stack([u.state[f"{HEAD}.weight"].float() for u in updates]).to(self.device)
        heads_b = torch.stack([u.state[f"{HEAD}.bias"].float() for u in updates]).to(self.device)
        n, opts = self.options.batch_size, self.options
        self.generator.train()
        self.last_generator_losses = []
        for _ in range(opts.steps):
            pick = torch.randint(len(labels), (n,), device=self.device, generator=self.rng)
            y = labels[pick]
            noise = torch.randn(n, opts.noise_dim, device=self.device, generator=self.rng)
            features = self.generator(y, noise)
            logits = torch.einsum("kcd,nd->knc", heads_w, features) + heads_b[:, None]
            ce = torch.nn.functional.cross_entropy(
                logits.flatten(0, 1), y.repeat(len(updates)), reduction="none"
            ).view(len(updates), n)
            teacher = (weights[:, y] * ce).sum(0).mean()
            loss = teacher + opts.diversity * diversity_loss(noise, features)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.last_generator_losses.append(teacher.item())
        self.scheduler.step()
        self.trained_rounds += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": self.rng.get_state(),
            "trained_rounds": self.trained_rounds,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.trained_rounds = state["trained_rounds"]
        random_state.restore(self.rng, state["rng"], self.seed + self.trained_rounds)
