import numpy as np
import pytest

from skydiff.errors import InvalidParameterError
from skydiff.math import adaptive_moments
from skydiff.psf import (
    SIGMA_TO_FWHM,
    GaussianPsf,
    ImagePsf,
    MoffatPsf,
    PixelBasisPsf,
    VaryingAnalyticPsf,
)

MODELS = [
    GaussianPsf(3.5),
    GaussianPsf(4.0, axis_ratio=0.7, position_angle=25.0),
    MoffatPsf(4.2, beta=3.0),
    ImagePsf(GaussianPsf(3.0).kernel_image(0, 0)),
    PixelBasisPsf(
        np.stack(
            [
                GaussianPsf(3.0, size=21).kernel_image(0, 0),
                GaussianPsf(4.0, size=21).kernel_image(0, 0),
            ]
        ),
        np.array([[1.0, 0.2, 0.0], [0.0, 0.3, 0.1]]),
        (0, 0, 1000, 1000),
    ),
    VaryingAnalyticPsf(
        "moffat", (0, 0, 2000, 1000), [4.0, 0.4, -0.2], g1=[0.02, 0.03, 0.0], size=31
    ),
]


@pytest.mark.parametrize("psf", MODELS, ids=lambda p: type(p).__name__)
def test_protocol(psf):
    for x, y in [(0.0, 0.0), (500.0, 800.0)]:
        kernel = psf.kernel_image(x, y)
        assert kernel.shape == (psf.kernel_size, psf.kernel_size) and kernel.shape[0] % 2 == 1
        assert kernel.sum() == pytest.approx(1.0, abs=1e-12)
        xc, yc, *_ = adaptive_moments(kernel)
        center = psf.kernel_size // 2
        assert abs(xc - center) < 0.02 and abs(yc - center) < 0.02
        assert psf.fwhm(x, y) > 0
        ixx, iyy, ixy = psf.second_moments(x, y)
        assert ixx > 0 and iyy > 0 and ixy**2 < ixx * iyy


@pytest.mark.parametrize("psf", MODELS, ids=lambda p: type(p).__name__)
def test_subpixel_rendering_moves_the_centroid(psf):
    stamp = psf.image_at(100.0, 200.0, dx=0.3, dy=-0.25)
    xc, yc, *_ = adaptive_moments(stamp)
    center = psf.kernel_size // 2
    assert xc - center == pytest.approx(0.3, abs=0.02)
    assert yc - center == pytest.approx(-0.25, abs=0.02)
    assert stamp.sum() == pytest.approx(1.0, abs=1e-9)


def test_gaussian_moments_and_fwhm():
    psf = GaussianPsf(4.0, size=41)
    sigma = 4.0 / SIGMA_TO_FWHM
    ixx, iyy, ixy = psf.second_moments(0, 0)
    # pixel integration adds 1/12 px^2 to the variance of the continuous profile
    assert ixx == pytest.approx(sigma**2 + 1 / 12, rel=1e-3)
    assert iyy == pytest.approx(ixx, rel=1e-9) and abs(ixy) < 1e-9
    # the half-maximum FWHM of the pixelised image is that of the profile broadened by the
    # pixel (sigma^2 + 1/12), to 1% (spline interpolation of a 4-px FWHM image)
    pixelised = np.sqrt(sigma**2 + 1 / 12) * SIGMA_TO_FWHM
    assert ImagePsf(psf.kernel_image(0, 0)).fwhm(0, 0) == pytest.approx(pixelised, rel=0.01)


def test_moffat_fwhm_from_image():
    # wide enough that pixel broadening (< 0.4%) does not matter at 1.5%
    psf = MoffatPsf(8.0, beta=2.5)
    assert ImagePsf(psf.kernel_image(0, 0)).fwhm(0, 0) == pytest.approx(8.0, rel=0.015)


def test_varying_psf_follows_its_polynomial():
    psf = VaryingAnalyticPsf("gaussian", (0, 0, 1000, 1000), [4.0, 0.5, 0.0], size=25)
    assert psf.fwhm(0, 500) == pytest.approx(3.5) and psf.fwhm(1000, 500) == pytest.approx(4.5)
    measured = ImagePsf(psf.kernel_image(1000, 500)).fwhm(0, 0)
    assert measured == pytest.approx(np.hypot(4.5, SIGMA_TO_FWHM / np.sqrt(12)), rel=0.01)


def test_invalid_models():
    with pytest.raises(InvalidParameterError, match="fwhm"):
        GaussianPsf(-1)
    with pytest.raises(InvalidParameterError, match="odd"):
        ImagePsf(np.ones((4, 4)))
    with pytest.raises(InvalidParameterError, match="positive sum"):
        ImagePsf(np.zeros((5, 5)))
    with pytest.raises(InvalidParameterError, match="beta"):
        MoffatPsf(3, beta=1.0)
    with pytest.raises(InvalidParameterError, match="coefficients"):
        PixelBasisPsf(np.ones((2, 5, 5)), np.ones((3, 3)), (0, 0, 1, 1))


@pytest.mark.parametrize("psf", MODELS, ids=lambda p: type(p).__name__)
def test_models_pickle(psf):
    import pickle

    clone = pickle.loads(pickle.dumps(psf))
    assert clone == psf
    np.testing.assert_array_equal(clone.kernel_image(10.0, 20.0), psf.kernel_image(10.0, 20.0))
