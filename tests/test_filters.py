import numpy as np
import pytest
from scipy import ndimage

from skydiff.math import (
    box_dilate,
    box_or,
    find_peaks,
    gaussian_smooth,
    matched_filter_significance,
)


@pytest.mark.parametrize("radius", [1, 4, 9])
def test_box_or_matches_per_plane_dilation(rng, radius):
    planes = rng.uniform(size=(5, 150, 170)) < 0.002
    mask = np.zeros((150, 170), np.int32)
    for bit, plane in enumerate(planes):
        mask |= plane.astype(np.int32) << (bit * 6)
    result = box_or(mask, radius)
    structure = np.ones((2 * radius + 1, 2 * radius + 1), bool)
    for bit, plane in enumerate(planes):
        expected = ndimage.binary_dilation(plane, structure)
        assert np.array_equal((result >> (bit * 6)) & 1 == 1, expected)
        assert np.array_equal(box_dilate(plane, radius), expected)


def test_gaussian_smooth_and_significance(rng):
    image = rng.normal(0, 2.0, (200, 220)).astype(np.float32)
    expected = ndimage.gaussian_filter(image.astype(float), 1.7, mode="constant", truncate=4.0)
    np.testing.assert_allclose(gaussian_smooth(image, 1.7), expected, atol=1e-5)
    significance, _ = matched_filter_significance(image, np.full(image.shape, 4.0), 1.7)
    # pure noise: the matched-filter significance has unit variance (away from the edges)
    assert np.std(significance[20:-20, 20:-20]) == pytest.approx(1.0, rel=0.05)


def test_find_peaks_strict_maxima(rng):
    image = rng.normal(size=(60, 70)).astype(np.float32)
    y, x = find_peaks(image, np.ones(image.shape, bool))
    maximum = ndimage.maximum_filter(image, 3) == image
    maximum[[0, -1], :] = maximum[:, [0, -1]] = False
    assert set(zip(y.tolist(), x.tolist(), strict=True)) == set(
        zip(*np.nonzero(maximum), strict=True)
    )
