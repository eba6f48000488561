"""The Flower ClientApp: one lpfl client per SuperNode.

The node's own config says which partition it holds (``partition-id``,
``num-partitions``) and, optionally, where its data lies (``data-dir``), what
trains (``device``) and where it keeps its optimizer state so that a resumed run can
continue it (``state-dir``, see node_state); everything else arrives with each
message, so a node needs no copy of the experiment's settings. Training is
:class:`LocalTrainer`'s, in low precision; the reply is the ``lpfl.wire`` payload the
simulator's clients send.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch
from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from ..algorithms import SUBMODEL_ALGORITHMS
from ..config import RunConfig
from ..data import DATASETS, normalize
from ..engine import ClientData, evaluate, resolve_device, setup
from ..engine.submodel_trainer import by_global_name, gather_state
from ..wire import decode, encode
from . import protocol, settings
from .local_data import load_partition
from .node_state import OptimizerStore
from .settings import Instructions

app = ClientApp()


def _setup(msg: Message, context: Context) -> tuple[Instructions, int, ClientData]:
    """What the message asks, this node's partition id, and its data."""
    node = context.node_config
    local: dict[str, Any] = {"data_dir": node.get("data-dir"), "device": node.get("device")}
    asked = settings.from_record(msg.content[protocol.CONFIG_KEY], **local)
    partition_id = int(node["partition-id"])
    data = load_partition(asked.cfg, partition_id, int(node["num-partitions"]))
    device = resolve_device(asked.cfg.device)
    return asked, partition_id, ClientData(data.x.to(device), data.y.to(device))


def _generator(cfg: RunConfig, partition_id: int, server_round: int, device: torch.device):
    """Rounding and shuffling draws that differ per client and round yet replay exactly."""
    seed = int(np.random.SeedSequence([cfg.seed, partition_id, server_round]).generate_state(1)[0])
    return torch.Generator(device).manual_seed(seed)


def _server_side(state: dict) -> float:
    """The score an algorithm like ABAvg rates clients with lives on the server; a node
    builds the algorithm only for its client-side objective and must never call it."""
    raise RuntimeError("client scoring runs on the server, on its validation split")


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train from the broadcast and reply with the wire-encoded model (errors become replies)."""
    asked, partition_id, data = _setup(msg, context)
    cfg, server_round, plan = asked.cfg, asked.server_round, asked.plan
    device = data.y.device
    algorithm = setup.algorithm(cfg, _server_side, device)
    if (cfg.algorithm in SUBMODEL_ALGORITHMS) != (plan is not None):
        raise ValueError(f"{cfg.algorithm}: a sub-model plan was {'not ' * (plan is None)}sent")
    if protocol.INPUTS_KEY in msg.content:  # FedGen's generator, as the server trained it
        algorithm.load_client_inputs(decode(protocol.from_record(msg.content[protocol.INPUTS_KEY])))
    model = (
        setup.new_model(cfg, device)
        if plan is None
        else algorithm.client_model(plan.arch).to(device)  # type: ignore[attr-defined]
    )
    trainer = setup.local_trainer(
        cfg, model, algorithm, partial(normalize, spec=DATASETS[cfg.dataset]),
        _generator(cfg, partition_id, server_round, device),
    )  # fmt: skip
    # Optimizer state is kept per global tensor, so a SplitMix node whose bases change
    # from round to round keeps each base's moments with that base.
    names = [name for name, _ in model.named_parameters()]
    sources = plan.sources if plan is not None else {name: name for name in names}
    persist = cfg.optimizer_state == "persist"
    store = OptimizerStore(context, asked.run_token, partition_id)
    kept = store.load(server_round) if persist else {}
    start = decode(protocol.from_record(msg.content[protocol.MODEL_KEY]))
    opt_state = gather_state(kept, names, sources, trainer.optimizer)
    update, opt_state = trainer.train(partition_id, start, data, opt_state)
    if persist:
        made = kept | by_global_name(opt_state, names, sources)
        store.save(server_round, made, asked.checkpointed)
    metrics = {
        protocol.NUM_EXAMPLES: update.num_samples,
        protocol.TRAIN_LOSS: update.train_loss,
        protocol.LABEL_COUNTS: list(update.label_counts or ()),
    }
    content = RecordDict(
        {
            protocol.UPDATE_KEY: protocol.to_record(encode(update.state, cfg.uplink())),
            protocol.METRICS_KEY: MetricRecord(metrics),
        }
    )
    return Message(content, reply_to=msg)


@app.query()
def partition(msg: Message, context: Context) -> Message:
    """Which partition this node holds: the server names and plans clients by it."""
    node = context.node_config
    metrics = {
        protocol.PARTITION_ID: int(node["partition-id"]),
        protocol.NUM_PARTITIONS: int(node["num-partitions"]),
        protocol.KEEPS_STATE: int(bool(node.get("state-dir"))),
    }
    return Message(RecordDict({protocol.METRICS_KEY: MetricRecord(metrics)}), reply_to=msg)


@app.evaluate()
def evaluate_local(msg: Message, context: Context) -> Message:
    """Accuracy of the broadcast model on this node's own data: how well it fits each client."""
    asked, _, data = _setup(msg, context)
    cfg = asked.cfg
    model = setup.new_model(cfg, data.y.device)
    model.load_state_dict(decode(protocol.from_record(msg.content[protocol.MODEL_KEY])))
    accuracy, loss = evaluate(model, data.x, data.y, partial(normalize, spec=DATASETS[cfg.dataset]))
    metrics = {protocol.ACCURACY: accuracy, protocol.LOSS: loss, protocol.NUM_EXAMPLES: len(data)}
    return Message(RecordDict({protocol.METRICS_KEY: MetricRecord(metrics)}), reply_to=msg)
