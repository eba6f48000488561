"""experiments/stage_data.py packs dataset files into folders a GPU call can carry."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "experiments" / "stage_data.py"
spec = importlib.util.spec_from_file_location("stage_data", SCRIPT)
stage_data = importlib.util.module_from_spec(spec)
spec.loader.exec_module(stage_data)
MIB = stage_data.MIB


def _files(tmp_path: Path, mib: list[float]) -> list[Path]:
    files = []
    for i, size in enumerate(mib):
        f = tmp_path / f"f{i}.npz"
        with open(f, "wb") as fh:
            fh.truncate(int(size * MIB))  # sparse: the size is all that counts
        files.append(f)
    return files


def test_cifar10_and_fmnist_sized_files_fit_three_calls(tmp_path):
    """CIFAR-10's four train chunks and test file, Fashion-MNIST's two files."""
    files = _files(tmp_path, [27.7, 27.8, 27.8, 27.7, 22.2, 21.6, 3.6])
    bins = stage_data.pack(files, 56 * MIB)
    assert len(bins) == 3
    assert sorted(f for b in bins for f in b) == sorted(files)
    assert all(sum(f.stat().st_size for f in b) <= 56 * MIB for b in bins)


def test_a_file_over_the_limit_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="over the 56-MiB limit"):
        stage_data.pack(_files(tmp_path, [57]), 56 * MIB)
