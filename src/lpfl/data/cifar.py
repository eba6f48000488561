"""CIFAR-10/100 official "python version" releases: a tar.gz of pickled batches, or its
extracted folder.

Each batch is a dict with `b"data"`, an (N, 3072) uint8 array of channel-major 32x32 images
(so it reshapes straight to NCHW), and a list of labels. The archive is read in memory, in one
sequential pass, so nothing has to be extracted to disk.
"""

import pickle
import tarfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

import numpy as np

from lpfl.data.arrays import ArrayDataset, checked_dataset
from lpfl.data.errors import DataFormatError
from lpfl.data.formats import Format, Loader, Splits
from lpfl.data.registry import DatasetSpec


@dataclass(frozen=True)
class _Release:
    archive: str
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_key: bytes


_CIFAR10 = _Release(
    archive="cifar-10-python.tar.gz",
    folder="cifar-10-batches-py",
    train=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test=("test_batch",),
    label_key=b"labels",
)
_CIFAR100 = _Release(
    archive="cifar-100-python.tar.gz",
    folder="cifar-100-python",
    train=("train",),
    test=("test",),
    label_key=b"fine_labels",
)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else.

    The official format is pickle, and unpickling a downloaded file could otherwise run
    arbitrary code; the batches only ever need these globals.
    """

    _ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def _load_batch(handle: IO[bytes], source: str) -> dict[bytes, Any]:
    try:
        batch = _ArrayUnpickler(handle, encoding="bytes").load()
    except Exception as error:
        # A damaged pickle can fail in the unpickler, the decompressor or numpy.
        raise DataFormatError(f"{source}: not a readable CIFAR batch pickle ({error})") from error
    if not isinstance(batch, dict):
        raise DataFormatError(f"{source}: expected a pickled dict, got {type(batch).__name__}")
    return batch


def _batch_arrays(
    batch: dict[bytes, Any], release: _Release, spec: DatasetSpec, source: str
) -> tuple[np.ndarray, np.ndarray]:
    missing = {b"data", release.label_key} - batch.keys()
    if missing:
        raise DataFormatError(f"{source}: batch lacks key(s) {sorted(missing)}")
    data = np.asarray(batch[b"data"])
    row = spec.channels * spec.size * spec.size
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != row:
        raise DataFormatError(
            f"{source}: data is {data.dtype} with shape {data.shape}, expected uint8 (N, {row})"
        )
    x = data.reshape(-1, spec.channels, spec.size, spec.size)
    return x, np.asarray(batch[release.label_key])


def _join(
    batches: dict[str, dict[bytes, Any]],
    members: tuple[str, ...],
    release: _Release,
    spec: DatasetSpec,
    source: str,
) -> ArrayDataset:
    arrays = [_batch_arrays(batches[m], release, spec, f"{source}:{m}") for m in members]
    x = np.concatenate([x for x, _ in arrays])
    y = np.concatenate([y for _, y in arrays])
    return checked_dataset(x, y, spec, f"{source}:{'+'.join(members)}")


def _splits(
    batches: dict[str, dict[bytes, Any]], release: _Release, spec: DatasetSpec, source: str
) -> Splits:
    return (
        _join(batches, release.train, release, spec, source),
        _join(batches, release.test, release, spec, source),
    )


def _read_folder(folder: Path, release: _Release, spec: DatasetSpec) -> Splits:
    batches = {}
    for member in release.train + release.test:
        with (folder / member).open("rb") as handle:
            batches[member] = _load_batch(handle, str(folder / member))
    return _splits(batches, release, spec, str(folder))


def _read_archive(archive: Path, release: _Release, spec: DatasetSpec) -> Splits:
    wanted = {f"{release.folder}/{member}": member for member in release.train + release.test}
    batches = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            # Iterating in stream order avoids re-decompressing the gzip for each lookup.
            for info in tar:
                member = wanted.get(info.name)
                if member is None:
                    continue
                handle = tar.extractfile(info)
                if handle is None:
                    raise DataFormatError(f"{archive}: {info.name} is not a regular file")
                batches[member] = _load_batch(handle, f"{archive}:{info.name}")
    except DataFormatError:
        raise
    except Exception as error:
        raise DataFormatError(f"{archive}: not a readable tar.gz archive ({error})") from error
    missing = sorted(name for name, member in wanted.items() if member not in batches)
    if missing:
        raise DataFormatError(f"{archive}: archive lacks {', '.join(missing)}")
    return _splits(batches, release, spec, str(archive))


def _locate(release: _Release, directory: Path, spec: DatasetSpec) -> Loader | None:
    folder = directory / release.folder
    if all((folder / member).is_file() for member in release.train + release.test):
        return partial(_read_folder, folder, release, spec)
    if (directory / release.archive).is_file():
        return partial(_read_archive, directory / release.archive, release, spec)
    return None


def _format(release: _Release) -> Format:
    members = ", ".join(release.train + release.test)
    return Format(
        files=f"{release.archive}, or its extracted folder {release.folder}/ with {members}",
        locate=partial(_locate, release),
    )


CIFAR10_PYTHON = _format(_CIFAR10)
CIFAR100_PYTHON = _format(_CIFAR100)
