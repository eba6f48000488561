"""The paper's Table 1 (FedAvg, ConvNet), so every report can show how far a run lands from it.

Copied from the paper's table as transcribed in the project notes: test accuracy in %,
mean ± std over the last 5 rounds. The rows are kept as text in the paper's own
column order, so checking them against the source is a side-by-side read.
"""

from __future__ import annotations

DATASETS = ("fmnist", "cifar10", "cinic10", "cifar100")
ALPHAS = (0.01, 0.04, 0.16)
# (bits, with server moving average), in the paper's column order
VARIANTS = ((8, True), (6, True), (32, True), (8, False), (6, False), (32, False))

_ROWS = {
    ("fmnist", 0.01): "80.1±0.7 78.0±1.4 80.7±0.6 72.2±2.0 41.5±4.8 79.5±2.7",
    ("cifar10", 0.01): "53.3±2.7 49.3±0.9 52.7±0.6 25.6±1.4 20.8±0.8 41.1±2.4",
    ("cinic10", 0.01): "43.3±1.2 39.2±1.5 41.0±0.8 20.0±1.2 18.1±1.0 35.4±4.1",
    ("cifar100", 0.01): "15.2±0.2 12.4±0.0 15.6±0.0 7.32±0.4 3.16±0.7 12.5±0.4",
    ("fmnist", 0.04): "83.8±0.1 81.8±0.1 83.6±0.0 79.3±1.2 72.5±1.7 83.1±2.1",
    ("cifar10", 0.04): "57.4±0.6 53.6±0.6 58.6±0.3 45.5±1.6 30.8±1.3 54.4±2.0",
    ("cinic10", 0.04): "50.8±2.2 46.8±1.6 49.7±1.8 38.3±1.9 28.8±1.5 43.2±3.6",
    ("cifar100", 0.04): "34.1±0.4 22.4±0.3 30.7±0.3 14.7±2.1 6.75±0.1 28.2±0.5",
    ("fmnist", 0.16): "90.6±0.3 89.7±0.5 90.7±0.2 87.4±2.2 83.0±1.3 90.2±0.5",
    ("cifar10", 0.16): "72.4±0.7 69.6±0.7 73.0±0.9 63.6±0.8 44.6±1.1 71.9±1.5",
    ("cinic10", 0.16): "58.2±1.5 56.8±0.3 58.6±0.9 47.5±1.9 39.3±1.4 57.0±1.3",
    ("cifar100", 0.16): "42.9±0.1 33.8±0.0 41.7±0.3 25.6±0.4 9.62±0.2 39.1±0.4",
}


def _parse(row: str) -> dict[tuple[int, bool], tuple[float, float]]:
    cells = [tuple(map(float, cell.split("±"))) for cell in row.split()]
    return dict(zip(VARIANTS, cells, strict=True))  # type: ignore[arg-type]


# PAPER_TABLE1[(dataset, alpha)][(bits, averaging)] = (mean %, std %)
PAPER_TABLE1 = {key: _parse(row) for key, row in _ROWS.items()}


def paper_value(dataset: str, alpha: float, bits: int, averaging: bool) -> float | None:
    """The paper's mean accuracy (%) for this cell, or None where the paper has no number."""
    cell = PAPER_TABLE1.get((dataset, alpha), {}).get((bits, averaging))
    return cell[0] if cell else None
