"""CINIC-10's official release: one PNG per image under `{train,test}/<class>/`.

Labels come from the class folder's position in the official class list, and files are taken
in name order, so the result is the same on every filesystem. Decoding the PNGs is slow, which
is why this format is marked for caching as npz after the first load.
"""

from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from lpfl.data.arrays import ArrayDataset, checked_dataset
from lpfl.data.errors import DataFormatError
from lpfl.data.formats import Format, Loader, Splits
from lpfl.data.registry import DatasetSpec

CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_SPLITS = ("train", "test")


def _decode(path: Path, spec: DatasetSpec) -> np.ndarray:
    """One image as uint8 CHW; grayscale files (CINIC has some) are expanded to RGB."""
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as error:
        # Pillow reports damaged PNG data through all three.
        raise DataFormatError(f"{path}: not a readable image ({error})") from error
    if pixels.shape != (spec.size, spec.size, 3):
        raise DataFormatError(
            f"{path}: image is {pixels.shape[1]}x{pixels.shape[0]}, "
            f"{spec.name} images are {spec.size}x{spec.size}"
        )
    return pixels.transpose(2, 0, 1)


def _read_split(folder: Path, spec: DatasetSpec) -> ArrayDataset:
    files = [
        (label, path)
        for label, name in enumerate(CLASSES)
        for path in sorted((folder / name).glob("*.png"))
    ]
    if not files:
        raise DataFormatError(f"{folder}: its class folders hold no .png files")
    x = np.empty((len(files), 3, spec.size, spec.size), dtype=np.uint8)
    y = np.array([label for label, _ in files], dtype=np.int64)
    for i, (_, path) in enumerate(tqdm(files, desc=f"decoding {folder}", unit="img", disable=None)):
        x[i] = _decode(path, spec)
    return checked_dataset(x, y, spec, folder)


def _read_splits(directory: Path, spec: DatasetSpec) -> Splits:
    return _read_split(directory / "train", spec), _read_split(directory / "test", spec)


def _locate(directory: Path, spec: DatasetSpec) -> Loader | None:
    if all((directory / split / name).is_dir() for split in _SPLITS for name in CLASSES):
        return partial(_read_splits, directory, spec)
    return None


CINIC10_PNG = Format(
    files=f"train/<class>/*.png and test/<class>/*.png for the classes {', '.join(CLASSES)}",
    locate=_locate,
    slow=True,
)
