import numpy as np
import pytest

from skydiff.characterize import ScaleVarianceConfig, ScaleVarianceTask
from skydiff.errors import InvalidParameterError
from skydiff.image import Box, MaskedImage


def noise_image(rng, true_variance, plane_factor, box=Box(10, 20, 512, 400)):
    """Pixels with noise of ``true_variance`` and a plane reporting it divided by a factor."""
    y = np.arange(box.height)[:, None]
    variance = true_variance * (1.0 + y / box.height) * np.ones(box.shape)  # varies 2x
    image = 50.0 + 0.01 * y + rng.normal(size=box.shape) * np.sqrt(variance)
    return MaskedImage(image, None, variance / plane_factor, bbox=box)


@pytest.mark.parametrize("factor", [1.0, 1.345, 0.5])
def test_factor_recovered(rng, factor):
    masked_image = noise_image(rng, 16.0, factor)
    result = ScaleVarianceTask().run(masked_image)
    # 2e5 pixels: the IQR variance has a relative error near 0.5%; the issue asks for 0.05
    assert result.factor == pytest.approx(factor, abs=0.05 * factor)
    assert result.method == "pixel"
    np.testing.assert_allclose(
        result.masked_image.variance, masked_image.variance * result.factor, rtol=1e-6
    )
    assert masked_image.variance is not result.masked_image.variance


def test_sources_and_masked_pixels_do_not_bias(rng):
    masked_image = noise_image(rng, 16.0, 1.345)
    stars = rng.uniform(size=masked_image.shape) < 0.02
    masked_image.image[stars] += 1e4
    masked_image.mask.set("DETECTED", stars)
    assert ScaleVarianceTask().run(masked_image).factor == pytest.approx(1.345, abs=0.05)


def test_fallback_to_image_based_with_a_warning(rng, caplog):
    masked_image = noise_image(rng, 16.0, 1.0)
    masked_image.variance[...] = 1e-3  # a useless plane: factor ~16000
    result = ScaleVarianceTask(ScaleVarianceConfig(limit=10.0)).run(masked_image)
    assert result.method == "image"
    assert "beyond the limit" in caplog.text
    # image-based: pixel variance (mean 24 over the 2x ramp) over the median plane value
    assert result.factor == pytest.approx(24.0 / 1e-3, rel=0.05)


def test_config_validation():
    with pytest.raises(InvalidParameterError, match="limit"):
        ScaleVarianceConfig(limit=1.0)
