"""``lpfl fetch``: the official release files of a dataset, downloaded and verified.

The loaders read the official releases as published (``loading._OFFICIAL``), so a fetch
only has to put those exact files where the loader looks: each one checked against its
published MD5 before it takes its final name, so a truncated or tampered download is
never read as data. Files already present with the right checksum are not fetched
again. CINIC-10's archive is unpacked too, since its loader reads the image folders.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from lpfl.data.errors import DataFormatError
from lpfl.data.registry import DATASETS

logger = logging.getLogger(__name__)
_CHUNK = 1 << 20
_TIMEOUT = 60  # seconds without a byte before a mirror is given up


class DownloadError(OSError):
    """No mirror delivered a file with its published checksum."""


@dataclass(frozen=True)
class Remote:
    """One file of an official release: where it is published, and its MD5 there."""

    name: str
    urls: tuple[str, ...]  # tried in order
    md5: str
    unpack: bool = False  # extract the archive beside it (the loader reads the contents)


_FMNIST = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_TORONTO = "https://www.cs.toronto.edu/~kriz/"
RELEASES: dict[str, tuple[Remote, ...]] = {
    "fmnist": (
        Remote("train-images-idx3-ubyte.gz", (_FMNIST + "train-images-idx3-ubyte.gz",),
               "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        Remote("train-labels-idx1-ubyte.gz", (_FMNIST + "train-labels-idx1-ubyte.gz",),
               "25c81989df183df01b3e8a0aad5dffbe"),
        Remote("t10k-images-idx3-ubyte.gz", (_FMNIST + "t10k-images-idx3-ubyte.gz",),
               "bef4ecab320f06d8554ea6380940ec79"),
        Remote("t10k-labels-idx1-ubyte.gz", (_FMNIST + "t10k-labels-idx1-ubyte.gz",),
               "bb300cfdad3c16e7a12a480ee83cd310"),
    ),
    "cifar10": (
        Remote("cifar-10-python.tar.gz", (_TORONTO + "cifar-10-python.tar.gz",),
               "c58f30108f718f92721af3b95e74349a"),
    ),
    "cifar100": (
        Remote("cifar-100-python.tar.gz", (_TORONTO + "cifar-100-python.tar.gz",),
               "eb9058c3a382ffc7106e4002c42a8d85"),
    ),
    "cinic10": (
        Remote(
            "CINIC-10.tar.gz",
            ("https://datashare.ed.ac.uk/bitstream/handle/10283/3192/CINIC-10.tar.gz",
             "https://datashare.ed.ac.uk/server/api/core/bitstreams/"
             "e8e186cc-2688-48f1-aa5a-3fda1a43f8b6/content"),
            "6ee4d0c996905fe93221de577967a372",
            unpack=True,
        ),
    ),
}  # fmt: skip


def md5sum(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(name: str, data_dir: str | os.PathLike[str], progress: bool = True) -> Path:
    """Download dataset ``name``'s official files into ``data_dir/<name>/``; returns that folder.

    Raises ValueError for a dataset with nothing to download (unknown or bundled) and
    DownloadError when a file cannot be had with its published checksum; files that
    did arrive whole stay, so a second call fetches only what is missing.
    """
    if name not in RELEASES:
        known = ", ".join(RELEASES)
        raise ValueError(f"no download for {name!r}: lpfl fetches {known} (digits is bundled)")
    folder = Path(data_dir).expanduser() / DATASETS[name].folders[0]
    folder.mkdir(parents=True, exist_ok=True)
    for remote in RELEASES[name]:
        target = folder / remote.name
        fresh = not _published(target, remote)
        if fresh:
            _download(remote, target, progress)
        if remote.unpack:
            _unpack(target, folder, progress, again=fresh)
    return folder


def _published(target: Path, remote: Remote) -> bool:
    """Whether ``target`` already holds the published file."""
    if not target.is_file():
        return False
    if md5sum(target) == remote.md5:
        return True
    logger.warning("%s: not the published file (its MD5 differs), downloading it again", target)
    return False


def _download(remote: Remote, target: Path, progress: bool) -> None:
    """Fetch ``remote`` into ``target`` from the first mirror that gives the right bytes."""
    partial = target.with_name(target.name + ".partial")
    failures = []
    for url in remote.urls:
        try:
            got = _stream(url, partial, progress)
        except (OSError, http.client.HTTPException) as error:  # URLError is an OSError
            partial.unlink(missing_ok=True)
            failures.append(f"{url}: {error}")
            continue
        except BaseException:  # Ctrl-C: no half file left behind either
            partial.unlink(missing_ok=True)
            raise
        if got == remote.md5:
            partial.replace(target)
            return
        partial.unlink()
        failures.append(f"{url}: MD5 {got}, but the published file's is {remote.md5}")
    raise DownloadError(
        f"could not download {remote.name}:\n  " + "\n  ".join(failures) + "\n"
        f"Download it yourself and put it in {target.parent} (lpfl reads it there)."
    )


def _stream(url: str, partial: Path, progress: bool) -> str:
    """Write the body at ``url`` to ``partial``; its MD5, computed on the way."""
    digest = hashlib.md5(usedforsecurity=False)
    request = urllib.request.Request(url, headers={"User-Agent": "lpfl"})
    with urllib.request.urlopen(request, timeout=_TIMEOUT) as response, partial.open("wb") as out:
        size = int(response.headers.get("Content-Length") or 0) or None
        bar = tqdm(total=size, unit="B", unit_scale=True, desc=partial.name[: -len(".partial")],
                   disable=not progress)  # fmt: skip
        got = 0
        with bar:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                got += len(chunk)
                bar.update(len(chunk))
    if size is not None and got != size:  # urllib ends a cut-off body quietly
        raise DownloadError(f"the connection closed after {got} of {size} bytes")
    return digest.hexdigest()


def _unpack(archive: Path, folder: Path, progress: bool, again: bool) -> None:
    """Extract ``archive`` into ``folder`` once (a marker file says it finished; ``again``
    for a newly downloaded archive), with a bar over its members (CINIC-10 has 270,000
    images).

    Only regular files and folders inside ``folder`` are accepted: tarfile's ``data``
    filter refuses links, devices and paths that climb out.
    """
    done = archive.with_name(f".{archive.name}.unpacked")
    if done.is_file() and not again:
        return
    try:
        with tarfile.open(archive) as tar:
            members = tqdm(tar, desc=f"unpacking {archive.name}", unit=" files",
                           disable=not progress)  # fmt: skip
            tar.extractall(folder, members=members, filter="data")
    except (tarfile.TarError, OSError) as error:
        raise DataFormatError(f"{archive}: cannot unpack ({error})") from error
    done.touch()
