"""The project's native layout: `<split>.npz` or `<split>-000.npz, <split>-001.npz, ...`.

Each archive holds `x` (uint8, (N, H, W) grayscale or (N, H, W, C)) and `y` (integer labels),
the format of the shared data folder. It is also what slow sources are cached as, so that
every later load is a plain np.load.
"""

import zipfile
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

from lpfl.data.arrays import ArrayDataset, checked_dataset
from lpfl.data.errors import DataFormatError
from lpfl.data.formats import Format, Loader, Splits
from lpfl.data.registry import DatasetSpec

SPLITS = ("train", "test")
_THREADS = 8  # at most this many archives decode at once


def split_files(directory: Path, split: str) -> list[Path]:
    """The archive(s) holding one split, in concatenation order; empty if there are none."""
    single = directory / f"{split}.npz"
    if single.is_file():
        return [single]
    chunks = []
    while (chunk := directory / f"{split}-{len(chunks):03d}.npz").is_file():
        chunks.append(chunk)
    return chunks


def _stored_shape(spec: DatasetSpec) -> tuple[int, ...]:
    """Per-image shape as stored on disk: HW for grayscale, HWC for colour."""
    if spec.channels == 1:
        return (spec.size, spec.size)
    return (spec.size, spec.size, spec.channels)


def _read_archive(path: Path, spec: DatasetSpec) -> ArrayDataset:
    # np.load would take other bytes for a pickle or .npy and fail with a misleading message.
    if not zipfile.is_zipfile(path):
        raise DataFormatError(f"{path}: not a zip file, so not an .npz archive")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = {"x", "y"} - set(archive.files)
            if missing:
                raise DataFormatError(
                    f"{path}: missing key(s) {sorted(missing)}; it has {sorted(archive.files)}"
                )
            x, y = archive["x"], archive["y"]
    except DataFormatError:
        raise
    except Exception as error:
        # zipfile, zlib, lzma and the .npy parser each raise their own types for damaged bytes.
        raise DataFormatError(f"{path}: not a readable .npz archive ({error})") from error
    if x.shape[1:] != _stored_shape(spec):
        raise DataFormatError(
            f"{path}: x has shape {x.shape}, but {spec.name} is stored as "
            f"(N, {', '.join(map(str, _stored_shape(spec)))})"
        )
    x = x[:, None] if spec.channels == 1 else x.transpose(0, 3, 1, 2)
    return checked_dataset(x, y, spec, path)


def _joined(parts: list[ArrayDataset]) -> ArrayDataset:
    if len(parts) == 1:
        return parts[0]
    return ArrayDataset(
        np.concatenate([part.x for part in parts]), np.concatenate([part.y for part in parts])
    )


def _read_splits(files: dict[str, list[Path]], spec: DatasetSpec) -> Splits:
    """Both splits, every archive decoded on its own thread.

    Decompression dominates loading (the shared CIFAR-10 archives are LZMA: 7.6 of the
    8.5 s a load took on one core), and zlib and lzma release the GIL while they work,
    so the five CIFAR-10 archives decode side by side: 8.1 s -> 4.2 s on 2 cores
    (``benchmarks/data_load.py``). A thread per archive (up to 8), not per core, so no
    archive waits for a free core behind the others (4.6 s with 2 threads there).
    Chunks keep their order.
    """
    paths = files["train"] + files["test"]
    with ThreadPoolExecutor(max_workers=min(len(paths), _THREADS)) as pool:
        parts = list(pool.map(partial(_read_archive, spec=spec), paths))
    cut = len(files["train"])
    return _joined(parts[:cut]), _joined(parts[cut:])


def _locate(directory: Path, spec: DatasetSpec) -> Loader | None:
    files = {split: split_files(directory, split) for split in SPLITS}
    if not all(files.values()):
        return None
    return partial(_read_splits, files, spec)


def write_splits(directory: Path, splits: Splits) -> None:
    """Store (train, test) in this layout, each file appearing atomically.

    Uncompressed, because the cache exists to make loading fast; writing under a temporary
    name first keeps an interrupted write from leaving a truncated archive behind.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for split, data in zip(SPLITS, splits, strict=True):
        x = data.x[:, 0] if data.x.shape[1] == 1 else data.x.transpose(0, 2, 3, 1)
        target = directory / f"{split}.npz"
        unfinished = directory / f"{split}.npz.partial"
        try:
            with unfinished.open("wb") as handle:
                np.savez(handle, x=x, y=data.y)
            unfinished.replace(target)
        finally:
            unfinished.unlink(missing_ok=True)


NPZ = Format(
    files="train.npz and test.npz, or chunks train-000.npz, train-001.npz, ... "
    "(likewise test-000.npz, ...), each with x (uint8 N,H,W or N,H,W,3) and y (int64)",
    locate=_locate,
)
