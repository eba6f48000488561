"""Static facts about each supported dataset.

Models and normalisation need shapes and channel statistics before any data is read, and the
loaders need them to reject files that do not match, so they live in one table.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetSpec:
    """Shape, class count and train-split pixel statistics of one dataset.

    `folders` lists the directory names people commonly give the dataset, so an existing
    download is found without renaming it. `mean`/`std` are per channel on a 0-1 pixel scale.
    `full_train` is the official release's number of training samples, so a run on a
    smaller copy can say that its numbers are not the paper's setting.
    """

    name: str
    folders: tuple[str, ...]
    num_classes: int
    channels: int
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    full_train: int | None = None


_SPECS = (
    DatasetSpec(
        name="digits",
        folders=(),
        num_classes=10,
        channels=1,
        size=8,
        # Measured on the fixed train split built in digits.py (a test re-measures it).
        mean=(0.30553290,),
        std=(0.37594736,),
    ),
    DatasetSpec(
        name="fmnist",
        folders=("fmnist", "fashion-mnist"),
        num_classes=10,
        channels=1,
        size=28,
        mean=(0.286041,),
        std=(0.353024,),
        full_train=60_000,
    ),
    DatasetSpec(
        name="cifar10",
        folders=("cifar10", "cifar-10"),
        num_classes=10,
        channels=3,
        size=32,
        mean=(0.49139968, 0.48215841, 0.44653091),
        std=(0.24703223, 0.24348513, 0.26158784),
        full_train=50_000,
    ),
    DatasetSpec(
        name="cifar100",
        folders=("cifar100", "cifar-100"),
        num_classes=100,
        channels=3,
        size=32,
        mean=(0.50707516, 0.48654887, 0.44091784),
        std=(0.26733429, 0.25643846, 0.27615047),
        full_train=50_000,
    ),
    DatasetSpec(
        name="cinic10",
        folders=("cinic10", "cinic-10", "CINIC-10"),
        num_classes=10,
        channels=3,
        size=32,
        mean=(0.47889522, 0.47227842, 0.43047404),
        std=(0.24205776, 0.23828046, 0.25874835),
        full_train=90_000,
    ),
)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in _SPECS}
