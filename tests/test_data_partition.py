"""Client splits: completeness, balance, label skew, determinism and the printed summary."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lpfl.data import PARTITION_METHODS, partition, summarize_partition

# 10 classes x 600 samples, as in the balance measurements reported with the implementation.
LABELS = np.repeat(np.arange(10), 600)


def sizes(parts: list[np.ndarray]) -> np.ndarray:
    return np.array([len(part) for part in parts])


def mean_top_share(parts: list[np.ndarray], labels: np.ndarray) -> float:
    return float(np.mean([np.bincount(labels[p]).max() / len(p) for p in parts if len(p)]))


def assert_exact_cover(parts: list[np.ndarray], n: int, num_clients: int) -> None:
    assert len(parts) == num_clients
    assert all(part.dtype == np.int64 and np.all(np.diff(part) > 0) for part in parts)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(n))


@settings(derandomize=True, max_examples=60, deadline=None)
@given(
    labels=st.lists(st.integers(0, 6), min_size=1, max_size=300).map(np.array),
    clients=st.integers(1, 30),
    method=st.sampled_from(PARTITION_METHODS),
    alpha=st.sampled_from([1e-4, 0.05, 1.0, 1e3]),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_sample_assigned_exactly_once(labels, clients, method, alpha, seed):
    clients = min(clients, len(labels))
    parts = partition(labels, clients, method, alpha, seed)
    assert_exact_cover(parts, len(labels), clients)


def test_balanced_dirichlet_equalises_client_sizes_unlike_plain():
    # Measured for seed 0: balanced max/min = 1.027 (298..306), plain has empty clients.
    balanced = sizes(partition(LABELS, 20, "dirichlet", alpha=0.04, seed=0))
    plain = sizes(partition(LABELS, 20, "dirichlet-plain", alpha=0.04, seed=0))
    assert balanced.max() / balanced.min() <= 1.15
    assert plain.max() / max(plain.min(), 1) > 10


def test_iid_sizes_differ_by_at_most_one():
    split = sizes(partition(LABELS, 7, "iid", seed=3))
    assert split.max() - split.min() <= 1


@pytest.mark.parametrize("method", ["dirichlet", "dirichlet-plain"])
def test_alpha_controls_label_skew(method):
    # Measured for seed 0: ~0.81-0.91 at alpha 0.01, 0.115 at alpha 100 (uniform is 0.1).
    skewed = partition(LABELS, 20, method, alpha=0.01, seed=0)
    uniform = partition(LABELS, 20, method, alpha=100, seed=0)
    assert mean_top_share(skewed, LABELS) > 0.75
    assert mean_top_share(uniform, LABELS) < 0.2


@pytest.mark.parametrize("method", PARTITION_METHODS)
def test_seed_determines_the_split(method):
    first = partition(LABELS, 10, method, seed=5)
    again = partition(LABELS, 10, method, seed=5)
    other = partition(LABELS, 10, method, seed=6)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_clients": 0}, "num_clients"),
        ({"num_clients": len(LABELS) + 1}, "num_clients"),
        ({"num_clients": 4, "alpha": 0.0}, "alpha"),
        ({"num_clients": 4, "method": "dirichlet-plain", "alpha": -1.0}, "alpha"),
        ({"num_clients": 4, "method": "shards"}, "shards"),
    ],
)
def test_invalid_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        partition(LABELS, **kwargs)


def test_2d_labels_raise():
    with pytest.raises(ValueError, match="1-D"):
        partition(LABELS.reshape(60, 100), 4)


def test_summary_mentions_every_client_and_the_sizes():
    parts = partition(LABELS, 80, "dirichlet-plain", alpha=0.05, seed=0)
    text = summarize_partition(parts, LABELS, num_classes=10)
    lines = text.splitlines()
    split = sizes(parts)
    assert f"{split.min()}/{np.median(split):g}/{split.max()}" in lines[0]
    assert len(lines) == 1 + 27
    for client, part in enumerate(parts):
        assert f"client {client:>2}  n={len(part):>{len(str(split.max()))}}" in text
    assert "(empty)" in text  # plain Dirichlet at this alpha leaves some clients without data


def test_summary_lists_top_labels_with_shares():
    labels = np.array([3] * 8 + [7] * 2)
    text = summarize_partition([np.arange(10)], labels, num_classes=10, top=2)
    assert text.splitlines()[1] == "client 0  n=10  3:80% 7:20%"
