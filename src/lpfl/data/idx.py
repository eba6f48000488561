"""Fashion-MNIST's official release: four IDX files, gzipped or not.

IDX is a tiny big-endian header (two zero bytes, a dtype code, the number of dimensions, one
uint32 per dimension) followed by raw values. Parsing the header instead of skipping a fixed
number of bytes is what lets truncated or mismatched files be reported rather than reshaped
into garbage.
"""

import gzip
import zlib
from functools import partial
from pathlib import Path

import numpy as np

from lpfl.data.arrays import ArrayDataset, checked_dataset
from lpfl.data.errors import DataFormatError
from lpfl.data.formats import Format, Loader, Splits
from lpfl.data.registry import DatasetSpec

_UBYTE = 0x08
# Train images, train labels, test images, test labels.
_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _raw_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            return gzip.decompress(path.read_bytes())
        return path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise DataFormatError(f"{path}: damaged gzip stream ({error})") from error


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse an unsigned-byte IDX file whose header must declare `ndim` dimensions."""
    data = _raw_bytes(path)
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataFormatError(f"{path}: {len(data)} bytes is too short for an IDX header")
    if data[0:2] != b"\0\0" or data[2] != _UBYTE or data[3] != ndim:
        raise DataFormatError(
            f"{path}: IDX magic {data[:4].hex()} is not 0000{_UBYTE:02x}{ndim:02x} "
            f"(unsigned bytes, {ndim} dimension(s))"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header_size + int(np.prod(shape))
    if len(data) != expected:
        raise DataFormatError(
            f"{path}: header promises shape {shape} ({expected} bytes) but the file has "
            f"{len(data)} bytes"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def _read_split(images: Path, labels: Path, spec: DatasetSpec) -> ArrayDataset:
    x = read_idx(images, ndim=3)[:, None]
    y = read_idx(labels, ndim=1)
    return checked_dataset(x, y, spec, images)


def _read_splits(
    train_images: Path, train_labels: Path, test_images: Path, test_labels: Path, spec: DatasetSpec
) -> Splits:
    train = _read_split(train_images, train_labels, spec)
    return train, _read_split(test_images, test_labels, spec)


def _existing(directory: Path, name: str) -> Path | None:
    """The file under either accepted name (raw first, since it reads faster)."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _locate(directory: Path, spec: DatasetSpec) -> Loader | None:
    paths = [path for name in _NAMES if (path := _existing(directory, name)) is not None]
    if len(paths) < len(_NAMES):
        return None
    return partial(_read_splits, *paths, spec=spec)


FMNIST_IDX = Format(
    files=", ".join(f"{name}[.gz]" for name in _NAMES)
    + " (the official IDX files, raw or gzipped)",
    locate=_locate,
)
