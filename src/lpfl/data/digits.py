"""scikit-learn's bundled 8x8 digits: a dataset that needs no download, for quick runs and tests.

The train/test split is fixed (its own seed, independent of any run seed) so that the
published statistics in the registry and every experiment see the same two sets.
"""

import numpy as np

from lpfl.data.arrays import ArrayDataset
from lpfl.data.formats import Splits

_TEST_FRACTION = 0.2
_SPLIT_SEED = 0


def load_digits_splits() -> Splits:
    """(train, test) as uint8 (N, 1, 8, 8), with 20% of every class held out for test."""
    # Imported here: scikit-learn is slow to import and only this dataset needs it.
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.round(bunch.images * 255 / 16).astype(np.uint8)[:, None]
    y = bunch.target.astype(np.int64)
    rng = np.random.default_rng(_SPLIT_SEED)
    is_test = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        is_test[members[: round(_TEST_FRACTION * len(members))]] = True
    return ArrayDataset(x[~is_test], y[~is_test]), ArrayDataset(x[is_test], y[is_test])
