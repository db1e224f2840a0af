"""Warping: kernels, transform grids, flux, variance, masks and real DECam data."""

from __future__ import annotations

import glob
import math
import pickle

import numpy as np
import pytest
from astropy.wcs import WCS, Sip

from skydiff.errors import InvalidExposureError, InvalidParameterError
from skydiff.image import Box, Exposure, MaskedImage, PhotoCalib, VisitInfo
from skydiff.math import windowed_centroids
from skydiff.warp import (
    KERNELS,
    destination_to_source,
    interpolation_error,
    kernel_half_width,
    kernel_taps,
    kernel_weight_table,
    make_coordinate_grid,
    overlap_box,
    warp_arrays,
    warp_exposure,
    warp_masked_image,
)

from .conftest import data_path

ARCSEC = 1.0 / 3600.0


def tan_wcs(
    *,
    crpix: tuple[float, float],
    crval: tuple[float, float] = (150.0, 2.0),
    scale: float = 0.2,
    rotation: float = 0.0,
    sip: dict[str, float] | None = None,
) -> WCS:
    """TAN (or TAN-SIP) WCS; ``crpix`` in 0-based parent pixels, ``scale`` in arcsec."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"] if sip else ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crpix = [crpix[0] + 1.0, crpix[1] + 1.0]
    wcs.wcs.crval = list(crval)
    c, s = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
    wcs.wcs.cd = scale * ARCSEC * np.array([[-c, s], [s, c]])
    if sip:
        a, b = np.zeros((4, 4)), np.zeros((4, 4))
        for key, value in sip.items():
            (a if key[0] == "A" else b)[int(key[1]), int(key[2])] = value
        wcs.sip = Sip(a, b, None, None, wcs.wcs.crpix)
    wcs.wcs.set()
    return wcs


#: Small SIP distortion: up to ~0.1 px over a 300 px image.
SIP = {
    "A20": 3e-6,
    "A11": -2e-6,
    "A02": 1e-6,
    "A30": 2e-9,
    "B02": 2.5e-6,
    "B11": 1.5e-6,
    "B03": 1e-9,
}


def sky_field(wcs: WCS, box: Box, blobs: np.ndarray) -> np.ndarray:
    """Analytic band-limited sky: 100 + wide Gaussians, sampled at the pixel centres of ``box``.

    ``blobs`` rows are ``(ra, dec, amplitude, sigma_arcsec)``; offsets are
    in arcsec, with the cosine of the first blob's declination.
    """
    y, x = np.mgrid[box.y0 : box.y_end, box.x0 : box.x_end].astype(float)
    ra, dec = wcs.all_pix2world(x, y, 0)
    cos_dec = math.cos(math.radians(blobs[0, 1]))
    value = np.full(x.shape, 100.0)
    for bra, bdec, amplitude, sigma in blobs:
        dx = (ra - bra) * cos_dec * 3600.0
        dy = (dec - bdec) * 3600.0
        value += amplitude * np.exp(-0.5 * (dx * dx + dy * dy) / sigma**2)
    return value


def random_blobs(rng: np.random.Generator, wcs: WCS, box: Box, n: int) -> np.ndarray:
    """Blobs of sigma 4-8 source pixels and amplitude -15..30 (on a sky of 100).

    Normalised Lanczos-3 interpolation errs by up to 2.5e-3 of the amplitude
    of a sigma = 4 px Gaussian (1.8e-3 at 6 px): its passband ripple. With
    these contrasts that stays below 1e-3 of the pixel value.
    """
    x = rng.uniform(box.x0, box.x_end, n)
    y = rng.uniform(box.y0, box.y_end, n)
    ra, dec = wcs.all_pix2world(x, y, 0)
    amplitude = rng.uniform(-15.0, 30.0, n)
    sigma = rng.uniform(4.0, 8.0, n) * 0.2
    return np.column_stack([ra, dec, amplitude, sigma])


def masked(image: np.ndarray, box: Box, variance: float = 1.0) -> MaskedImage:
    return MaskedImage(image, None, np.full(image.shape, variance, np.float32), bbox=box)


@pytest.fixture(scope="module")
def geometry():
    """A TAN-SIP source on a box with a non-zero origin and a rotated TAN destination."""
    src_box = Box(37, -21, 300, 300)
    src_wcs = tan_wcs(crpix=(180.0, 130.0), sip=SIP)
    dst_box = Box(-15, 12, 280, 280)
    dst_wcs = tan_wcs(crpix=(130.0, 150.0), crval=(150.0002, 1.9999), rotation=30.0)
    return src_box, src_wcs, dst_box, dst_wcs


def no_data(mi: MaskedImage) -> np.ndarray:
    return mi.mask.get("NO_DATA")


# -- kernels ------------------------------------------------------------------------------


def test_kernel_taps_and_table():
    frac = np.linspace(0.0, 0.999, 200)
    for name in KERNELS:
        n = kernel_half_width(name)
        taps = kernel_taps(name, frac)
        assert taps.shape == (200, 2 * n)
        np.testing.assert_allclose(taps.sum(axis=1), 1.0, atol=1e-12)
        # at an integer position every kernel is a delta on pixel floor(x)
        np.testing.assert_allclose(kernel_taps(name, 0.0), np.eye(2 * n)[n - 1], atol=1e-12)
        table = kernel_weight_table(name)
        u = frac * (table.shape[0] - 1)
        row = np.minimum(u.astype(int), table.shape[0] - 2)
        a = (u - row)[:, None]
        lerped = table[row] * (1 - a) + table[row + 1] * a
        assert np.abs(lerped - taps).max() < 2e-6
    np.testing.assert_allclose(kernel_taps("bilinear", 0.25), [0.75, 0.25])
    raw = kernel_taps("lanczos3", 0.5, normalize=False)
    assert raw[2] == pytest.approx(np.sinc(0.5) * np.sinc(0.5 / 3))


# -- transform grid -----------------------------------------------------------------------


@pytest.mark.parametrize(("interpolation", "tolerance"), [("linear", 1e-3), ("cubic", 1e-4)])
def test_grid_interpolation_accuracy(geometry, interpolation, tolerance):
    _, src_wcs, _, dst_wcs = geometry
    box = Box(-30, 5, 400, 400)
    grid = make_coordinate_grid(
        src_wcs, dst_wcs, box, interp_length=10, interpolation=interpolation
    )
    y, x = np.mgrid[box.y0 : box.y_end, box.x0 : box.x_end].astype(float)
    exact_x, exact_y = destination_to_source(src_wcs, dst_wcs, x, y)
    approx_x, approx_y, jacobian = grid.evaluate(x, y)
    error = np.hypot(approx_x - exact_x, approx_y - exact_y)
    assert error.max() < tolerance
    # the cheap check finds the same order of error
    checked = interpolation_error(grid, src_wcs, dst_wcs)
    assert error.max() / 3 < checked <= error.max() + 1e-12
    # Jacobian against centred differences of the exact transform
    step = 0.5
    xp, yp = destination_to_source(src_wcs, dst_wcs, x[::37, ::37] + step, y[::37, ::37])
    xm, ym = destination_to_source(src_wcs, dst_wcs, x[::37, ::37] - step, y[::37, ::37])
    xu, yu = destination_to_source(src_wcs, dst_wcs, x[::37, ::37], y[::37, ::37] + step)
    xd, yd = destination_to_source(src_wcs, dst_wcs, x[::37, ::37], y[::37, ::37] - step)
    exact_jac = np.abs((xp - xm) * (yu - yd) - (xu - xd) * (yp - ym)) / (2 * step) ** 2
    np.testing.assert_allclose(jacobian[::37, ::37], exact_jac, rtol=1e-5)


def test_grid_refines_until_accurate(geometry):
    _, src_wcs, _, _ = geometry
    strong = tan_wcs(crpix=(130.0, 150.0), rotation=10.0, sip={"A20": 2e-4, "B02": -2e-4})
    grid = make_coordinate_grid(src_wcs, strong, Box(0, 0, 300, 300), max_error=1e-3)
    assert grid.interp_length < 10
    assert grid.max_error <= 1e-3


# -- science ------------------------------------------------------------------------------


def test_band_limited_field_matches_analytic(geometry, rng):
    src_box, src_wcs, dst_box, dst_wcs = geometry
    blobs = random_blobs(rng, src_wcs, src_box, 25)
    source = masked(sky_field(src_wcs, src_box, blobs).astype(np.float32), src_box)
    warped = warp_masked_image(source, src_wcs, dst_wcs, dst_box, conserve_flux=False)
    expected = sky_field(dst_wcs, dst_box, blobs)
    good = ~no_data(warped)
    assert good.mean() > 0.6
    np.testing.assert_allclose(warped.image[good], expected[good], rtol=1e-3)
    assert np.all(np.isnan(warped.image[~good]))


@pytest.mark.parametrize("scale", [1.0, 1.3])
def test_star_flux_conserved(rng, scale):
    src_box = Box(-40, 25, 260, 240)
    src_wcs = tan_wcs(crpix=(90.0, 145.0), sip=SIP)
    dst_wcs = tan_wcs(crpix=(100.0, 100.0), scale=0.2 * scale, rotation=20.0)
    dst_box = Box(-20, -20, 240, 240)
    y, x = np.mgrid[src_box.y0 : src_box.y_end, src_box.x0 : src_box.x_end].astype(float)
    # isolated stars on a jittered 4 x 3 lattice, 55 px (27 sigma) apart
    lattice_x, lattice_y = np.meshgrid(np.arange(4) * 55.0, np.arange(3) * 55.0)
    sx = src_box.x0 + 48 + lattice_x.ravel() + rng.uniform(-5, 5, 12)
    sy = src_box.y0 + 60 + lattice_y.ravel() + rng.uniform(-5, 5, 12)
    flux = rng.uniform(1e4, 5e4, 12)
    sigma = 2.0
    image = np.zeros(x.shape)
    for fx, fy, f in zip(sx, sy, flux, strict=True):
        image += (
            f / (2 * np.pi * sigma**2) * np.exp(-0.5 * ((x - fx) ** 2 + (y - fy) ** 2) / sigma**2)
        )
    source = masked(image.astype(np.float32), src_box)
    warped = warp_masked_image(source, src_wcs, dst_wcs, dst_box)
    # every star lies well inside the covered part of the warp
    dx, dy = dst_wcs.all_world2pix(*src_wcs.all_pix2world(sx, sy, 0), 0)
    covered = ~no_data(warped)
    r = 12.0 / scale
    yd, xd = np.mgrid[dst_box.y0 : dst_box.y_end, dst_box.x0 : dst_box.x_end]
    for px, py in zip(dx, dy, strict=True):
        near = (xd - px) ** 2 + (yd - py) ** 2 < r**2
        assert covered[near].all()
    assert np.nansum(warped.image) == pytest.approx(flux.sum(), rel=1e-3)
    # star by star, in apertures of 6 sigma
    for px, py, f in zip(dx, dy, flux, strict=True):
        near = (xd - px) ** 2 + (yd - py) ** 2 < r**2
        assert warped.image[near].sum() == pytest.approx(f, rel=1e-3)
    # surface brightness mode: scaled by the inverse area ratio instead
    plain = warp_masked_image(source, src_wcs, dst_wcs, dst_box, conserve_flux=False)
    assert np.nansum(plain.image) == pytest.approx(flux.sum() / scale**2, rel=2e-3)
    bright = covered & (np.abs(plain.image) > 1)
    ratio = warped.image[bright] / plain.image[bright]
    np.testing.assert_allclose(ratio, scale**2, rtol=2e-3)  # SIP changes the area by < 1e-3
    grid = make_coordinate_grid(src_wcs, dst_wcs, dst_box)
    _, _, jacobian = grid.evaluate(xd[bright].astype(float), yd[bright].astype(float))
    np.testing.assert_allclose(ratio, jacobian, rtol=1e-5)


def test_forward_and_back(geometry, rng):
    src_box, src_wcs, _, dst_wcs = geometry
    blobs = random_blobs(rng, src_wcs, src_box, 25)
    source = masked(sky_field(src_wcs, src_box, blobs).astype(np.float32), src_box)
    wide = Box(-60, -40, 380, 380)
    there = warp_masked_image(source, src_wcs, dst_wcs, wide)
    back = warp_masked_image(there, dst_wcs, src_wcs, src_box)
    good = ~no_data(back)
    assert good.mean() > 0.9
    np.testing.assert_allclose(back.image[good], source.image[good], rtol=1e-3)


def test_variance_of_warped_noise(geometry, rng):
    src_box, src_wcs, dst_box, dst_wcs = geometry
    noise = rng.normal(0.0, 2.0, src_box.shape).astype(np.float32)
    source = masked(noise, src_box, variance=4.0)
    warped = warp_masked_image(source, src_wcs, dst_wcs, dst_box, conserve_flux=False)
    good = ~no_data(warped)
    assert good.sum() > 40000
    chi = warped.image[good] / np.sqrt(warped.variance[good])
    assert np.std(chi) == pytest.approx(1.0, rel=0.03)
    # the per-pixel variance falls below the input (sum w^2 < 1): neighbours are correlated
    assert 0.4 < np.mean(warped.variance[good]) / 4.0 < 0.95
    pair = good[:, 1:] & good[:, :-1]
    correlation = np.corrcoef(warped.image[:, 1:][pair], warped.image[:, :-1][pair])[0, 1]
    assert correlation > 0.05


def _window_any(flags: np.ndarray, ix: np.ndarray, iy: np.ndarray, n: int) -> np.ndarray:
    """Whether any flag is set in the kernel footprint anchored at (ix, iy) (inside only)."""
    table = np.zeros((flags.shape[0] + 1, flags.shape[1] + 1))
    table[1:, 1:] = flags.cumsum(0).cumsum(1)
    x0, x1, y0, y1 = ix - n + 1, ix + n + 1, iy - n + 1, iy + n + 1
    return (table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]) > 0


@pytest.mark.parametrize(
    ("kernel", "where"),
    [
        ("lanczos3", "all"),
        ("bilinear", "all"),
        ("lanczos5", "all"),
        ("lanczos3", "hole"),
        ("lanczos3", "side"),
    ],
)
def test_no_data_and_edge_where_coverage_is_incomplete(rng, kernel, where):
    n = kernel_half_width(kernel)
    src_box = Box(13, 7, 80, 70)
    src_wcs = tan_wcs(crpix=(50.0, 40.0))
    dst_wcs = tan_wcs(crpix=(48.3, 45.1), rotation=17.0)
    # the whole source, or small boxes around the hole or across the left side
    centre = {"all": None, "hole": (41, 30), "side": (1, 35)}[where]
    if centre is None:
        dst_box = Box(0, 0, 100, 100)
    else:
        sky = src_wcs.all_pix2world(centre[0] + src_box.x0, centre[1] + src_box.y0, 0)
        cx, cy = dst_wcs.all_world2pix(*sky, 0)
        dst_box = Box(int(cx) - 10, int(cy) - 10, 20, 20)
    source = masked(rng.normal(10.0, 1.0, src_box.shape).astype(np.float32), src_box)
    edge = np.zeros(src_box.shape, bool)
    edge[:3, :] = edge[-3:, :] = edge[:, :3] = edge[:, -3:] = True
    source.mask.set("EDGE", edge)
    hole = np.zeros(src_box.shape, bool)
    hole[30, 41] = True
    source.set_no_data(hole)
    source.image[50, 20] = np.nan  # non-finite without the bit: also missing data
    warped = warp_masked_image(source, src_wcs, dst_wcs, dst_box, kernel=kernel, interp_length=1)

    y, x = np.mgrid[dst_box.y0 : dst_box.y_end, dst_box.x0 : dst_box.x_end].astype(float)
    xs, ys = destination_to_source(src_wcs, dst_wcs, x, y)
    xs, ys = xs - src_box.x0, ys - src_box.y0
    height, width = src_box.shape
    covered = (xs >= n - 1) & (xs < width - n) & (ys >= n - 1) & (ys < height - n)
    ix = np.where(covered, np.floor(xs), n).astype(int)
    iy = np.where(covered, np.floor(ys), n).astype(int)
    missing = hole | ~np.isfinite(source.image)
    expected_no_data = ~covered | (covered & _window_any(missing, ix, iy, n))
    expected_edge = covered & _window_any(edge, ix, iy, n)
    if where == "all":
        assert 0 < covered.mean() < 1 and expected_edge.sum() > 100
    elif where == "hole":
        assert covered.all() and 0 < expected_no_data.sum() < 100
    else:
        assert 0 < covered.mean() < 1 and expected_edge.sum() > 10
    assert np.array_equal(no_data(warped), expected_no_data)
    assert np.array_equal(warped.mask.get("EDGE"), expected_edge)
    assert np.array_equal(np.isnan(warped.image), expected_no_data)
    assert np.array_equal(np.isinf(warped.variance), expected_no_data)
    assert np.all(warped.mask.array[~covered] == warped.mask.bitmask("NO_DATA"))


def test_mask_bits_or_over_bilinear_footprint():
    src_box = Box(-5, 3, 80, 70)
    src_wcs = tan_wcs(crpix=(30.0, 40.0))
    dst_wcs = tan_wcs(crpix=(35.2, 37.7), rotation=23.0, scale=0.17)
    dst_box = Box(0, 0, 90, 90)
    source = masked(np.ones(src_box.shape, np.float32), src_box)
    sat = np.zeros(src_box.shape, bool)
    sat[30, 40] = True
    source.mask.set("SAT", sat)
    warped = warp_masked_image(source, src_wcs, dst_wcs, dst_box, interp_length=1)
    y, x = np.mgrid[dst_box.y0 : dst_box.y_end, dst_box.x0 : dst_box.x_end].astype(float)
    xs, ys = destination_to_source(src_wcs, dst_wcs, x, y)
    expected = (np.abs(xs - src_box.x0 - 40) < 1) & (np.abs(ys - src_box.y0 - 30) < 1)
    assert 3 <= expected.sum() <= 8
    assert np.array_equal(warped.mask.get("SAT"), expected)
    assert np.all(np.isfinite(warped.image[expected]))


def test_agrees_with_reproject_bilinear(rng):
    reproject = pytest.importorskip("reproject")
    box = Box(0, 0, 200, 200)
    src_wcs = tan_wcs(crpix=(100.0, 100.0), sip=SIP)
    dst_wcs = tan_wcs(crpix=(95.0, 104.0), rotation=25.0, scale=0.21)
    blobs = random_blobs(rng, src_wcs, box, 15)
    image = sky_field(src_wcs, box, blobs)
    theirs, footprint = reproject.reproject_interp(
        (image, src_wcs), dst_wcs, shape_out=box.shape, order="bilinear"
    )
    ours = warp_masked_image(
        masked(image.astype(np.float32), box),
        src_wcs,
        dst_wcs,
        box,
        kernel="bilinear",
        conserve_flux=False,
    )
    good = ~no_data(ours) & (footprint > 0)
    assert good.mean() > 0.6
    np.testing.assert_allclose(ours.image[good], theirs[good], rtol=1e-3)


# -- exposures ----------------------------------------------------------------------------


def test_warp_exposure_keeps_calibration_and_drops_psf(geometry, rng):
    src_box, src_wcs, dst_box, dst_wcs = geometry
    source = masked(rng.normal(5.0, 1.0, src_box.shape).astype(np.float32), src_box)
    exposure = Exposure(
        source,
        wcs=src_wcs,
        photo_calib=PhotoCalib.from_zero_point(27.0),
        band="r",
        physical_filter="r DECam",
        visit_info=VisitInfo(visit=7, detector=3),
        metadata={"GAIN": 4.0},
    )
    warped = warp_exposure(exposure, dst_wcs, dst_box)
    assert warped.wcs is dst_wcs and warped.bbox == dst_box and warped.psf is None
    assert warped.photo_calib == exposure.photo_calib and warped.units == "count"
    assert (warped.band, warped.physical_filter) == ("r", "r DECam")
    assert warped.visit_info == exposure.visit_info and warped.metadata == {"GAIN": 4.0}
    assert warped.image.dtype == np.float32 and warped.variance.dtype == np.float32
    assert warped.mask.array.dtype == np.int32
    # the source is not modified
    assert np.array_equal(exposure.image, source.image)


def test_no_overlap_gives_all_no_data(geometry):
    src_box, src_wcs, _, _ = geometry
    far_wcs = tan_wcs(crpix=(0.0, 0.0), crval=(151.0, 2.5))
    far_box = Box(0, 0, 50, 40)
    assert overlap_box(src_box, src_wcs, far_wcs, far_box).is_empty
    exposure = Exposure(masked(np.ones(src_box.shape, np.float32), src_box), wcs=src_wcs)
    warped = warp_exposure(exposure, far_wcs, far_box)
    assert no_data(warped.masked_image).all()
    assert np.isnan(warped.image).all() and np.isinf(warped.variance).all()
    # the far side of the sky projects nowhere
    antipode = tan_wcs(crpix=(0.0, 0.0), crval=(330.0, -2.0))
    assert overlap_box(src_box, src_wcs, antipode, far_box).is_empty


def test_bad_arguments(geometry):
    src_box, src_wcs, dst_box, dst_wcs = geometry
    exposure = Exposure(masked(np.ones(src_box.shape, np.float32), src_box), wcs=src_wcs)
    cases = [
        ({"kernel": "lanczos2"}, "kernel"),
        ({"kernel": None}, "kernel"),
        ({"interp_length": 0}, "interp_length"),
        ({"interp_length": 2.5}, "interp_length"),
        ({"grid_interpolation": "quadratic"}, "interpolation"),
        ({"max_interp_error": 0.0}, "max_interp_error"),
    ]
    for kwargs, word in cases:
        with pytest.raises(InvalidParameterError, match=word):
            warp_exposure(exposure, dst_wcs, dst_box, **kwargs)
    with pytest.raises(InvalidParameterError, match="wcs"):
        warp_exposure(exposure, "not a wcs", dst_box)
    with pytest.raises(InvalidParameterError, match="bbox"):
        warp_exposure(exposure, dst_wcs, (0, 0, 10, 10))
    with pytest.raises(InvalidParameterError, match="bbox"):
        warp_exposure(exposure, dst_wcs, Box(0, 0, 0, 10))
    with pytest.raises(InvalidExposureError, match="no WCS"):
        warp_exposure(exposure.replace(wcs=None), dst_wcs, dst_box)


def test_sub_box_warp_equals_part_of_larger_warp(geometry, rng):
    src_box, src_wcs, dst_box, dst_wcs = geometry
    source = masked(rng.normal(10.0, 1.0, src_box.shape).astype(np.float32), src_box)
    full = warp_masked_image(source, src_wcs, dst_wcs, dst_box)
    part_box = Box(dst_box.x0 + 37, dst_box.y0 + 101, 93, 71)
    part = warp_masked_image(source, src_wcs, dst_wcs, part_box)
    assert part == full[part_box]  # nodes sit on a fixed lattice: chunking changes nothing


def test_options_and_array_layer(geometry, rng):
    src_box, src_wcs, dst_box, dst_wcs = geometry
    blobs = random_blobs(rng, src_wcs, src_box, 10)
    source = masked(sky_field(src_wcs, src_box, blobs).astype(np.float32), src_box)
    source.mask.set("CR", source.image > 120)
    linear = warp_masked_image(source, src_wcs, dst_wcs, dst_box)
    cubic = warp_masked_image(source, src_wcs, dst_wcs, dst_box, grid_interpolation="cubic")
    good = ~no_data(linear)
    np.testing.assert_allclose(cubic.image[good], linear.image[good], rtol=1e-5)
    # one plane name as a string, grown over the whole footprint
    grown = warp_masked_image(source, src_wcs, dst_wcs, dst_box, grow_planes="CR")
    assert grown.mask.get("CR").sum() > linear.mask.get("CR").sum()
    # the array layer on its own
    grid = make_coordinate_grid(src_wcs, dst_wcs, dst_box)
    nd = source.mask.bitmask("NO_DATA")
    image, variance, mask = warp_arrays(
        source.image,
        source.variance,
        source.mask.array,
        grid,
        src_origin=(src_box.x0, src_box.y0),
        no_data_bit=nd,
    )
    assert image.shape == dst_box.shape and mask.dtype == np.int32
    np.testing.assert_allclose(image[good], linear.image[good], rtol=1e-5)
    with pytest.raises(InvalidParameterError, match="one shape"):
        warp_arrays(source.image, source.variance[1:], source.mask.array, grid, no_data_bit=nd)
    with pytest.raises(InvalidParameterError, match="out_origin"):
        warp_arrays(
            source.image,
            source.variance,
            source.mask.array,
            grid,
            no_data_bit=nd,
            out=(image, variance, mask),
        )
    assert pickle.loads(pickle.dumps(grid)).bbox == grid.bbox


# -- real data ----------------------------------------------------------------------------


def _read_decam(path: str) -> Exposure:
    from skydiff.io import DECAM_CP_MASK_VALUES, read_image

    return read_image(
        path,
        weight=path.replace("_ooi_", "_oow_"),
        mask=path.replace("_ooi_", "_ood_"),
        mask_values=DECAM_CP_MASK_VALUES,
    )


def _distortion_px(exposure: Exposure) -> float:
    """Largest offset between the exposure's WCS and a pure TAN with its CRPIX and CD."""
    tan = WCS(naxis=2)
    tan.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    tan.wcs.crpix = exposure.wcs.wcs.crpix
    tan.wcs.crval = exposure.wcs.wcs.crval
    tan.wcs.cd = exposure.wcs.pixel_scale_matrix
    x, y = np.array(exposure.bbox.corners()).T
    tx, ty = tan.all_world2pix(*exposure.wcs.all_pix2world(x, y, 0), 0)
    return float(np.hypot(tx - x, ty - y).max())


def _centroid(image: np.ndarray, *, half: int = 7) -> tuple[float, float]:
    """Windowed centroid (array coordinates) of the brightest source."""
    filled = np.where(np.isfinite(image), image, -np.inf)
    cy, cx = np.unravel_index(np.argmax(filled), image.shape)
    stamp = image[cy - half : cy + half + 1, cx - half : cx + half + 1] - np.nanmedian(image)
    dx, dy = windowed_centroids(stamp[None].astype(float), sigma=2.0)
    return cx + float(dx[0]), cy + float(dy[0])


def test_decam_epochs_on_common_grid():
    root = data_path("legacypipe_decam", "testcase3", "images", "decam", "CP")
    paths = sorted(glob.glob(str(root / "*" / "*" / "*_ooi_z_*.fits")))
    assert len(paths) >= 2
    grid_wcs = tan_wcs(crpix=(24.0, 24.0), crval=(244.7796, 12.0724), scale=0.262)
    grid_box = Box(0, 0, 48, 48)
    predicted, measured = [], []
    for path in paths:
        exposure = _read_decam(path)
        assert _distortion_px(exposure) > 1.0  # the TPV terms are in use
        warped = warp_exposure(exposure, grid_wcs, grid_box)
        # where the source centroid lands according to the TPV WCS ...
        sx, sy = _centroid(exposure.image)
        ra, dec = exposure.pixel_to_sky(sx + exposure.bbox.x0, sy + exposure.bbox.y0)
        predicted.append(grid_wcs.all_world2pix(ra, dec, 0))
        # ... and where it is in the warp
        measured.append(_centroid(warped.image))
    predicted, measured = np.array(predicted, float), np.array(measured, float)
    assert np.abs(measured - predicted).max() < 0.05
    # epoch-to-epoch offsets in the warps are those of the WCS solutions
    np.testing.assert_allclose(measured - measured[0], predicted - predicted[0], atol=0.05)
