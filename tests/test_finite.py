"""The NaN/Inf check every client update goes through: fast, and still exact."""

import pytest
import torch

from lpfl.quant.finite import all_finite, finite_slices


def test_each_slice_is_judged_alone():
    x = torch.randn(6, 4, 5, generator=torch.Generator().manual_seed(0))
    x[1, 2, 3] = float("nan")
    x[3, 0, 0] = float("inf")
    x[4, 1, 1] = -float("inf")
    assert finite_slices(x).tolist() == [True, False, True, False, False, True]


def test_finite_values_whose_sum_overflows_are_still_finite():
    """The fast path sums a slice; a sum that overflows must not fail a finite client."""
    x = torch.full((3, 1000), 3e38)
    x[2, 7] = float("nan")
    assert finite_slices(x).tolist() == [True, True, False]
    assert all_finite(torch.full((100,), -3e38))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_dtypes(dtype):
    x = torch.full((2, 50_000), 60_000.0, dtype=dtype)  # float16 sums past 65504
    assert finite_slices(x).tolist() == [True, True]
    x[0, 0] = float("inf")
    assert finite_slices(x).tolist() == [False, True]


def test_shapes_at_the_edges():
    assert finite_slices(torch.tensor([1.0, float("nan"), 2.0])).tolist() == [True, False, True]
    assert finite_slices(torch.empty(3, 0)).tolist() == [True] * 3
    assert finite_slices(torch.empty(0, 4)).shape == (0,)
    assert finite_slices(torch.arange(6).view(2, 3)).tolist() == [True, True]  # integers
    assert all_finite(torch.tensor(2.0)) and not all_finite(torch.tensor(float("nan")))
    nested = torch.zeros(2, 3, 4)
    nested[1, 2, 0] = float("nan")
    assert finite_slices(nested, batch_dims=2).tolist() == [[True] * 3, [True, True, False]]
