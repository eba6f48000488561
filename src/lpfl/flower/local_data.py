"""A node's share of the training set, split exactly as the simulator splits it.

Every node runs the same split (``setup.split``: the server's validation holdout for
ABAvg, then the partitioner) with the same seed and keeps only its own part, so a
Flower run over N nodes trains on the same client data as ``lpfl run --clients N``.
Cached because a node answers many rounds and loading is the slow part.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from ..config import RunConfig
from ..data import load_dataset
from ..engine import ClientData, setup


@lru_cache(maxsize=2)
def load_partition(cfg: RunConfig, partition_id: int, num_partitions: int) -> ClientData:
    """Client ``partition_id`` of ``num_partitions``, on the CPU."""
    if not 0 <= partition_id < num_partitions:
        raise ValueError(f"partition-id must be in [0, {num_partitions}), got {partition_id}")
    train, _ = load_dataset(cfg.dataset, cfg.resolved_data_dir())
    parts, _ = setup.split(cfg, train.y, num_partitions)
    idx = parts[partition_id]
    return ClientData(torch.from_numpy(train.x[idx]), torch.from_numpy(train.y[idx]))
