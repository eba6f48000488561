"""Split datasets into folders small enough to travel to a GPU machine, one per call.

    python experiments/stage_data.py cifar10 fashion-mnist            # from ../shared/data
    python experiments/stage_data.py cifar10 --src DIR --limit-mib 60

A GPU machine gets a copy of the project plus at most 64 MiB of git-ignored paths per
command (``carry``), and keeps what earlier commands wrote while it stays warm (about
30 s between commands). CIFAR-10 alone is 133 MiB of npz files, so it has to go over
three commands. This packs the datasets' files into as few folders ``.stage/0``,
``.stage/1``, ... as the limit allows (largest files first, each into the first folder
with room), each laid out as ``DATASET/FILE``, and prints, per command, what to carry
and what to run there first: ``cp -r .stage/N/* /root/d/`` merges it into one data
folder. Files are hard-linked where the file system allows (copied otherwise), so
staging costs no space. The files are the datasets' own: nothing is converted, so the
data used there is the full, exact dataset.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

STAGE = Path(".stage")
MIB = 1 << 20


def pack(files: list[Path], limit: int) -> list[list[Path]]:
    """First-fit decreasing: few folders, none over ``limit`` bytes."""
    bins: list[tuple[int, list[Path]]] = []
    for f in sorted(files, key=lambda f: f.stat().st_size, reverse=True):
        size = f.stat().st_size
        if size > limit:
            raise SystemExit(f"{f} is {size / MIB:.1f} MiB, over the {limit / MIB:.0f}-MiB limit")
        for i, (used, members) in enumerate(bins):
            if used + size <= limit:
                bins[i] = (used + size, [*members, f])
                break
        else:
            bins.append((size, [f]))
    return [members for _, members in bins]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", help="folder names under --src")
    parser.add_argument("--src", default="../shared/data", type=Path)
    parser.add_argument(
        "--limit-mib", type=float, default=56, help="per folder (a call carries 64 in all)"
    )
    args = parser.parse_args()
    files = []
    for name in args.datasets:
        folder = args.src / name
        if not folder.is_dir():
            raise SystemExit(f"no dataset folder {folder}")
        files += sorted(p for p in folder.iterdir() if p.is_file())
    shutil.rmtree(STAGE, ignore_errors=True)
    for i, members in enumerate(pack(files, int(args.limit_mib * MIB))):
        for f in members:
            dest = STAGE / str(i) / f.parent.name / f.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(f, dest)
            except OSError:  # another file system, or no hard links: copy
                shutil.copy2(f, dest)
        size = sum(f.stat().st_size for f in members) / MIB
        names = ", ".join(f"{f.parent.name}/{f.name}" for f in members)
        print(f'call {i + 1}: carry [".stage/{i}"] ({size:.1f} MiB: {names})')
        print(f"        run first: mkdir -p /root/d && cp -r .stage/{i}/* /root/d/")


if __name__ == "__main__":
    main()
