import pickle

import numpy as np
import pytest

from skydiff.errors import InvalidParameterError
from skydiff.image import Box, MaskedImage


def make(rng, box=Box(3, -2, 8, 6)):
    return MaskedImage(rng.normal(size=box.shape), None, rng.uniform(1, 2, box.shape), bbox=box)


def test_dtypes_and_shapes(rng):
    mi = make(rng)
    assert mi.image.dtype == np.float32 and mi.variance.dtype == np.float32
    assert mi.mask.array.dtype == np.int32 and mi.shape == (6, 8)
    with pytest.raises(InvalidParameterError, match="variance shape"):
        MaskedImage(np.zeros((2, 2)), None, np.zeros((3, 3)))


def test_views_share_memory(rng):
    mi = make(rng)
    view = mi[Box(5, 0, 2, 2)]
    view.image[...] = 7.0
    view.mask.set("CR")
    assert np.all(mi.image[2:4, 2:4] == 7.0)
    assert mi.mask.get("CR")[2:4, 2:4].all() and mi.mask.get("CR").sum() == 4


def test_arithmetic_propagates_variance(rng):
    a, b = make(rng), make(rng)
    b.mask.set("SAT", b.image > 1)
    total = a + b
    np.testing.assert_allclose(total.image, a.image + b.image, rtol=1e-6)
    np.testing.assert_allclose(total.variance, a.variance + b.variance, rtol=1e-6)
    assert np.array_equal(total.mask.get("SAT"), b.image > 1)
    diff = a - b
    np.testing.assert_allclose(diff.variance, a.variance + b.variance, rtol=1e-6)
    scaled = 3.0 * a
    np.testing.assert_allclose(scaled.variance, 9 * a.variance, rtol=1e-6)
    np.testing.assert_allclose((a / 2.0).variance, a.variance / 4, rtol=1e-6)
    product = a * b
    expected = b.image**2 * a.variance + a.image**2 * b.variance
    np.testing.assert_allclose(product.variance, expected, rtol=1e-5)
    np.testing.assert_allclose((a + 1.5).variance, a.variance)
    with pytest.raises(InvalidParameterError, match="share a box"):
        a + make(rng, Box(0, 0, 8, 6))


def test_variance_matches_empirical_scatter(rng):
    """Adding two noise images: the variance plane predicts the pixel scatter."""
    box = Box(0, 0, 200, 200)
    a = MaskedImage(rng.normal(0, 2, box.shape), None, np.full(box.shape, 4.0))
    b = MaskedImage(rng.normal(0, 3, box.shape), None, np.full(box.shape, 9.0))
    diff = a - b
    # std of a sample of 40000 has relative error 1/sqrt(2*40000) = 0.35%
    assert abs(diff.image.std() / np.sqrt(diff.variance.mean()) - 1) < 0.015


def test_no_data_and_copy(rng):
    mi = make(rng)
    where = np.zeros(mi.shape, bool)
    where[0] = True
    mi.set_no_data(where)
    assert np.isnan(mi.image[0]).all() and np.isinf(mi.variance[0]).all()
    assert mi.mask.get("NO_DATA").sum() == mi.shape[1]
    copy = mi.copy()
    assert copy == mi
    copy.image[1, 1] += 1
    assert copy != mi
    assert pickle.loads(pickle.dumps(mi)) == mi


def test_assign_overlap(rng):
    big = MaskedImage.zeros(Box(0, 0, 10, 10))
    small = make(rng, Box(8, 8, 4, 4))
    big.assign(small)
    np.testing.assert_array_equal(big.image[8:, 8:], small.image[:2, :2])
    assert big.image[:8].sum() == 0


def test_fill_no_data_copies_good_pixels_only_where_empty():
    target = MaskedImage.no_data(Box(10, 20, 6, 5))
    target.image[0, 0], target.variance[0, 0] = 7.0, 1.0
    first = np.zeros(target.shape, bool)
    first[0, 0] = True
    target.mask.clear("NO_DATA", where=first)  # one pixel already has data
    source = MaskedImage.zeros(Box(10, 20, 4, 5))
    source.image[...], source.variance[...] = 3.0, 2.0
    source.mask.add_plane("STREAK")
    source.mask.array[1, 1] = source.mask.bitmask("STREAK")
    source.set_no_data(np.eye(5, 4, k=2, dtype=bool))  # a few missing source pixels
    filled = target.fill_no_data(source)
    assert filled == 4 * 5 - 1 - np.eye(5, 4, k=2, dtype=bool).sum()
    assert target.image[0, 0] == 7.0  # earlier data wins
    assert np.all(target.image[:, 4:] != target.image[:, 4:])  # outside the source: still NaN
    assert target.mask.get("STREAK")[1, 1] and target.mask.get("NO_DATA")[0, 2]
