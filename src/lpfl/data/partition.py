"""Split a labelled dataset among simulated federated clients.

Label skew is the heterogeneity that matters for these experiments, so the default is a
Dirichlet split whose client sizes are then equalised: clients differ in *which* labels they
hold, not in how much data, which keeps size effects out of the comparison.
"""

import numpy as np

PARTITION_METHODS = ("dirichlet", "dirichlet-plain", "iid")

_BALANCE_ITERATIONS = 1000
_BALANCE_TOLERANCE = 1e-9
_SUMMARY_COLUMNS = 3
_MAJOR_SHARE = 0.05


def partition(
    labels: np.ndarray,
    num_clients: int,
    method: str = "dirichlet",
    alpha: float = 0.5,
    seed: int = 0,
) -> list[np.ndarray]:
    """Assign every sample index to exactly one client; one sorted int64 array per client.

    "dirichlet": per-class Dirichlet(alpha) client shares, balanced so all clients get about
    the same number of samples. "dirichlet-plain": the same shares unbalanced, so client
    sizes vary widely (some may be empty). "iid": a random near-equal split.
    Smaller alpha means more skewed labels. The same seed always gives the same split.
    """
    labels = np.asarray(labels)
    _validate(labels, num_clients, method, alpha)
    rng = np.random.default_rng(seed)
    if method == "iid":
        return [np.sort(part) for part in np.array_split(rng.permutation(len(labels)), num_clients)]
    classes = np.unique(labels)
    shares = rng.dirichlet(np.full(num_clients, alpha), size=len(classes))
    # Tiny alpha gives exact zeros, which would divide by zero while balancing.
    shares = np.maximum(shares, np.finfo(float).tiny)
    shares /= shares.sum(axis=1, keepdims=True)
    if method == "dirichlet":
        shares = _balance(shares)
    pieces: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for label, row in zip(classes, shares, strict=True):
        members = rng.permutation(np.flatnonzero(labels == label))
        cuts = (np.cumsum(row)[:-1] * len(members)).astype(int)
        for client, piece in enumerate(np.split(members, cuts)):
            pieces[client].append(piece)
    return [np.sort(np.concatenate(client)).astype(np.int64) for client in pieces]


def _validate(labels: np.ndarray, num_clients: int, method: str, alpha: float) -> None:
    if method not in PARTITION_METHODS:
        raise ValueError(f"unknown partition method {method!r}; choose from {PARTITION_METHODS}")
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if not 1 <= num_clients <= len(labels):
        raise ValueError(
            f"num_clients must be between 1 and the number of samples ({len(labels)}), "
            f"got {num_clients}"
        )
    if method != "iid" and not alpha > 0:
        raise ValueError(f"alpha must be > 0 for {method!r}, got {alpha}")


def _balance(shares: np.ndarray) -> np.ndarray:
    """Rescale a (classes x clients) share matrix so every client's expected size is equal.

    Alternating normalisation (Sinkhorn): columns to 1 so clients weigh the same, then rows
    to 1 so each class is still fully handed out. Zero-ish entries stay zero-ish, so the label
    skew survives while the column sums converge to equal.
    """
    shares = shares.copy()
    for _ in range(_BALANCE_ITERATIONS):
        shares /= shares.sum(axis=0)
        shares /= shares.sum(axis=1, keepdims=True)
        sizes = shares.sum(axis=0)
        if sizes.max() - sizes.min() <= _BALANCE_TOLERANCE * sizes.mean():
            break
    return shares


def summarize_partition(
    parts: list[np.ndarray], labels: np.ndarray, num_classes: int, top: int = 3
) -> str:
    """A compact report of client sizes and each client's dominant labels, for run logs.

    Several clients share a line so that even ~100 clients fit on one screen.
    """
    labels = np.asarray(labels)
    counts = np.stack([np.bincount(labels[part], minlength=num_classes) for part in parts])
    sizes = counts.sum(axis=1)
    nonempty = counts[sizes > 0]
    major = (nonempty >= _MAJOR_SHARE * nonempty.sum(axis=1, keepdims=True)).sum(axis=1)
    header = (
        f"{len(parts)} clients, {sizes.sum()} samples; per client min/median/max = "
        f"{sizes.min()}/{np.median(sizes):g}/{sizes.max()}; "
        f"classes holding >= {_MAJOR_SHARE:.0%} of a client's data: "
        f"{major.mean() if len(major) else 0:.1f} on average"
    )
    id_width = len(str(len(parts) - 1))
    size_width = len(str(sizes.max()))
    cells = [
        _client_cell(client, row, id_width, size_width, top) for client, row in enumerate(counts)
    ]
    cell_width = max(map(len, cells))
    lines = [
        "  ".join(cell.ljust(cell_width) for cell in cells[i : i + _SUMMARY_COLUMNS]).rstrip()
        for i in range(0, len(cells), _SUMMARY_COLUMNS)
    ]
    return "\n".join([header, *lines])


def _client_cell(client: int, counts: np.ndarray, id_width: int, size_width: int, top: int) -> str:
    n = counts.sum()
    prefix = f"client {client:>{id_width}}  n={n:>{size_width}}"
    if n == 0:
        return f"{prefix} (empty)"
    order = np.argsort(-counts, kind="stable")[:top]
    shares = " ".join(f"{label}:{counts[label] / n:.0%}" for label in order if counts[label])
    return f"{prefix}  {shares}"


def holdout(labels: np.ndarray, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split off a stratified ``fraction`` of the samples: (the rest, the held-out part).

    The server keeps the held-out part as its own labelled validation data (ABAvg),
    so it is carved from the training set and never taken from the test set.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        held.append(idx[: max(1, round(fraction * len(idx)))])
    held_out = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(labels)), held_out), held_out
