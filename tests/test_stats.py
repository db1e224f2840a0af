import numpy as np
import pytest

from skydiff.image import Box, MaskedImage, statistics
from skydiff.math import clipped_stats, difference_noise, masked_median, robust_sigma


def test_clipped_stats_rejects_outliers(rng):
    values = rng.normal(10.0, 2.0, 100_000)
    values[:500] = 1e4  # 0.5% wild outliers
    result = clipped_stats(values, nsigma=3.0, max_iter=5)
    # sigma / sqrt(N) = 0.006; clipping a Gaussian at 3 sigma lowers its std by 1.3%
    assert result.mean == pytest.approx(10.0, abs=0.03)
    assert result.stddev == pytest.approx(2.0 * 0.9865, rel=0.01)
    assert robust_sigma(values) == pytest.approx(2.0, rel=0.02)
    assert masked_median(values) == pytest.approx(10.0, abs=0.03)


def test_vectorised_over_axis_matches_loop(rng):
    stack = rng.normal(0, 1, (7, 30, 40))
    stack[2, 5, 5] = 50.0
    good = rng.uniform(size=stack.shape) > 0.1
    result = clipped_stats(stack, good=good, axis=0)
    for y, x in [(5, 5), (0, 0), (29, 39)]:
        single = clipped_stats(stack[:, y, x], good=good[:, y, x])
        assert result.mean[y, x] == pytest.approx(single.mean)
        assert result.n[y, x] == single.n
    assert robust_sigma(stack, axis=0).shape == (30, 40)


def test_empty_input_gives_nan():
    result = clipped_stats(np.full(5, np.nan))
    assert np.isnan(result.mean) and result.n == 0
    assert np.isnan(masked_median(np.ones(3), good=np.zeros(3, bool)))


def test_masked_image_statistics_and_mask(rng):
    box = Box(10, 20, 300, 200)
    mi = MaskedImage(rng.normal(5.0, 3.0, box.shape), None, np.full(box.shape, 9.0), bbox=box)
    mi.image[:50] = 1e5
    saturated = np.zeros(box.shape, bool)
    saturated[:50] = True
    mi.mask.set("SAT", saturated)
    stats = statistics(mi)
    assert stats.n_good == 150 * 300
    assert stats.clipped_mean == pytest.approx(5.0, abs=5 * 3.0 / np.sqrt(45000))
    assert stats.iqr_sigma == pytest.approx(3.0, rel=0.02)
    assert stats.median_variance == 9.0


def test_difference_noise_ignores_gradients_and_sources(rng):
    y, x = np.mgrid[0:300, 0:300]
    image = 0.5 * x + 0.2 * y + rng.normal(0, 2.0, x.shape)
    image[100:110, 100:110] += 500.0
    assert difference_noise(image) == pytest.approx(2.0, rel=0.02)
