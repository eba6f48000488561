"""Run configuration: one dataclass, its validation, and TOML + command-line merging.

Every setting is declared once here; the CLI flags (kebab-case) and the TOML keys are
derived from the field names, so the two can never drift apart.
"""

from __future__ import annotations

import math
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .algorithms import ALGORITHMS, FedFTGOptions, FedGenOptions, plugins
from .algorithms.server_optimizers import SERVER_OPTIMIZERS
from .algorithms.submodels import WIDTH_ASSIGNMENTS, parse_widths
from .quant.formats import BLOCK_MODES, FULL_PRECISION, MAX_BITS, MIN_BITS, ROUNDING_MODES
from .wire.format import COMPRESSIONS, FLOAT_DTYPES, WireFormat

DATASET_NAMES = ("digits", "fmnist", "cifar10", "cifar100", "cinic10")
MODEL_NAMES = ("convnet", "mlp", "resnet8", "resnet18")
PARTITIONS = ("dirichlet", "dirichlet-plain", "iid")


TRACKERS = ("tensorboard", "wandb")


def parse_trackers(value: str) -> tuple[str, ...]:
    """``"none"`` or a comma-separated list of tracker names."""
    names = tuple(n.strip() for n in value.split(",") if n.strip() and n.strip() != "none")
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise ValueError(f"unknown tracker {unknown[0]!r}; choose from none, {', '.join(TRACKERS)}")
    return names


class ConfigError(ValueError):
    """A setting out of range; the message starts with the flag that holds it."""


def _opt(
    default: Any, help: str, choices: tuple[Any, ...] | None = None, shown: str | None = None
) -> Any:
    """A setting; ``shown`` says what a None default stands for, in words, for --help."""
    return field(default=default, metadata={"help": help, "choices": choices, "shown": shown})


@dataclass(frozen=True)
class RunConfig:
    dataset: str = _opt("digits", "dataset", DATASET_NAMES)
    data_dir: str | None = _opt(None, "data folder", shown="$LPFL_DATA, else ~/.cache/lpfl")
    model: str = _opt("convnet", "model architecture", MODEL_NAMES)
    clients: int = _opt(80, "number of clients")
    participation: float = _opt(0.4, "fraction of clients sampled per round, in (0, 1]")
    rounds: int = _opt(200, "communication rounds")
    local_epochs: int = _opt(1, "local epochs per round")
    batch_size: int = _opt(32, "local batch size")
    lr: float = _opt(1e-3, "client learning rate")
    optimizer: str = _opt("adam", "client optimizer", ("adam", "sgd"))
    momentum: float = _opt(0.0, "SGD momentum")
    optimizer_state: str = _opt(
        "persist",
        "keep each client's optimizer state across rounds, or reset it",
        ("persist", "reset"),
    )
    partition: str = _opt("dirichlet", "client split (dirichlet = balanced sizes)", PARTITIONS)
    alpha: float = _opt(0.04, "Dirichlet concentration; smaller is more non-IID")
    bits: int = _opt(
        8, f"word length: {MIN_BITS}..{MAX_BITS}, or {FULL_PRECISION} for full precision"
    )
    rounding: str = _opt("stochastic", "rounding mode", ROUNDING_MODES)
    weight_block: str = _opt("BC", "exponent blocks for weights", BLOCK_MODES)
    grad_block: str | None = _opt(
        None, "exponent blocks for gradients", BLOCK_MODES, shown="weight-block"
    )
    act_block: str = _opt("tensor", "exponent blocks for activations", BLOCK_MODES)
    error_block: str | None = _opt(
        None, "exponent blocks for errors", BLOCK_MODES, shown="act-block"
    )
    moving_average: float = _opt(
        0.9, "server moving-average factor lambda in [0, 1); 0 turns it off"
    )
    ma_start: int = _opt(1, "round whose aggregate starts the moving average")
    server_opt: str = _opt(
        "sgd", "server step on the pseudo-gradient (sgd = the moving average)", SERVER_OPTIMIZERS
    )
    server_lr: float | None = _opt(None, "server learning rate", shown="1 - moving-average")
    server_momentum: float = _opt(0.9, "momentum of --server-opt momentum")
    algorithm: str = _opt(
        "fedavg", "FL algorithm, or the name of an algorithm plugin (docs/plugins.md)", ALGORITHMS
    )
    server_val_fraction: float = _opt(
        0.1, "ABAvg: share of the training data the server keeps to score clients"
    )
    prox_mu: float = _opt(0.1, "FedProx: weight of mu*||w - w_global||^2 (no 1/2, as the paper)")
    hetero_widths: str = _opt(
        "1", "HeteroFL/SplitMix: the clients' width budgets, e.g. 1/4,1/8 (fractions of the model)"
    )
    hetero_assign: str = _opt(
        "cycle",
        "HeteroFL/SplitMix: client k gets widths[k % n] (cycle) or a seeded uniform draw (random)",
        WIDTH_ASSIGNMENTS,
    )
    splitmix_base: str = _opt("1/8", "SplitMix: width of one base model, 1/n")
    fedgen_lr: float = _opt(3e-4, "FedGen: generator Adam learning rate")
    fedgen_steps: int = _opt(5, "FedGen: generator steps on the server per round")
    fedgen_batch_size: int = _opt(
        32, "FedGen: generated samples per generator step and per client step"
    )
    fedgen_noise_dim: int = _opt(32, "FedGen: generator noise width")
    fedgen_hidden_dim: int = _opt(32, "FedGen: generator hidden width")
    fedgen_alpha: float = _opt(
        0.1, "FedGen: client weight of cross-entropy on generated features (decays)"
    )
    fedgen_beta: float = _opt(
        2.5, "FedGen: client weight of the KL toward the head on generated features (decays)"
    )
    fedgen_diversity: float = _opt(
        1.0, "FedGen: generator diversity-loss weight (Zhu et al.; the reference uses 0)"
    )
    fedgen_decay: float = _opt(
        0.98, "FedGen: per-round decay of alpha, beta and the generator learning rate"
    )
    fedftg_iterations: int = _opt(
        10, "FedFTG: generator/distillation alternations per round on the server"
    )
    fedftg_generator_steps: int = _opt(1, "FedFTG: generator steps per alternation")
    fedftg_distill_steps: int = _opt(5, "FedFTG: global-model steps per alternation")
    fedftg_generator_lr: float = _opt(1e-2, "FedFTG: generator Adam learning rate")
    fedftg_lr: float = _opt(1e-4, "FedFTG: global-model Adam learning rate when fine-tuning")
    fedftg_batch_size: int = _opt(32, "FedFTG: generated samples per step")
    fedftg_noise_dim: int = _opt(128, "FedFTG: generator noise width")
    fedftg_hard: float = _opt(1.0, "FedFTG: weight of the hard-sample (disagreement) term")
    fedftg_diversity: float = _opt(1.0, "FedFTG: generator diversity-loss weight")
    aggregation: str = _opt(
        "mean", "unweighted mean (reference) or sample-weighted", ("mean", "weighted")
    )
    download_quant: bool = _opt(True, "clients start from the quantized global model Q(w)")
    wire_float: str = _opt(
        "float32", "how unquantized tensors travel (all of them at 32 bits)", FLOAT_DTYPES
    )
    compression: str = _opt(
        "none", "lossless stage after bit-packing, both directions", COMPRESSIONS
    )
    seed: int = _opt(0, "seed for the split, sampling, initialisation and rounding")
    device: str = _opt("auto", "where to train", ("auto", "cpu", "cuda"))
    engine: str = _opt(
        "auto",
        "train a round's clients all at once, or one by one "
        "(auto: at once, except convolutional models on the CPU)",
        ("auto", "vectorized", "sequential"),
    )
    fused_quant: str = _opt(
        "auto",
        "round through fused kernels (auto: on CUDA; on CPU for low-bit runs of 100+ rounds "
        "of the sequential engine)",
        ("auto", "on", "off"),
    )
    tf32: str = _opt(
        "auto",
        "TF32 tensor cores for client training (auto: on CUDA at <= 12 bits, where exact)",
        ("auto", "on", "off"),
    )
    fused_norm: bool = _opt(
        True,
        "on CUDA, GroupNorm + ReLU of a client stack as one Triton kernel each way "
        "(off: torch's ops, which round the affine twice)",
    )
    cuda_graph: bool = _opt(
        True,
        "on CUDA, capture the vectorized engine's training step as a CUDA graph and replay "
        "it: the same values, 2.3x faster at 8 bits (off: launch every kernel from Python)",
    )
    eval_every: int = _opt(1, "evaluate the global model every N rounds (and at the last)")
    eval_quantized: bool = _opt(
        False, "also evaluate with the clients' activation rounding on (the reference's way)"
    )
    out: str | None = _opt(
        None,
        "folder for results.json, metrics.csv and checkpoints",
        shown="runs/HASH, HASH naming the settings; as a library, none: no files",
    )
    trackers: str = _opt("none", "also log rounds to tensorboard and/or wandb (comma-separated)")
    checkpoint_every: int = _opt(
        10, "save a resumable checkpoint in --out every N rounds (0: never)"
    )

    @property
    def clients_per_round(self) -> int:
        return max(1, round(self.participation * self.clients))

    def uplink(self) -> WireFormat:
        """Client updates: weights already lie on the BFP grid, so nearest sends them exactly."""
        return WireFormat(
            self.bits, self.weight_block, "nearest", self.wire_float, self.compression
        )

    def downlink(self) -> WireFormat:
        """The broadcast: Q(w̄) rounded like weights when download quantization is on, else raw."""
        bits = self.bits if self.download_quant else FULL_PRECISION
        return WireFormat(bits, self.weight_block, self.rounding, self.wire_float, self.compression)

    def fedgen_options(self) -> FedGenOptions:
        return FedGenOptions(**self._prefixed("fedgen", FedGenOptions))

    def fedftg_options(self) -> FedFTGOptions:
        return FedFTGOptions(**self._prefixed("fedftg", FedFTGOptions))

    def _prefixed(self, prefix: str, options: type) -> dict[str, Any]:
        """The ``prefix_*`` settings, named as the options dataclass names them."""
        return {f.name: getattr(self, f"{prefix}_{f.name}") for f in fields(options)}

    def resolved_server_lr(self) -> float:
        return self.server_lr if self.server_lr is not None else 1.0 - self.moving_average

    def resolved_data_dir(self) -> Path:
        if self.data_dir:
            return Path(self.data_dir).expanduser()
        env = os.environ.get("LPFL_DATA")
        return Path(env).expanduser() if env else Path.home() / ".cache" / "lpfl"

    def validate(self) -> RunConfig:
        """Refuse a bad setting before any work is done."""
        for f in fields(self):
            choices = f.metadata["choices"]
            value = getattr(self, f.name)
            if choices and value is not None and value not in choices:
                if f.name == "algorithm" and _plugin_loads(value):
                    continue
                raise ConfigError(
                    f"{flag(f.name)}: must be one of {', '.join(map(str, choices))}"
                    f"{_plugins_named() if f.name == 'algorithm' else ''}, got {value!r}"
                )
            # inf passes "> 0" and nan fails every rule with a puzzling message
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{flag(f.name)}: must be a finite number, got {value!r}")
        checks = [
            ("seed", 0 <= self.seed < 2**32, "must be in [0, 2**32)"),
            (
                "bits",
                self.bits == FULL_PRECISION or MIN_BITS <= self.bits <= MAX_BITS,
                f"must be {MIN_BITS}..{MAX_BITS} or {FULL_PRECISION}",
            ),
            ("alpha", self.alpha > 0, "must be > 0"),
            ("participation", 0 < self.participation <= 1, "must be in (0, 1]"),
            ("clients", self.clients >= 1, "must be >= 1"),
            ("rounds", self.rounds >= 1, "must be >= 1"),
            ("local_epochs", self.local_epochs >= 1, "must be >= 1"),
            ("batch_size", self.batch_size >= 1, "must be >= 1"),
            ("lr", self.lr > 0, "must be > 0"),
            ("momentum", 0 <= self.momentum < 1, "must be in [0, 1)"),
            ("moving_average", 0 <= self.moving_average < 1, "must be in [0, 1)"),
            ("ma_start", self.ma_start >= 1, "must be >= 1"),
            ("eval_every", self.eval_every >= 1, "must be >= 1"),
            ("checkpoint_every", self.checkpoint_every >= 0, "must be >= 0"),
            ("server_lr", self.server_lr is None or self.server_lr > 0, "must be > 0"),
            ("server_momentum", 0 <= self.server_momentum < 1, "must be in [0, 1)"),
            ("prox_mu", self.prox_mu >= 0, "must be >= 0"),
            ("server_val_fraction", 0 < self.server_val_fraction < 0.5, "must be in (0, 0.5)"),
        ]
        for prefix, options in (
            ("fedgen", self.fedgen_options()),
            ("fedftg", self.fedftg_options()),
        ):
            checks += [(f"{prefix}_{name}", ok, rule) for name, ok, rule in options.checks()]
        try:
            parse_trackers(self.trackers)
        except ValueError as exc:
            raise ConfigError(f"--trackers: {exc}") from None
        self._validate_widths()
        for name, ok, rule in checks:
            if not ok:
                raise ConfigError(f"{flag(name)}: {rule}, got {getattr(self, name)!r}")
        return self

    def _validate_widths(self) -> None:
        for name in ("hetero_widths", "splitmix_base"):
            try:
                parse_widths(getattr(self, name))
            except ValueError as exc:
                raise ConfigError(f"{flag(name)}: {exc}") from None
        bases = parse_widths(self.splitmix_base)
        if len(bases) != 1 or (1 / bases[0]).denominator != 1:
            raise ConfigError(f"--splitmix-base: must be one 1/n, got {self.splitmix_base!r}")
        if self.algorithm == "splitmix" and min(parse_widths(self.hetero_widths)) < bases[0]:
            raise ConfigError(f"--hetero-widths: every budget must hold one {bases[0]} base")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _plugin_loads(name: str) -> bool:
    try:
        return plugins.find(name) is not None
    except Exception as exc:  # a broken plugin package: say so, whatever it raised
        raise ConfigError(f"--algorithm: the plugin {name!r} failed to load: {exc!r}") from exc


def _plugins_named() -> str:
    found = plugins.names()
    return f", or a plugin: {', '.join(found)}" if found else " (no algorithm plugin installed)"


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def field_type(name: str) -> type:
    """The value type of a setting: ``float`` for ``float | None``, and so on."""
    hint = typing.get_type_hints(RunConfig)[name]
    return next(t for t in typing.get_args(hint) or (hint,) if t is not type(None))


def field_defaults() -> dict[str, Any]:
    return {f.name: f.default for f in fields(RunConfig) if f.default is not MISSING}


def _coerce(name: str, value: Any) -> Any:
    """Check a TOML value has the field's type (TOML ints are fine where floats are expected)."""
    kind = field_type(name)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{flag(name)}: expected {kind.__name__}, got {value!r}")
    return value


def load_toml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a TOML config; keys may be kebab-case or snake_case, unknown keys are refused."""
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"--config: no such file {os.fspath(path)!r}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config: {os.fspath(path)} is not valid TOML: {exc}") from None
    return coerce_settings(raw, f"--config {os.fspath(path)}")


def coerce_settings(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Settings from a file or another system (kebab- or snake-case keys) as typed fields.

    Unknown keys are refused, naming the key and where it came from, so a typo never
    silently falls back to a default.
    """
    known = field_defaults()
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ConfigError(f"{flag(name)}: unknown key {key!r} in {source}")
        out[name] = _coerce(name, value)
    return out


def make_config(toml_path: str | None = None, **overrides: Any) -> RunConfig:
    """Defaults, then the TOML file, then explicit overrides (flags); validated."""
    values = load_toml(toml_path) if toml_path else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return replace(RunConfig(), **values).validate()
