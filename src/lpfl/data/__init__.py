"""Datasets for federated simulation: loading real image data and splitting it among clients.

Everything is held as uint8 NCHW numpy arrays; `normalize` turns a batch into model input.
"""

from lpfl.data.arrays import ArrayDataset
from lpfl.data.errors import DataFormatError, DatasetNotFoundError
from lpfl.data.loading import load_dataset, reusing_loaded_data
from lpfl.data.partition import PARTITION_METHODS, holdout, partition, summarize_partition
from lpfl.data.registry import DATASETS, DatasetSpec
from lpfl.data.transforms import normalize

__all__ = [
    "DATASETS",
    "PARTITION_METHODS",
    "ArrayDataset",
    "DataFormatError",
    "DatasetNotFoundError",
    "DatasetSpec",
    "holdout",
    "load_dataset",
    "normalize",
    "partition",
    "reusing_loaded_data",
    "summarize_partition",
]
