"""What a message holds, named once for both ends, and lpfl wire bytes inside records.

The payload is already the exact, packed low-precision model; turning it into float
tensors would multiply its size and lose the format's checks. So it travels untouched
as one uint8 array, and its length is the traffic lpfl counts.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from flwr.app import Array, ArrayRecord

MODEL_KEY = "global-model"  # ArrayRecord: the server's broadcast
INPUTS_KEY = "server-inputs"  # ArrayRecord: what else the algorithm sends (FedGen's generator)
CONFIG_KEY = "config"  # ConfigRecord: the lpfl settings and the round (see settings)
UPDATE_KEY = "update"  # ArrayRecord: a client's trained model
METRICS_KEY = "metrics"  # MetricRecord: what the client trained or evaluated on
NUM_EXAMPLES = "num-examples"
TRAIN_LOSS = "train-loss"
LABEL_COUNTS = "label-counts"  # samples per class, for FedGen and FedFTG's teachers
PARTITION_ID = "partition-id"  # a node's answer to the server's QUERY: the data it holds,
NUM_PARTITIONS = "num-partitions"  # and into how many parts it cut the training set,
KEEPS_STATE = "keeps-state"  # and whether its optimizer state outlives a Flower run
ACCURACY = "accuracy"
LOSS = "loss"

_PAYLOAD = "payload"


def to_record(payload: bytes) -> ArrayRecord:
    return ArrayRecord({_PAYLOAD: Array(np.frombuffer(payload, dtype=np.uint8))})


def from_record(record: ArrayRecord) -> bytes:
    """The bytes as sent; a record not holding one uint8 array is refused with ValueError."""
    if list(record) != [_PAYLOAD]:
        raise ValueError(f"expected one array {_PAYLOAD!r}, got {list(record)}")
    array = record[_PAYLOAD].numpy()
    if array.dtype != np.uint8 or array.ndim != 1:
        raise ValueError(f"payload must be a 1-D uint8 array, got {array.dtype} {array.shape}")
    return array.tobytes()


def label_counts(metrics: Mapping[str, object]) -> tuple[int, ...] | None:
    """A reply's per-class counts, or None where it sent none; anything but a list of
    integers is refused with ValueError (a float would be silently truncated)."""
    if LABEL_COUNTS not in metrics:
        return None
    counts = metrics[LABEL_COUNTS]
    if not isinstance(counts, list) or not all(
        isinstance(c, int) and not isinstance(c, bool) for c in counts
    ):
        raise ValueError(f"{LABEL_COUNTS} must be a list of integers, got {counts!r}")
    return tuple(counts)
