import numpy as np
import pytest

from skydiff.background import (
    BackgroundList,
    BackgroundModel,
    SubtractBackgroundConfig,
    SubtractBackgroundTask,
)
from skydiff.errors import InvalidParameterError
from skydiff.image import Box, Exposure, MaskedImage
from skydiff.io import read_background, write_background
from skydiff.math import bin_image, fill_empty_bins, interpolate_grid

NOISE = 5.0


def smooth_sky(box):
    y, x = np.mgrid[box.y0 : box.y_end, box.x0 : box.x_end].astype(np.float64)
    return 100.0 + 0.02 * x - 0.01 * y + 4.0 * np.sin(x / 300.0) * np.cos(y / 400.0)


def noisy_image(rng, box=None):
    box = box or Box(37, -20, 1024, 768)
    truth = smooth_sky(box)
    image = truth + rng.normal(0.0, NOISE, box.shape)
    mi = MaskedImage(image, None, np.full(box.shape, NOISE**2), bbox=box)
    return mi, truth


def test_bin_statistics_are_unbiased(rng):
    image = rng.normal(10.0, 2.0, (300, 260)).astype(np.float32)
    image[5, 7] = 1e6  # an outlier the clipped mean ignores
    binned = bin_image(image, bin_size=(64, 50))
    assert binned.values.shape == (6, 5)
    # the last column of bins is 4 px wide: its centre is its pixels' mean coordinate
    np.testing.assert_allclose(binned.x_centers, [31.5, 95.5, 159.5, 223.5, 257.5])
    expected_error = 2.0 / np.sqrt(binned.counts)
    np.testing.assert_allclose(np.sqrt(binned.variances), expected_error, rtol=0.1)
    assert np.all(np.abs(binned.values - 10.0) < 5 * expected_error)


def test_empty_bins_are_filled_from_neighbours():
    values = np.array([[1.0, np.nan, 3.0], [np.nan, np.nan, 6.0]])
    filled = fill_empty_bins(values)
    assert np.all(np.isfinite(filled)) and filled[0, 0] == 1.0 and filled[1, 2] == 6.0
    with pytest.raises(ValueError, match="every bin is empty"):
        fill_empty_bins(np.full((2, 2), np.nan))


@pytest.mark.parametrize("kind", ["akima", "natural", "linear"])
def test_interpolation_reproduces_linear_fields_exactly(kind):
    xc, yc = np.array([10.0, 40.0, 80.0, 130.0]), np.array([5.0, 25.0, 70.0])
    values = 3.0 + 0.5 * xc[None, :] - 0.25 * yc[:, None]
    x, y = np.arange(0.0, 140.0), np.arange(0.0, 80.0)
    result = interpolate_grid(values, xc, yc, x, y, kind=kind)
    np.testing.assert_allclose(result, 3.0 + 0.5 * x[None, :] - 0.25 * y[:, None], atol=1e-4)


@pytest.mark.parametrize(
    ("interpolation", "order"), [("akima", None), ("natural", None), ("akima", 6)]
)
def test_smooth_background_recovered_to_one_percent_of_noise(rng, interpolation, order):
    mi, truth = noisy_image(rng)
    model = BackgroundModel.measure(
        mi, bin_size=64, interpolation=interpolation, approximation_order=order
    )
    residual = model.evaluate() - truth
    inner = residual[64:-64, 64:-64]
    # 16 x 12 bins of 4096 pixels: each bin mean has an error of 5/64 = 1.6% of the noise;
    # interpolation averages neighbouring bins, so the rms residual is near 1%.
    assert np.sqrt(np.mean(inner**2)) < 0.015 * NOISE
    assert abs(inner.mean()) < 0.005 * NOISE


def test_masked_pixels_and_empty_bins_do_not_bias(rng):
    mi, truth = noisy_image(rng)
    mi.image[100:300, 200:400] += 5000.0  # a bright object, masked
    mi.mask.set("DETECTED", np.pad(np.ones((200, 200), bool), ((100, 468), (200, 624))))
    mi.set_no_data(np.pad(np.ones((150, 1024), bool), ((618, 0), (0, 0))))  # top rows missing
    model = BackgroundModel.measure(mi, bin_size=64)
    assert np.isnan(model.values).any()  # bins inside the NO_DATA region are empty
    residual = (model.evaluate() - truth)[64:550, 64:-64]
    assert np.sqrt(np.mean(residual**2)) < 0.03 * NOISE


def test_evaluate_on_any_box_and_model_list(rng):
    mi, _ = noisy_image(rng)
    model = BackgroundModel.measure(mi, bin_size=128)
    full = model.evaluate()
    part = Box(100, 50, 30, 40)
    np.testing.assert_array_equal(model.evaluate(part), full[part.slices(mi.bbox)])
    doubled = BackgroundList((model, model.scaled(0.5)))
    np.testing.assert_allclose(doubled.evaluate(mi.bbox), 1.5 * full, rtol=1e-5)
    assert len(BackgroundList()) == 0 and not BackgroundList().evaluate(part).any()
    subtracted = model.subtracted_from(mi)
    np.testing.assert_allclose(subtracted.image, mi.image - full, rtol=1e-6, atol=1e-4)


def test_bad_bin_sizes_raise(rng):
    mi, _ = noisy_image(rng, Box(0, 0, 100, 80))
    with pytest.raises(InvalidParameterError, match="bin size"):
        BackgroundModel.measure(mi, bin_size=200)
    mi.set_no_data()
    with pytest.raises(InvalidParameterError, match="no background bin"):
        BackgroundModel.measure(mi, bin_size=20)


def test_persistence_round_trip(tmp_path, rng):
    mi, _ = noisy_image(rng)
    mi.set_no_data(np.pad(np.ones((100, 100), bool), ((0, 668), (0, 924))))
    models = BackgroundList(
        (
            BackgroundModel.measure(mi, bin_size=64),
            BackgroundModel.measure(mi, bin_size=256, approximation_order=2),
        )
    )
    path = write_background(models, tmp_path / "bg.fits")
    back = read_background(path)
    assert len(back) == 2
    for a, b in zip(models, back, strict=True):
        np.testing.assert_array_equal(a.evaluate(), b.evaluate())
        assert a.bbox == b.bbox and a.interpolation == b.interpolation


def test_subtract_background_task(rng):
    mi, truth = noisy_image(rng)
    exposure = Exposure(mi)
    task = SubtractBackgroundTask(SubtractBackgroundConfig(bin_size=64))
    result = task.run(exposure)
    assert result.exposure is not exposure and np.array_equal(exposure.image, mi.image)
    residual = result.exposure.image - (mi.image - truth)
    assert np.sqrt(np.mean(residual[64:-64, 64:-64] ** 2)) < 0.015 * NOISE
    assert len(result.background) == 1
    assert result.metadata["background_mean"] == pytest.approx(truth.mean(), rel=1e-3)
    with pytest.raises(InvalidParameterError, match="bin_size"):
        SubtractBackgroundConfig(bin_size=0)
