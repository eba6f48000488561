"""The pieces every round loop builds the same way: the simulator's and Flower's.

One place decides how a config becomes the initial model, the server, a client's
trainer and a round's metrics, so the two loops cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..algorithms import NEEDS_SERVER_DATA, Algorithm, State, build_algorithm
from ..algorithms.server_optimizers import build_server_optimizer
from ..config import RunConfig
from ..data import DATASETS, holdout, partition
from ..models import build_model
from ..quant import PrecisionPolicy
from .client import LocalTrainer, OptimizerSpec
from .evaluate import evaluate
from .messages import ClientReply, DivergenceError
from .recorder import RoundMetrics
from .server import Server
from .vectorized import VectorizedTrainer


def split(cfg: RunConfig, labels: np.ndarray, clients: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Each client's training-set indices and the server's validation indices.

    An algorithm that scores clients (ABAvg) gets a validation split carved from the
    training set first, so no client ever holds it; otherwise the server holds nothing.
    Every loop and every Flower node calls this, so all see the same split for a seed.
    """
    pool, server_val = np.arange(len(labels)), np.array([], dtype=np.int64)
    if cfg.algorithm in NEEDS_SERVER_DATA:
        pool, server_val = holdout(labels, cfg.server_val_fraction, cfg.seed)
    parts = partition(labels[pool], clients, cfg.partition, cfg.alpha, cfg.seed)
    return [pool[p] for p in parts], server_val


def scorer(
    model: nn.Module, x: Tensor, y: Tensor, normalize: Callable[[Tensor], Tensor]
) -> Callable[[State], float]:
    """A client model's accuracy on the server's validation split (never the test set).

    ``model`` serves as scratch space: it is reloaded before every evaluation.
    """

    def score(state: State) -> float:
        model.load_state_dict(state)
        return evaluate(model, x, y, normalize)[0]

    return score


def new_model(cfg: RunConfig, device: torch.device) -> nn.Module:
    spec = DATASETS[cfg.dataset]
    return build_model(cfg.model, spec.channels, spec.size, spec.num_classes).to(device)


def initial_model(cfg: RunConfig, device: torch.device) -> nn.Module:
    """The global model at round 0: the same weights for the same seed, in every loop."""
    torch.manual_seed(cfg.seed)
    return new_model(cfg, device)


def policy(cfg: RunConfig) -> PrecisionPolicy:
    return PrecisionPolicy.uniform(
        cfg.bits, cfg.rounding, cfg.weight_block, cfg.act_block, cfg.grad_block, cfg.error_block
    )


def algorithm(cfg: RunConfig, score: Callable[[State], float] | None = None) -> Algorithm:
    return build_algorithm(cfg.algorithm, cfg.aggregation, cfg.prox_mu, score)


def server(cfg: RunConfig, model: nn.Module, algo: Algorithm, generator: torch.Generator) -> Server:
    optimizer = build_server_optimizer(
        cfg.server_opt, cfg.resolved_server_lr(), cfg.server_momentum
    )
    return Server(
        model.state_dict(),
        algo,
        cfg.moving_average,
        cfg.ma_start,
        downlink=cfg.downlink(),
        generator=generator,
        optimizer=optimizer,
    )


def trainer(
    cfg: RunConfig,
    model: nn.Module,
    algo: Algorithm,
    normalize: Callable[[Tensor], Tensor],
    generator: torch.Generator,
    engine: str | None = None,
) -> LocalTrainer | VectorizedTrainer:
    """The client trainer ``engine`` (default: ``cfg.engine``) asks for."""
    engine_class = VectorizedTrainer if (engine or cfg.engine) == "vectorized" else LocalTrainer
    return engine_class(
        model,
        policy(cfg),
        algo,
        OptimizerSpec(cfg.optimizer, cfg.lr, cfg.momentum),
        normalize,
        cfg.local_epochs,
        cfg.batch_size,
        generator,
        persist=cfg.optimizer_state == "persist",
    )


def evaluate_global(
    model: nn.Module,
    state: State,
    x: Tensor,
    y: Tensor,
    normalize: Callable[[Tensor], Tensor],
    rnd: int,
) -> tuple[float, float]:
    """Test accuracy and loss of the global model; a NaN loss stops the run."""
    model.load_state_dict(state)
    acc, loss = evaluate(model, x, y, normalize)
    if not math.isfinite(loss):
        raise DivergenceError(f"round {rnd}: test loss is {loss}")
    return acc, loss


def round_metrics(
    rnd: int,
    evaluated: tuple[float, float] | None,
    seconds: float,
    sampled: int,
    replies: Sequence[ClientReply],
    rejected: int,
    broadcast: bytes,
    quantized: tuple[float, float] | None = None,
    on_clients: tuple[float, float] | None = None,
) -> RoundMetrics:
    """One round's record: the train loss is the sample-weighted mean over the replies."""
    losses = [(r.train_loss, r.num_samples) for r in replies if r.num_samples]
    train_loss = sum(lo * n for lo, n in losses) / sum(n for _, n in losses) if losses else math.nan
    acc, loss = evaluated or (None, None)
    acc_q, loss_q = quantized or (None, None)
    acc_c, loss_c = on_clients or (None, None)
    return RoundMetrics(
        rnd,
        acc,
        loss,
        train_loss,
        seconds,
        clients=sampled,
        uploads=len(replies),
        rejected=rejected,
        bytes_up=sum(len(r.payload) for r in replies),
        bytes_down=len(broadcast) * sampled,
        quantized_test_accuracy=acc_q,
        quantized_test_loss=loss_q,
        client_accuracy=acc_c,
        client_loss=loss_c,
    )
