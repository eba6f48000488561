"""What a storage layout must provide so load_dataset can search for it generically."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lpfl.data.arrays import ArrayDataset
from lpfl.data.registry import DatasetSpec

Splits = tuple[ArrayDataset, ArrayDataset]  # (train, test)

Loader = Callable[[], Splits]


@dataclass(frozen=True)
class Format:
    """One on-disk layout of a dataset.

    `locate` only checks that the expected files exist and returns a loader that reads them,
    so searching many candidate directories stays cheap. `files` is the human description of
    those files, used when nothing is found. `slow` marks layouts worth caching as npz after
    the first read.
    """

    files: str
    locate: Callable[[Path, DatasetSpec], Loader | None]
    slow: bool = False
