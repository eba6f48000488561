"""Command line: ``lpfl run`` (one experiment), ``lpfl demo`` (the embedded main job),
``lpfl sweep`` (a grid of runs), ``lpfl report`` (Table 1 and figures from runs) and
``lpfl fetch`` (a dataset's official files).

Flags are generated from ``RunConfig``'s fields, so every setting has exactly one
name, one default and one help text.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields, replace
from pathlib import Path

from .config import ConfigError, RunConfig, coerce_settings, field_type, flag, make_config
from .data import DataFormatError, DatasetNotFoundError, load_dataset
from .data.download import RELEASES, DownloadError, fetch
from .data.loading import default_data_dir
from .engine import DivergenceError, Recorder, checkpoint, run_simulation
from .sweep import FINISHED, Point, load_spec, point_state, run_hash, run_sweep

INTERRUPTED = 130  # the shell's code for a process stopped by Ctrl-C (128 + SIGINT)

# The demo: 32-bit FedAvg against 8-bit FedAvg, without and with the server moving
# average, on the bundled 8x8 digits, split non-IID: the first pair shows what the
# precision costs, the third run the paper's method. Sized to finish in under a minute
# on 2 CPU cores.
DEMO_SETTINGS = dict(
    dataset="digits",
    model="mlp",
    clients=20,
    participation=0.5,
    rounds=120,
    local_epochs=2,
    alpha=0.3,
    batch_size=32,
)
DEMO_RUNS = {
    "32-bit FedAvg": dict(bits=32, moving_average=0.0),
    "8-bit FedAvg": dict(bits=8, moving_average=0.0),
    "8-bit FedAvg + moving avg": dict(bits=8, moving_average=0.9),
}


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE.toml", help="TOML file with the same keys; flags override it"
    )
    for f in fields(RunConfig):
        choices = f.metadata["choices"]
        options = f"{'|'.join(map(str, choices))}; " if choices else ""
        default = f.metadata["shown"] or f.default
        # argparse %-formats help texts; the config's own texts may say "k % n".
        help_ = f"{f.metadata['help']} ({options}default: {default})".replace("%", "%%")
        if isinstance(f.default, bool):
            parser.add_argument(
                flag(f.name), action=argparse.BooleanOptionalAction, default=None, help=help_
            )
            continue
        kind = field_type(f.name)
        parser.add_argument(
            flag(f.name), type=kind, default=None, metavar=f.name.upper(), help=help_
        )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or split summary")
    parser.add_argument(
        "--resume", metavar="DIR", help="continue an interrupted run from its last checkpoint"
    )


def _config_from(args: argparse.Namespace) -> RunConfig:
    """The run's settings; without --out its results go to runs/HASH, so none is lost."""
    overrides = {f.name: getattr(args, f.name) for f in fields(RunConfig)}
    if args.resume is None:
        cfg = make_config(args.config, **overrides)
        return cfg if cfg.out else replace(cfg, out=str(Path("runs") / run_hash(cfg.to_dict())))
    given = [flag(k) for k, v in overrides.items() if v is not None] + (
        ["--config"] * bool(args.config)
    )
    if given:
        raise ConfigError(
            f"--resume: takes every setting from the run's results.json; drop {given[0]}"
        )
    return resumed_config(args.resume)


def resumed_config(directory: str) -> RunConfig:
    """The settings a run was started with, read back from its folder."""
    path = Path(directory) / "results.json"
    try:
        saved = json.loads(path.read_text())["config"]
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"--resume: cannot read the run's settings from {path}: {exc}") from None
    known = {f.name for f in fields(RunConfig)}
    return make_config(**{k: v for k, v in saved.items() if k in known} | {"out": directory})


def _format_summary(recorder: Recorder) -> str:
    s = recorder.summary()
    if s["final_accuracy_mean"] is None:
        return "no evaluated round"
    return f"{100 * s['final_accuracy_mean']:.2f} ± {100 * s['final_accuracy_std']:.2f} %"


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _config_from(args)
    assert cfg.out is not None
    results = Path(cfg.out) / "results.json"
    log = (lambda _msg: None) if args.quiet else print
    log(f"writing results to {cfg.out}")
    try:
        recorder = run_simulation(
            cfg, progress=not args.quiet, log=log, resume=args.resume is not None
        )
    except KeyboardInterrupt:
        if (Path(cfg.out) / checkpoint.FILENAME).exists():
            go_on = f"continue from its last checkpoint: lpfl run --resume {cfg.out}"
        else:
            go_on = "no checkpoint yet: the same command starts it again"
        print(f"lpfl: interrupted; the rounds so far are in {results} ({go_on})", file=sys.stderr)
        return INTERRUPTED
    print(
        f"final accuracy (mean ± std of the last 5 evaluated rounds): {_format_summary(recorder)}"
    )
    print(f"results: {results}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    results: dict[str, Recorder] = {}
    seconds: dict[str, float] = {}
    for i, (name, settings) in enumerate(DEMO_RUNS.items()):
        cfg = make_config(**DEMO_SETTINGS, **settings, out=str(out / f"run{i}"))
        tic = time.perf_counter()
        results[name] = run_simulation(
            cfg, progress=not args.quiet, log=lambda _m: None, label=name
        )
        seconds[name] = time.perf_counter() - tic
    from .report import plot_accuracy  # matplotlib: 0.3 s of start-up that run and sweep skip

    plot = out / "accuracy.png"
    plot_accuracy(
        {k: r.rounds for k, r in results.items()}, plot, "digits, non-IID (α=0.3), FedAvg"
    )
    width = max(map(len, results))
    print(f"\n{'run':<{width}}  test accuracy (last 5 rounds)  seconds")
    for name, rec in results.items():
        print(f"{name:<{width}}  {_format_summary(rec):<29}  {seconds[name]:.1f}")
    print(f"\naccuracy per round: {plot}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    points = spec.points()  # every point validated before anything runs
    if args.only:
        points = select(points, args.only)
    if args.shard:
        points = shard(points, args.shard)
    out = Path(args.out or spec.out)
    if args.dry_run:
        states = [point_state(out, p) for p in points]
        for point, state in zip(points, states, strict=True):
            print(f"{point.hash}  {state:<9}  {point.label}")
        done = sum(s in FINISHED for s in states)
        print(f"{len(points)} points in {out}: {done} finished, {len(points) - done} to run")
        return 0
    try:
        tally = run_sweep(points, out, progress=not args.quiet, time_budget=args.time_budget)
    except KeyboardInterrupt:
        print(
            f"lpfl: interrupted; finished runs are kept in {out}. The same command goes on "
            "from there (the run cut off resumes from its last checkpoint)",
            file=sys.stderr,
        )
        return INTERRUPTED
    print(f"{tally} (in {out})")
    return 0


def select(points: Sequence[Point], conditions: Sequence[str]) -> list[Point]:
    """The points whose config has every ``KEY=VALUE`` (VALUE read as TOML, else a string)."""
    raw = {}
    for condition in conditions:
        key, sep, text = condition.partition("=")
        if not sep:
            raise ConfigError(f"--only: expected KEY=VALUE, got {condition!r}")
        try:
            raw[key] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            raw[key] = text
    wanted = coerce_settings(raw, "--only")
    return [p for p in points if all(getattr(p.config, k) == v for k, v in wanted.items())]


def shard(points: Sequence[Point], spec: str) -> list[Point]:
    """Points ``i, i+n, i+2n, ...`` for ``spec`` = "i/n": n processes share one device.

    Small models leave a GPU mostly idle between kernel launches; n sweep processes on
    disjoint shards of one sweep folder keep it busy without coordinating.
    """
    try:
        index, count = (int(v) for v in spec.split("/"))
    except ValueError:
        raise ConfigError(f"--shard: expected I/N such as 0/4, got {spec!r}") from None
    if not 0 <= index < count:
        raise ConfigError(f"--shard: need 0 <= I < N, got {spec!r}")
    return list(points[index::count])


def cmd_report(args: argparse.Namespace) -> int:
    from .report import default_report_dir, write_report  # see cmd_demo

    out = args.out or default_report_dir(args.dirs)
    for path in write_report(args.dirs, out):
        print(f"wrote {path}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    """Download, verify, then load each dataset once: that proves the files are what the
    loaders read, and gives formats that are slow to decode (CINIC-10's PNGs) their cache."""
    data_dir = args.data_dir or default_data_dir()
    for name in args.datasets:
        folder = fetch(name, data_dir, progress=not args.quiet)
        train, test = load_dataset(name, data_dir)
        print(f"{name}: {len(train)} training and {len(test)} test images, ready in {folder}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lpfl",
        description="Federated learning with low-precision local training: clients train "
        "in block floating point, the server aggregates in high precision.",
        epilog="`lpfl COMMAND --help` lists a command's flags.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one federated experiment")
    _add_run_flags(run)
    run.set_defaults(func=cmd_run)
    demo = sub.add_parser(
        "demo", help="32-bit vs 8-bit FedAvg, and 8-bit with the moving average, on bundled digits"
    )
    demo.add_argument("--out", default="runs/demo", help="folder for results and the plot")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=cmd_demo)
    sweep = sub.add_parser("sweep", help="run every point of a grid, skipping finished ones")
    sweep.add_argument("spec", metavar="SPEC.toml", help="[base] settings and a [grid] of lists")
    sweep.add_argument("--out", help="runs folder (default: the spec's out, else runs/NAME)")
    sweep.add_argument("--dry-run", action="store_true", help="list points and state, run nothing")
    sweep.add_argument("--quiet", action="store_true", help="no progress bars")
    sweep.add_argument(
        "--only",
        action="append",
        metavar="KEY=VALUE",
        help="run only points with this setting (repeatable), e.g. --only dataset=fmnist",
    )
    sweep.add_argument("--shard", metavar="I/N", help="run only points I, I+N, ... (0-based)")
    sweep.add_argument(
        "--time-budget",
        type=float,
        metavar="SECONDS",
        help="start no run that would end after this, judging each by runs of its kind: "
        "this sweep's, else the newest in the out folder made on this device",
    )
    sweep.set_defaults(func=cmd_sweep)
    report = sub.add_parser("report", help="Table 1 and figures from every results.json in DIRs")
    report.add_argument("dirs", nargs="+", metavar="DIR", help="searched recursively")
    report.add_argument("--out", help="folder for the report (default: FIRST_DIR/report)")
    report.set_defaults(func=cmd_report)
    get = sub.add_parser("fetch", help="download datasets' official files, checksums verified")
    get.add_argument("datasets", nargs="+", choices=list(RELEASES), metavar="DATASET",
                     help=f"one or more of {', '.join(RELEASES)}")  # fmt: skip
    get.add_argument("--data-dir", help="where (default: $LPFL_DATA, else ~/.cache/lpfl)")
    get.add_argument("--quiet", action="store_true", help="no progress bars")
    get.set_defaults(func=cmd_fetch)
    return parser


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """A job scheduler, `timeout` or `kill` stops a process with SIGTERM: end the run as
    Ctrl-C does (results.json says "interrupted", the checkpoint stays for --resume)
    instead of dying between two writes with the run still marked "running"."""
    if threading.current_thread() is not threading.main_thread():  # no signals there
        yield
        return

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="lpfl: %(levelname)s: %(message)s")
    try:
        with _sigterm_as_interrupt():
            return args.func(args)
    except (ConfigError, DatasetNotFoundError, DataFormatError, DownloadError) as exc:
        print(f"lpfl: error: {exc}", file=sys.stderr)
        return 2
    except DivergenceError as exc:
        print(
            f"lpfl: run diverged and was stopped: {exc} (earlier rounds are kept)", file=sys.stderr
        )
        return 3
    except KeyboardInterrupt:
        print("lpfl: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
