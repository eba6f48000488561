"""``lpfl fetch`` against a local mirror: files verified, loaded as data, never half-written."""

from __future__ import annotations

import functools
import http.server
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_data_loaders import (
    CIFAR_RELEASES,
    SIZES,
    assert_loads_as,
    cinic_arrays,
    make_arrays,
    write_cifar,
    write_cinic,
    write_idx,
)

from lpfl import cli
from lpfl.data import DatasetNotFoundError, load_dataset
from lpfl.data import download as dl


class Mirror:
    """An HTTP server on localhost serving a folder, counting the files it sends."""

    def __init__(self, root: Path) -> None:
        self.root, self.sent = root, 0
        mirror = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/cut/"):  # half the file, then the line drops
                    body = (mirror.root / self.path.removeprefix("/cut/")).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    return
                mirror.sent += (mirror.root / self.path.lstrip("/")).is_file()
                super().do_GET()

            def log_message(self, *args) -> None:
                pass

        handler = functools.partial(Handler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def remote(self, name: str, *mirrors: str, unpack: bool = False) -> dl.Remote:
        """``name`` as published here (its real MD5), reached through ``mirrors`` (URLs
        tried first) and then this server."""
        md5 = dl.md5sum(self.root / name)
        return dl.Remote(name, (*mirrors, self.url + name), md5, unpack)


@pytest.fixture
def mirror(tmp_path, monkeypatch) -> Iterator[Mirror]:
    """Official-format FMNIST, CIFAR-10 and CINIC-10 files served locally, and lpfl's
    download table pointed at them."""
    root = tmp_path / "mirror"
    write_idx(root, make_arrays("fmnist", SIZES), gz=True)
    write_cifar(root, "cifar10", make_arrays("cifar10", SIZES), as_archive=True)
    write_cinic(tmp_path / "cinic", cinic_arrays())
    with tarfile.open(root / "CINIC-10.tar.gz", "w:gz") as tar:
        for split in ("train", "test"):
            tar.add(tmp_path / "cinic" / split, arcname=split)
    served = Mirror(root)
    fmnist = [p.name for p in sorted(root.glob("*-ubyte.gz"))]
    monkeypatch.setattr(dl, "RELEASES", {
        "fmnist": tuple(served.remote(name) for name in fmnist),
        "cifar10": (served.remote(CIFAR_RELEASES["cifar10"][0]),),
        "cinic10": (served.remote("CINIC-10.tar.gz", unpack=True),),
    })  # fmt: skip
    yield served
    served.server.shutdown()
    served.server.server_close()


def test_fetch_then_load_and_fetch_nothing_twice(mirror, tmp_path, capsys):
    data = tmp_path / "data"
    with pytest.raises(DatasetNotFoundError, match="lpfl fetch fmnist"):
        load_dataset("fmnist", data)
    assert cli.main(["fetch", "fmnist", "cifar10", "--data-dir", str(data), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"fmnist: 10 training and 5 test images, ready in {data / 'fmnist'}" in printed
    assert "cifar10: 10 training and 5 test images" in printed
    assert mirror.sent == 5  # four IDX files and one archive
    assert_loads_as("fmnist", data, make_arrays("fmnist", SIZES))
    assert_loads_as("cifar10", data, make_arrays("cifar10", SIZES))
    assert cli.main(["fetch", "fmnist", "cifar10", "--data-dir", str(data), "--quiet"]) == 0
    assert mirror.sent == 5, "files with the published checksum are not fetched again"
    assert not list(data.rglob("*.partial"))


def test_a_damaged_local_copy_is_fetched_again(mirror, tmp_path):
    data = tmp_path / "data"
    dl.fetch("cifar10", data, progress=False)
    archive = data / "cifar10" / CIFAR_RELEASES["cifar10"][0]
    archive.write_bytes(archive.read_bytes()[:100])  # an interrupted copy
    dl.fetch("cifar10", data, progress=False)
    assert mirror.sent == 2
    assert_loads_as("cifar10", data, make_arrays("cifar10", SIZES))


def test_wrong_bytes_are_refused_and_not_kept(mirror, tmp_path, monkeypatch, capsys):
    (good,) = dl.RELEASES["cifar10"]
    forged = dl.Remote(good.name, good.urls, "0" * 32)
    monkeypatch.setitem(dl.RELEASES, "cifar10", (forged,))
    data = tmp_path / "data"
    assert cli.main(["fetch", "cifar10", "--data-dir", str(data), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert f"MD5 {good.md5}, but the published file's is {'0' * 32}" in error
    assert f"put it in {data / 'cifar10'}" in error
    assert list((data / "cifar10").iterdir()) == [], "neither the file nor a .partial stays"


def test_falls_back_to_the_next_mirror(mirror, tmp_path, monkeypatch):
    (good,) = dl.RELEASES["cifar10"]
    closed = "http://127.0.0.1:9/cifar.tar.gz"  # the discard port: nothing listens there
    missing = mirror.url + "gone/cifar.tar.gz"  # 404
    monkeypatch.setitem(dl.RELEASES, "cifar10", (mirror.remote(good.name, closed, missing),))
    dl.fetch("cifar10", tmp_path / "data", progress=False)
    assert_loads_as("cifar10", tmp_path / "data", make_arrays("cifar10", SIZES))

    cut = mirror.url + "cut/" + good.name
    monkeypatch.setitem(
        dl.RELEASES, "cifar10", (dl.Remote(good.name, (closed, missing, cut), good.md5),)
    )
    with pytest.raises(dl.DownloadError) as caught:
        dl.fetch("cifar10", tmp_path / "other", progress=False)
    assert closed in str(caught.value) and "404" in str(caught.value)
    size = (mirror.root / good.name).stat().st_size
    assert f"{cut}: the connection closed after {size // 2} of {size} bytes" in str(caught.value)
    assert list((tmp_path / "other" / "cifar10").iterdir()) == [], "no half file is left"


def test_cinic_archive_is_unpacked_and_decoded_once(mirror, tmp_path):
    data = tmp_path / "data"
    assert cli.main(["fetch", "cinic10", "--data-dir", str(data), "--quiet"]) == 0
    assert_loads_as("cinic10", data, cinic_arrays())
    assert (data / "cinic10" / "train.npz").is_file(), "the decoded images are cached"
    assert (data / "cinic10" / "train" / "airplane").is_dir()
    assert cli.main(["fetch", "cinic10", "--data-dir", str(data), "--quiet"]) == 0
    assert mirror.sent == 1


def test_an_interrupted_download_leaves_no_half_file(mirror, tmp_path, monkeypatch):
    class CtrlC:  # the progress bar sees the first chunk written, then the user presses Ctrl-C
        def __init__(self, *args, **kwargs) -> None:
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            pass

        def update(self, n: int) -> None:
            raise KeyboardInterrupt

    monkeypatch.setattr(dl, "tqdm", CtrlC)
    with pytest.raises(KeyboardInterrupt):
        dl.fetch("cifar10", tmp_path / "data", progress=False)
    assert list((tmp_path / "data" / "cifar10").iterdir()) == []


def test_nothing_to_fetch_for_bundled_or_unknown_data(tmp_path):
    for name in ("digits", "imagenet"):
        with pytest.raises(ValueError, match="digits is bundled"):
            dl.fetch(name, tmp_path)
    assert not any(tmp_path.iterdir())
