"""Every accepted on-disk layout loads to the same arrays; bad or missing data fails clearly."""

import gzip
import io
import logging
import os
import pickle
import shutil
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lpfl.data import (
    DATASETS,
    ArrayDataset,
    DataFormatError,
    DatasetNotFoundError,
    load_dataset,
    normalize,
    npz,
    reusing_loaded_data,
)
from lpfl.data.cinic import CLASSES as CINIC_CLASSES

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

Arrays = dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (x NCHW uint8, y int64)


def make_arrays(name: str, sizes: dict[str, int], seed: int = 0) -> Arrays:
    """Small random splits shaped like `name`, labels sorted (the order CINIC folders give)."""
    spec = DATASETS[name]
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in sizes.items():
        x = rng.integers(0, 256, (n, spec.channels, spec.size, spec.size), dtype=np.uint8)
        y = np.sort(rng.integers(0, spec.num_classes, n)).astype(np.int64)
        arrays[split] = (x, y)
    return arrays


def assert_loads_as(name: str, data_dir: Path, expected: Arrays) -> None:
    train, test = load_dataset(name, data_dir)
    for loaded, split in ((train, "train"), (test, "test")):
        assert isinstance(loaded, ArrayDataset)
        assert loaded.x.dtype == np.uint8 and loaded.y.dtype == np.int64
        np.testing.assert_array_equal(loaded.x, expected[split][0])
        np.testing.assert_array_equal(loaded.y, expected[split][1])


def stored(x: np.ndarray) -> np.ndarray:
    """NCHW -> the npz/IDX/PNG storage order (HW grayscale, HWC colour)."""
    return x[:, 0] if x.shape[1] == 1 else x.transpose(0, 2, 3, 1)


def write_npz(folder: Path, arrays: Arrays, chunks: int = 1) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, (x, y) in arrays.items():
        if chunks == 1:
            np.savez_compressed(folder / f"{split}.npz", x=stored(x), y=y)
            continue
        pieces = zip(np.array_split(x, chunks), np.array_split(y, chunks), strict=True)
        for i, (xs, ys) in enumerate(pieces):
            np.savez_compressed(folder / f"{split}-{i:03d}.npz", x=stored(xs), y=ys)


def idx_bytes(values: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, values.ndim]) + np.array(values.shape, dtype=">u4").tobytes()
    return header + values.astype(np.uint8).tobytes()


def write_idx(folder: Path, arrays: Arrays, gz: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x, y = arrays[split]
        files = {f"{prefix}-images-idx3-ubyte": x[:, 0], f"{prefix}-labels-idx1-ubyte": y}
        for stem, values in files.items():
            data = idx_bytes(values)
            if gz:
                (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / stem).write_bytes(data)


CIFAR_RELEASES = {
    # name: (archive, folder, train members, test member, label key)
    "cifar10": (
        "cifar-10-python.tar.gz",
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        "test_batch",
        b"labels",
    ),
    "cifar100": ("cifar-100-python.tar.gz", "cifar-100-python", ["train"], "test", b"fine_labels"),
}


def cifar_members(name: str, arrays: Arrays) -> dict[str, bytes]:
    """Pickled batches as in the official release (protocol 2, bytes keys)."""
    _, folder, train_members, test_member, label_key = CIFAR_RELEASES[name]
    members = {}
    splits = [("train", train_members), ("test", [test_member])]
    for split, names in splits:
        x, y = arrays[split]
        for member, xs, ys in zip(
            names, np.array_split(x, len(names)), np.array_split(y, len(names)), strict=True
        ):
            batch = {b"data": xs.reshape(len(xs), -1), label_key: ys.tolist(), b"batch_label": b"x"}
            members[f"{folder}/{member}"] = pickle.dumps(batch, protocol=2)
    return members


def write_cifar(data_dir: Path, name: str, arrays: Arrays, as_archive: bool) -> None:
    members = cifar_members(name, arrays)
    data_dir.mkdir(parents=True, exist_ok=True)
    if not as_archive:
        for member, data in members.items():
            (data_dir / member).parent.mkdir(parents=True, exist_ok=True)
            (data_dir / member).write_bytes(data)
        return
    with tarfile.open(data_dir / CIFAR_RELEASES[name][0], "w:gz") as tar:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def cinic_arrays() -> Arrays:
    """CINIC-shaped splits whose first train image is gray (R = G = B), stored as an L PNG."""
    arrays = make_arrays("cinic10", {"train": 12, "test": 6}, seed=3)
    arrays["train"][0][0, 1:] = arrays["train"][0][0, 0]
    return arrays


def write_cinic(folder: Path, arrays: Arrays) -> None:
    for split, (x, y) in arrays.items():
        for name in CINIC_CLASSES:
            (folder / split / name).mkdir(parents=True)
        for i, (image, label) in enumerate(zip(stored(x), y, strict=True)):
            gray = bool(np.all(image == image[..., :1]))
            pil = Image.fromarray(image[..., 0], "L") if gray else Image.fromarray(image, "RGB")
            pil.save(folder / split / CINIC_CLASSES[label] / f"img_{i:03d}.png")


SIZES = {"train": 10, "test": 5}


@pytest.mark.parametrize("name", ["fmnist", "cifar10", "cifar100", "cinic10"])
@pytest.mark.parametrize("chunks", [1, 3])
def test_npz_layout_single_and_chunked(tmp_path, name, chunks):
    arrays = make_arrays(name, SIZES)
    write_npz(tmp_path / DATASETS[name].folders[-1], arrays, chunks)
    assert_loads_as(name, tmp_path, arrays)


def test_npz_archives_decode_side_by_side(tmp_path, monkeypatch):
    """Each archive is decoded on its own thread: a barrier that needs all six archives
    (3 train chunks, 3 test chunks) in flight at once would time out if they were read
    one after another."""
    arrays = make_arrays("cifar10", SIZES)
    write_npz(tmp_path / "cifar10", arrays, chunks=3)
    together = threading.Barrier(6, timeout=10)
    read_archive = npz._read_archive

    def waiting(path, spec):
        together.wait()
        return read_archive(path, spec)

    monkeypatch.setattr(npz, "_read_archive", waiting)
    assert_loads_as("cifar10", tmp_path, arrays)


def test_damaged_chunk_names_itself(tmp_path):
    write_npz(tmp_path / "cifar10", make_arrays("cifar10", SIZES), chunks=3)
    _truncate(tmp_path / "cifar10" / "train-001.npz")
    with pytest.raises(DataFormatError, match=r"train-001\.npz"):
        load_dataset("cifar10", tmp_path)


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("subfolder", ["fashion-mnist", ""])
def test_fmnist_idx_files(tmp_path, gz, subfolder):
    arrays = make_arrays("fmnist", SIZES)
    write_idx(tmp_path / subfolder, arrays, gz)
    assert_loads_as("fmnist", tmp_path, arrays)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("as_archive", [True, False])
@pytest.mark.parametrize("in_dataset_folder", [True, False])
def test_cifar_python_release(tmp_path, name, as_archive, in_dataset_folder):
    arrays = make_arrays(name, SIZES)
    where = tmp_path / DATASETS[name].folders[0] if in_dataset_folder else tmp_path
    write_cifar(where, name, arrays, as_archive)
    assert_loads_as(name, tmp_path, arrays)


def test_cinic_png_folders_are_decoded_then_cached(tmp_path):
    arrays = cinic_arrays()
    write_cinic(tmp_path / "CINIC-10", arrays)
    assert_loads_as("cinic10", tmp_path, arrays)
    assert (tmp_path / "cinic10" / "train.npz").is_file()
    assert (tmp_path / "cinic10" / "test.npz").is_file()
    shutil.rmtree(tmp_path / "CINIC-10")
    assert_loads_as("cinic10", tmp_path, arrays)  # now served from the cache alone


def test_cinic_cache_failure_only_warns(tmp_path, monkeypatch, caplog):
    def refuse(*_args):
        raise PermissionError("read-only")

    monkeypatch.setattr("lpfl.data.loading.write_splits", refuse)
    arrays = cinic_arrays()
    write_cinic(tmp_path / "cinic10", arrays)
    with caplog.at_level(logging.WARNING, logger="lpfl.data"):
        assert_loads_as("cinic10", tmp_path, arrays)
    assert "could not cache" in caplog.text


def test_reused_data_is_read_once_copied_per_caller_and_reread_when_files_change(
    tmp_path, monkeypatch
):
    reads = []
    real_load = np.load
    monkeypatch.setattr(
        "lpfl.data.npz.np.load", lambda *a, **k: reads.append(1) or real_load(*a, **k)
    )
    arrays = make_arrays("fmnist", SIZES)
    write_npz(tmp_path / "fmnist", arrays)
    with reusing_loaded_data():
        first, _ = load_dataset("fmnist", tmp_path)
        per_read = len(reads)
        first.x[:] = 0  # a run that scribbles on its data
        assert_loads_as("fmnist", tmp_path, arrays)  # ...does not reach the next run
        assert len(reads) == per_read  # served from memory
        changed = make_arrays("fmnist", SIZES, seed=1)
        write_npz(tmp_path / "fmnist", changed)  # same sizes: random pixels do not compress
        for f in (tmp_path / "fmnist").iterdir():  # a later time even where clocks are coarse
            os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
        assert_loads_as("fmnist", tmp_path, changed)
        assert len(reads) == 2 * per_read
    assert_loads_as("fmnist", tmp_path, changed)  # outside: read every time
    assert len(reads) == 3 * per_read


def test_data_dir_defaults_to_environment_variable(tmp_path, monkeypatch):
    arrays = make_arrays("fmnist", SIZES)
    write_npz(tmp_path / "fmnist", arrays)
    monkeypatch.setenv("LPFL_DATA", str(tmp_path))
    assert_loads_as("fmnist", None, arrays)


@pytest.mark.parametrize(
    ("name", "expected_files"),
    [
        ("fmnist", ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "fashion-mnist"]),
        ("cifar10", ["cifar-10-python.tar.gz", "cifar-10-batches-py", "data_batch_5", "toronto"]),
        ("cifar100", ["cifar-100-python.tar.gz", "cifar-100-python/", "test", "toronto"]),
        ("cinic10", ["CINIC-10", "train/<class>/*.png", "airplane", "datashare.ed.ac.uk"]),
    ],
)
def test_missing_dataset_names_what_was_expected(tmp_path, name, expected_files):
    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset(name, tmp_path)
    message = str(caught.value)
    for text in [str(tmp_path), "train.npz", "train-000.npz", "$LPFL_DATA", *expected_files]:
        assert text in message
    assert isinstance(caught.value, FileNotFoundError)


def test_unknown_dataset_name_lists_known_ones():
    with pytest.raises(ValueError, match="cifar10"):
        load_dataset("mnist-3d")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _scramble_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))


def _npz_with(path: Path, **arrays: np.ndarray) -> None:
    path.unlink()
    np.savez(path, **arrays)


def _bad_pickle(path: Path) -> None:
    path.write_bytes(pickle.dumps({b"data": len}, protocol=2))


CORRUPTIONS = {
    "truncated gz": ("fmnist", "idx-gz", "train-images-idx3-ubyte.gz", _truncate),
    "truncated raw idx": ("fmnist", "idx", "t10k-images-idx3-ubyte", _truncate),
    "idx labels as images": (
        "fmnist",
        "idx",
        "train-images-idx3-ubyte",
        lambda p: shutil.copy(p.with_name("train-labels-idx1-ubyte"), p),
    ),
    "bad npz": ("fmnist", "npz", "fmnist/train.npz", lambda p: p.write_bytes(b"not a zip")),
    "truncated npz": ("cifar10", "npz", "cifar10/test.npz", _truncate),
    "damaged npz member": ("cifar10", "npz", "cifar10/train.npz", _scramble_middle),
    "missing key": (
        "fmnist",
        "npz",
        "fmnist/test.npz",
        lambda p: _npz_with(p, x=np.zeros((2, 28, 28), np.uint8)),
    ),
    "wrong shape": (
        "cifar10",
        "npz",
        "cifar10/train.npz",
        lambda p: _npz_with(p, x=np.zeros((2, 3, 32, 32), np.uint8), y=np.zeros(2, np.int64)),
    ),
    "gray data for rgb": (
        "cifar10",
        "npz",
        "cifar10/train.npz",
        lambda p: _npz_with(p, x=np.zeros((2, 32, 32), np.uint8), y=np.zeros(2, np.int64)),
    ),
    "wrong dtype": (
        "fmnist",
        "npz",
        "fmnist/train.npz",
        lambda p: _npz_with(p, x=np.zeros((2, 28, 28), np.float32), y=np.zeros(2, np.int64)),
    ),
    "label out of range": (
        "fmnist",
        "npz",
        "fmnist/train.npz",
        lambda p: _npz_with(p, x=np.zeros((2, 28, 28), np.uint8), y=np.array([0, 10])),
    ),
    "negative label": (
        "fmnist",
        "npz",
        "fmnist/train.npz",
        lambda p: _npz_with(p, x=np.zeros((2, 28, 28), np.uint8), y=np.array([-1, 0])),
    ),
    "length mismatch": (
        "fmnist",
        "npz",
        "fmnist/train.npz",
        lambda p: _npz_with(p, x=np.zeros((2, 28, 28), np.uint8), y=np.zeros(3, np.int64)),
    ),
    "pickle with foreign global": (
        "cifar10",
        "cifar-folder",
        "cifar-10-batches-py/data_batch_2",
        _bad_pickle,
    ),
    "garbage pickle": (
        "cifar100",
        "cifar-folder",
        "cifar-100-python/test",
        lambda p: p.write_bytes(b"\x80\x02garbage"),
    ),
    "truncated tar": ("cifar10", "cifar-tar", "cifar-10-python.tar.gz", _truncate),
    "png of wrong size": (
        "cinic10",
        "png",
        "CINIC-10/test/airplane/extra.png",
        lambda p: Image.new("RGB", (31, 32)).save(p),
    ),
    "no pngs": (
        "cinic10",
        "png",
        "CINIC-10/test",
        lambda p: [png.unlink() for png in p.glob("*/*.png")],
    ),
    "broken png": (
        "cinic10",
        "png",
        "CINIC-10/train/truck/broken.png",
        lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n broken"),
    ),
}


def write_layout(data_dir: Path, name: str, layout: str) -> None:
    arrays = make_arrays(name, SIZES)
    if layout == "npz":
        write_npz(data_dir / name, arrays)
    elif layout.startswith("idx"):
        write_idx(data_dir, arrays, gz=layout == "idx-gz")
    elif layout.startswith("cifar"):
        write_cifar(data_dir, name, arrays, as_archive=layout == "cifar-tar")
    else:
        write_cinic(data_dir / "CINIC-10", arrays)


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_corrupt_files_raise_data_format_error(tmp_path, case):
    name, layout, relative, corrupt = CORRUPTIONS[case]
    write_layout(tmp_path, name, layout)
    corrupt(tmp_path / relative)
    with pytest.raises(DataFormatError) as caught:
        load_dataset(name, tmp_path)
    assert Path(relative).name in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_array_dataset_rejects_bad_arrays():
    with pytest.raises(DataFormatError, match="uint8"):
        ArrayDataset(np.zeros((2, 1, 8, 8), np.float32), np.zeros(2, np.int64))
    with pytest.raises(DataFormatError, match="int64"):
        ArrayDataset(np.zeros((2, 1, 8, 8), np.uint8), np.zeros(2, np.int32))
    with pytest.raises(DataFormatError, match="3 labels"):
        ArrayDataset(np.zeros((2, 1, 8, 8), np.uint8), np.zeros(3, np.int64))
    assert len(ArrayDataset(np.zeros((2, 1, 8, 8), np.uint8), np.zeros(2, np.int64))) == 2


def test_digits_split_and_published_statistics():
    train, test = load_dataset("digits", "/nonexistent")
    assert train.x.shape == (1438, 1, 8, 8) and test.x.shape == (359, 1, 8, 8)
    assert train.x.max() == 255 and train.x.min() == 0
    held_out = np.bincount(test.y) / (np.bincount(test.y) + np.bincount(train.y))
    assert np.all(np.abs(held_out - 0.2) < 0.01)  # stratified 80/20
    spec = DATASETS["digits"]
    pixels = train.x / 255.0
    assert abs(pixels.mean() - spec.mean[0]) < 1e-4
    assert abs(pixels.std() - spec.std[0]) < 1e-4
    again, _ = load_dataset("digits")
    np.testing.assert_array_equal(again.y, train.y)


def test_normalize_scales_per_channel():
    spec = DATASETS["cifar10"]
    batch = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    out = normalize(batch, spec)
    assert out.dtype == torch.float32
    expected = [(1 - m) / s for m, s in zip(spec.mean, spec.std, strict=True)]
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor(expected))
    with pytest.raises(ValueError, match="uint8"):
        normalize(batch.float(), spec)


@pytest.mark.parametrize(
    ("name", "train_size", "test_size"),
    [("fmnist", 60_000, 10_000), ("cifar10", 50_000, 10_000)],
)
def test_real_shared_data(name, train_size, test_size):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} does not exist")
    spec = DATASETS[name]
    train, test = load_dataset(name, SHARED_DATA)
    shape = (spec.channels, spec.size, spec.size)
    assert train.x.shape == (train_size, *shape)
    assert test.x.shape == (test_size, *shape)
    np.testing.assert_array_equal(np.bincount(train.y), [train_size // 10] * 10)
    np.testing.assert_array_equal(np.bincount(test.y), [test_size // 10] * 10)
