"""Test kit: synthetic exposure pairs with known PSFs, noise and sources.

For users to check their own configurations the way skydiff's tests do
(after LSST ip_diffim's ``tests/utils.py``, rewritten).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

from .image import Box, Exposure, MaskedImage, PhotoCalib, VisitInfo
from .psf import GaussianPsf

__all__ = ["TestPair", "make_test_pair", "tan_wcs"]


def tan_wcs(
    *,
    crpix: tuple[float, float] = (0.0, 0.0),
    scale_arcsec: float = 0.2,
    ra: float = 150.0,
    dec: float = 2.0,
) -> WCS:
    """A north-up TAN WCS with the given reference pixel (parent coordinates)."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [crpix[0] + 1.0, crpix[1] + 1.0]
    wcs.wcs.cd = np.diag([-scale_arcsec / 3600.0, scale_arcsec / 3600.0])
    return wcs


@dataclass(frozen=True)
class TestPair:
    """A template and a science exposure on one pixel grid, with their truth.

    Attributes
    ----------
    template, science : Exposure
        In counts, background included, Gaussian PSFs attached.
    sources : astropy.table.Table
        ``x``, ``y``, ``flux`` of the static stars (counts).
    transients : astropy.table.Table
        ``x``, ``y``, ``flux`` of sources only in the science image.
    science_model, template_model : numpy.ndarray
        Noise-free images.
    """

    template: Exposure
    science: Exposure
    sources: Table
    transients: Table
    science_model: np.ndarray
    template_model: np.ndarray


def _render(shape, origin, psf, x, y, flux) -> np.ndarray:
    image = np.zeros(shape, np.float64)
    half = psf.kernel_size // 2
    for xi, yi, fi in zip(x, y, flux, strict=True):
        ix, iy = round(float(xi)), round(float(yi))
        stamp = psf.image_at(xi, yi, dx=xi - ix, dy=yi - iy) * fi
        x0, y0 = ix - half - origin[0], iy - half - origin[1]
        ys = slice(max(y0, 0), min(y0 + stamp.shape[0], shape[0]))
        xs = slice(max(x0, 0), min(x0 + stamp.shape[1], shape[1]))
        image[ys, xs] += stamp[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
    return image


def make_test_pair(
    *,
    shape: tuple[int, int] = (512, 512),
    origin: tuple[int, int] = (100, 200),
    science_fwhm: float = 4.0,
    template_fwhm: float = 3.0,
    science_noise: float = 5.0,
    template_noise: float = 5.0,
    n_stars: int = 150,
    flux_range: tuple[float, float] = (500.0, 50000.0),
    science_background: np.ndarray | float = 0.0,
    template_background: np.ndarray | float = 0.0,
    flux_scale: float = 1.0,
    transients: Table | None = None,
    seed: int = 0,
) -> TestPair:
    """A template/science pair of Gaussian-PSF stars on a flat or given background.

    Star fluxes are log-uniform in ``flux_range`` (science fluxes are
    ``flux_scale`` times the template's); positions are uniform, at least 20
    px from the edges. Noise is Gaussian white noise of the given sigmas and
    the variance planes say exactly that.
    """
    rng = np.random.default_rng(seed)
    height, width = shape
    box = Box(origin[0], origin[1], width, height)
    x = rng.uniform(origin[0] + 20, origin[0] + width - 20, n_stars)
    y = rng.uniform(origin[1] + 20, origin[1] + height - 20, n_stars)
    flux = np.exp(rng.uniform(*np.log(flux_range), n_stars))
    science_psf, template_psf = GaussianPsf(science_fwhm), GaussianPsf(template_fwhm)
    template_model = _render(shape, origin, template_psf, x, y, flux) + template_background
    science_model = _render(shape, origin, science_psf, x, y, flux * flux_scale)
    science_model = science_model + science_background
    transients = (
        transients
        if transients is not None
        else Table({"x": np.zeros(0), "y": np.zeros(0), "flux": np.zeros(0)})
    )
    if len(transients):
        science_model += _render(
            shape, origin, science_psf, transients["x"], transients["y"], transients["flux"]
        )
    wcs = tan_wcs(crpix=(origin[0] + width / 2, origin[1] + height / 2))
    exposures = []
    for model, noise, psf, visit in (
        (template_model, template_noise, template_psf, 1),
        (science_model, science_noise, science_psf, 2),
    ):
        image = model + rng.normal(0.0, noise, shape)
        masked = MaskedImage(image, None, np.full(shape, noise**2), bbox=box)
        exposures.append(
            Exposure(
                masked,
                wcs=wcs,
                psf=psf,
                photo_calib=PhotoCalib(1.0),
                visit_info=VisitInfo(visit=visit, detector=0),
                band="r",
            )
        )
    sources = Table({"x": x, "y": y, "flux": flux})
    return TestPair(
        exposures[0],
        exposures[1],
        sources,
        transients,
        science_model.astype(np.float32),
        template_model.astype(np.float32),
    )
