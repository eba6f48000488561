"""The pieces every round loop builds the same way: the simulator's and Flower's.

One place decides how a config becomes the initial model, the server, a client's
trainer and a round's metrics, so the two loops cannot drift apart.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..algorithms import (
    ALGORITHMS,
    GENERATIVE,
    SUBMODEL_ALGORITHMS,
    Algorithm,
    Generative,
    PluginContext,
    State,
    SubModelAlgorithm,
    build_algorithm,
    build_submodel_algorithm,
    needs_server_data,
    plugins,
)
from ..algorithms.server_optimizers import build_server_optimizer
from ..algorithms.submodels import assign_widths, parse_widths
from ..config import ConfigError, RunConfig
from ..data import DATASETS, holdout, partition
from ..models import build_model, stacking_pays
from ..quant import PrecisionPolicy
from .client import LocalTrainer, OptimizerSpec
from .evaluate import evaluate
from .messages import ClientReply, DivergenceError
from .recorder import RoundMetrics
from .server import Server
from .step_graph import CudaGraphs
from .submodel_trainer import SubModelTrainer
from .vectorized import VectorizedTrainer

log = logging.getLogger(__name__)


def model_maker(cfg: RunConfig) -> Callable[[float], nn.Module]:
    """Builds the configured architecture at a given width (1 = the full model)."""
    spec = DATASETS[cfg.dataset]
    return lambda width: build_model(cfg.model, spec.channels, spec.size, spec.num_classes, width)


def split(cfg: RunConfig, labels: np.ndarray, clients: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Each client's training-set indices and the server's validation indices.

    An algorithm that scores clients (ABAvg) gets a validation split carved from the
    training set first, so no client ever holds it; otherwise the server holds nothing.
    Every loop and every Flower node calls this, so all see the same split for a seed.
    """
    pool, server_val = np.arange(len(labels)), np.array([], dtype=np.int64)
    if needs_server_data(cfg.algorithm):
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
    """The global model's architecture (for HeteroFL/SplitMix, the algorithm's global model)."""
    if cfg.algorithm in SUBMODEL_ALGORITHMS:
        return submodel_algorithm(cfg).global_model().to(device)
    return model_maker(cfg)(1.0).to(device)


def initial_model(cfg: RunConfig, device: torch.device) -> nn.Module:
    """The global model at round 0: the same weights for the same seed, in every loop."""
    torch.manual_seed(cfg.seed)
    return new_model(cfg, device)


def policy(cfg: RunConfig) -> PrecisionPolicy:
    return PrecisionPolicy.uniform(
        cfg.bits, cfg.rounding, cfg.weight_block, cfg.act_block, cfg.grad_block, cfg.error_block
    )


def algorithm(
    cfg: RunConfig,
    score: Callable[[State], float] | None = None,
    device: torch.device | None = None,
) -> Algorithm:
    """The configured algorithm; FedGen and FedFTG keep their server-side models on ``device``."""
    if cfg.algorithm not in ALGORITHMS:
        plugin = plugins.find(cfg.algorithm)
        if plugin is None:  # validate() found it; a node without the package does not
            raise ConfigError(f"--algorithm: no plugin {cfg.algorithm!r} is installed here")
        context = PluginContext(
            cfg.aggregation,
            cfg.seed,
            device or torch.device("cpu"),
            score if plugin.needs_server_data else None,
        )
        try:
            return plugin.build(context)
        except TypeError as exc:
            raise ConfigError(f"--algorithm {cfg.algorithm}: {exc}") from exc
    if cfg.algorithm in SUBMODEL_ALGORITHMS:
        return submodel_algorithm(cfg)  # type: ignore[return-value]
    generative = None
    if cfg.algorithm in GENERATIVE:
        spec = DATASETS[cfg.dataset]
        generative = Generative(
            new_model(cfg, device or torch.device("cpu")),  # full precision: no rounding attached
            spec.channels,
            spec.size,
            policy(cfg).act,
            cfg.seed,
            cfg.fedgen_options(),
            cfg.fedftg_options(),
        )
    return build_algorithm(cfg.algorithm, cfg.aggregation, cfg.prox_mu, score, generative)


def submodel_algorithm(cfg: RunConfig) -> SubModelAlgorithm:
    """HeteroFL/SplitMix with each client's width budget drawn as ``--hetero-assign`` says."""
    widths = assign_widths(
        parse_widths(cfg.hetero_widths), cfg.clients, cfg.hetero_assign, cfg.seed
    )
    (base,) = parse_widths(cfg.splitmix_base)
    return build_submodel_algorithm(
        cfg.algorithm, model_maker(cfg), widths, base, cfg.seed, cfg.aggregation
    )


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


def engine_name(cfg: RunConfig, model: nn.Module, algo: Algorithm) -> str:
    """The engine that trains the clients: what ``--engine`` names, or for ``auto`` the
    faster one here.

    Stacking clients wins on CUDA (3x for the paper's ConvNet) and on the CPU for the
    MLP (1.5-2.2x). On the CPU, though, ``vmap`` turns a convolution into a grouped
    one and GroupNorm's per-client affine into extra passes over the activations:
    the paper's ConvNet trains about 2x slower stacked than one client at a time
    (``models.stacking_pays``). HeteroFL/SplitMix clients have different shapes and
    always train one after another, on the sub-model engine.
    """
    if isinstance(algo, SubModelAlgorithm):
        return "sequential"
    if cfg.engine != "auto":
        return cfg.engine
    return "vectorized" if stacking_pays(model) else "sequential"


def trainer(
    cfg: RunConfig,
    model: nn.Module,
    algo: Algorithm,
    normalize: Callable[[Tensor], Tensor],
    generator: torch.Generator,
    engine: str | None = None,
) -> LocalTrainer | VectorizedTrainer | SubModelTrainer:
    """The client trainer ``engine`` (default: ``engine_name``) asks for."""
    if isinstance(algo, SubModelAlgorithm):
        if cfg.engine == "vectorized":
            log.warning(
                "%s: clients train sub-models of different shapes, which cannot be "
                "stacked; using the sequential sub-model engine", algo.name,
            )  # fmt: skip
        device = next(model.parameters()).device
        return SubModelTrainer(
            algo, policy(cfg), OptimizerSpec(cfg.optimizer, cfg.lr, cfg.momentum), normalize,
            cfg.local_epochs, cfg.batch_size, generator, device,
            persist=cfg.optimizer_state == "persist",
        )  # fmt: skip
    engine = engine or engine_name(cfg, model, algo)
    engine_class = VectorizedTrainer if engine == "vectorized" else LocalTrainer
    return local_trainer(cfg, model, algo, normalize, generator, engine_class)


def local_trainer(
    cfg: RunConfig,
    model: nn.Module,
    algo: Algorithm | SubModelAlgorithm,
    normalize: Callable[[Tensor], Tensor],
    generator: torch.Generator,
    engine_class: type[LocalTrainer | VectorizedTrainer] = LocalTrainer,
) -> LocalTrainer | VectorizedTrainer:
    """A trainer of clients that all train ``model``'s architecture (a Flower node's
    HeteroFL/SplitMix sub-model is one such model: the server planned it)."""
    graphs = {}
    if engine_class is VectorizedTrainer and cfg.cuda_graph and generator.device.type == "cuda":
        graphs = {"graphs": CudaGraphs(generator)}
    return engine_class(
        model,
        policy(cfg),
        algo,  # type: ignore[arg-type]
        OptimizerSpec(cfg.optimizer, cfg.lr, cfg.momentum),
        normalize,
        cfg.local_epochs,
        cfg.batch_size,
        generator,
        persist=cfg.optimizer_state == "persist",
        **graphs,
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
    bytes_down: int | None = None,
    on_clients: tuple[float, float] | None = None,
    phases: Mapping[str, float] | None = None,
    client_drift: float | None = None,
) -> RoundMetrics:
    """One round's record: the train loss is the sample-weighted mean over the replies.

    ``bytes_down`` defaults to the broadcast sent to every sampled client; ``phases``
    gives the seconds of the round's phases (``recorder.PHASES``) where they were timed.
    """
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
        bytes_down=len(broadcast) * sampled if bytes_down is None else bytes_down,
        quantized_test_accuracy=acc_q,
        quantized_test_loss=loss_q,
        client_accuracy=acc_c,
        client_loss=loss_c,
        client_drift=client_drift,
        **{f"{phase}_seconds": seconds for phase, seconds in (phases or {}).items()},
    )
