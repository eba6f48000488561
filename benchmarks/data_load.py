"""Seconds to load a dataset's npz archives: one archive at a time vs a thread per archive.

    .venv/bin/python benchmarks/data_load.py --json results/data-load-cpu.json

Every run starts by loading its dataset, and a sweep process loads it once
(``data.reusing_loaded_data``), so this is start-up time for every run and sweep.
Alternates the two settings, ``--repeats`` times each, and reports medians; the page
cache is warm after the first read, so decompression is what is timed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from provenance import provenance

from lpfl.data import load_dataset, npz


def _seconds(name: str, data_dir: str, threads: int) -> float:
    npz._THREADS = threads
    tic = time.perf_counter()
    load_dataset(name, data_dir)
    return time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--datasets", nargs="+", default=["cifar10", "fmnist"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    threaded = npz._THREADS
    result: dict = provenance() | {"threads": threaded, "seconds": {}}
    for name in args.datasets:
        _seconds(name, args.data_dir, threaded)  # warm the page cache
        runs: dict[str, list[float]] = {"one_at_a_time": [], "threaded": []}
        for _ in range(args.repeats):
            runs["one_at_a_time"].append(_seconds(name, args.data_dir, 1))
            runs["threaded"].append(_seconds(name, args.data_dir, threaded))
        medians = {k: round(statistics.median(v), 2) for k, v in runs.items()}
        medians["speedup"] = round(medians["one_at_a_time"] / medians["threaded"], 2)
        result["seconds"][name] = medians
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
