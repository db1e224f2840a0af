"""Direct and PSF-matched warps, CoaddPsf and ModelPsfMatchTask."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS

from skydiff.coadd import MakeWarpConfig, MakeWarpTask
from skydiff.diffim import ModelPsfConfig, ModelPsfMatchTask
from skydiff.errors import AlgorithmError, InvalidExposureError, InvalidParameterError
from skydiff.image import Box
from skydiff.io import psf_from_hdu, psf_to_hdu
from skydiff.math import adaptive_moments
from skydiff.psf import CoaddPsf, CoaddPsfInput, GaussianPsf, local_jacobian, transform_kernel
from skydiff.sim import Camera, SurveyConfig, make_truth, simulate_exposure
from skydiff.skymap import DiscreteSkyMap, SkyMapConfig

MODEL_FWHM = 6.0  # patch pixels of 0.25": 1.5 arcsec, wider than every simulated PSF


def rotated_wcs(*, scale: float, angle: float, crpix=(0.0, 0.0), ra=150.0, dec=2.0) -> WCS:
    """A TAN WCS with ``scale`` arcsec pixels rotated by ``angle`` degrees."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [crpix[0] + 1.0, crpix[1] + 1.0]
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    wcs.wcs.cd = scale / 3600.0 * np.array([[-c, s], [s, c]])
    return wcs


def second_moments(kernel: np.ndarray) -> np.ndarray:
    """Unweighted 2x2 second-moment matrix of a centred kernel."""
    half = kernel.shape[0] // 2
    y, x = np.mgrid[-half : half + 1, -half : half + 1]
    k = kernel / kernel.sum()
    return np.array(
        [[np.sum(k * x * x), np.sum(k * x * y)], [np.sum(k * x * y), np.sum(k * y * y)]]
    )


# -- CoaddPsf ---------------------------------------------------------------------------------


def two_input_coadd_psf() -> CoaddPsf:
    inputs = [
        CoaddPsfInput(
            GaussianPsf(4.0, axis_ratio=0.8, size=41),
            rotated_wcs(scale=0.26, angle=20.0, crpix=(100.0, 100.0)),
            Box(0, 0, 400, 400),
            weight=1.0,
            visit=1,
        ),
        CoaddPsfInput(
            GaussianPsf(3.0, size=41),
            rotated_wcs(scale=0.2, angle=-35.0, crpix=(150.0, 50.0)),
            Box(0, 0, 400, 400),
            weight=3.0,
            visit=2,
        ),
    ]
    return CoaddPsf(inputs, rotated_wcs(scale=0.2, angle=0.0, crpix=(500.0, 500.0)), size=61)


def test_coadd_psf_moments_are_the_weighted_average_of_the_warped_inputs():
    """Second moments at a point covered by both inputs: sum_i w_i J_i^-1 C_i J_i^-T / sum w_i."""
    psf = two_input_coadd_psf()
    x, y = 520.0, 480.0
    assert len(psf.contributions(x, y)) == 2
    expected = np.zeros((2, 2))
    for item, weight in zip(psf.inputs, (1.0, 3.0), strict=True):
        jacobian, ix, iy = local_jacobian(psf.wcs, item.wcs, x, y)
        pixel_to_input = np.linalg.inv(jacobian)
        covariance = second_moments(item.psf.kernel_image(ix, iy))
        expected += weight * pixel_to_input @ covariance @ pixel_to_input.T
    expected /= 4.0
    np.testing.assert_allclose(
        second_moments(psf.kernel_image(x, y)), expected, rtol=0.01, atol=0.01
    )


def test_coadd_psf_uses_only_inputs_with_data_and_the_nearest_elsewhere():
    psf = two_input_coadd_psf()
    single = psf.inputs[1]
    # a point on input 2 only: the kernel is input 2's, carried over
    grid = [(float(a), float(b)) for a in range(300, 800, 20) for b in range(300, 800, 20)]
    x, y = next(p for p in grid if [item.visit for item, _, _ in psf.contributions(*p)] == [2])
    jacobian, ix, iy = local_jacobian(psf.wcs, single.wcs, x, y)
    carried = transform_kernel(single.psf.kernel_image(ix, iy), jacobian, size=61)
    np.testing.assert_allclose(psf.kernel_image(x, y), carried, atol=1e-12)
    # far outside both: the nearest input stands in rather than failing
    assert len(psf.contributions(5000.0, 5000.0)) == 1


def test_coadd_psf_round_trips_through_fits():
    psf = two_input_coadd_psf()
    back = psf_from_hdu(psf_to_hdu(psf), "memory")
    assert back == psf
    np.testing.assert_allclose(back.kernel_image(520.0, 480.0), psf.kernel_image(520.0, 480.0))


def test_transform_kernel_maps_moments_by_the_jacobian():
    kernel = GaussianPsf(4.0, axis_ratio=0.7, position_angle=20.0, size=41).kernel_image(0, 0)
    jacobian = np.array([[0.8, 0.1], [-0.05, 0.75]])
    inverse = np.linalg.inv(jacobian)
    expected = inverse @ second_moments(kernel) @ inverse.T
    np.testing.assert_allclose(
        second_moments(transform_kernel(kernel, jacobian)), expected, rtol=5e-3
    )
    with pytest.raises(InvalidParameterError, match="singular"):
        transform_kernel(kernel, np.zeros((2, 2)))


# -- ModelPsfMatchTask ---------------------------------------------------------------------


def test_model_psf_match_gives_stars_the_model_psf():
    """A star convolved by the fitted kernel is the model PSF within 1% of its peak."""
    from skydiff.image import Exposure, MaskedImage

    psf = GaussianPsf(3.0, axis_ratio=0.85, position_angle=30.0)
    masked = MaskedImage.zeros(Box(50, 70, 200, 160))
    masked.variance[...] = 1.0
    star = psf.image_at(150, 150) * 1e4
    h = star.shape[0] // 2
    masked.image[150 - 70 - h : 150 - 70 + h + 1, 150 - 50 - h : 150 - 50 + h + 1] = star
    exposure = Exposure(masked, psf=psf, units="nJy")
    model = ModelPsfConfig(default_fwhm=5.0).make()
    result = ModelPsfMatchTask().run(exposure, model)
    assert result.metadata["kernel_sum"] == pytest.approx(1.0, abs=3e-3)
    image = result.psf_matched_exposure.image
    hm = model.kernel_size // 2
    cut = image[150 - 70 - hm : 150 - 70 + hm + 1, 150 - 50 - hm : 150 - 50 + hm + 1]
    expected = model.kernel_image(150, 150) * 1e4
    assert np.abs(cut - expected).max() < 0.01 * expected.max()


def test_model_psf_match_refuses_a_psf_wider_than_the_model():
    from skydiff.image import Exposure, MaskedImage

    masked = MaskedImage.zeros(Box(0, 0, 100, 100))
    exposure = Exposure(masked, psf=GaussianPsf(6.0), units="nJy")
    with pytest.raises(AlgorithmError, match="wider than the model"):
        ModelPsfMatchTask().run(exposure, ModelPsfConfig(default_fwhm=4.0).make())


# -- MakeWarpTask on a simulated visit ------------------------------------------------------


@pytest.fixture(scope="module")
def visit():
    """A noiseless 2x2-detector visit rotated by 30 degrees, its truth, a patch and warps."""
    camera = Camera.small(width=400, height=400)
    config = SurveyConfig(
        n_visits=1,
        rotation=30.0,
        rotation_scatter=0.0,
        add_noise=False,
        sky_level=1e-6,
        sky_gradient=0.0,
        seeing_range=(0.8, 0.9),
    ).with_sky(
        star_density=30.0,
        star_mag_range=(17.0, 21.0),
        bright_star_density=0.0,
        galaxy_density=0.0,
        n_transients=0,
        n_variables=0,
    )
    truth = make_truth(config, camera)
    sims = [
        simulate_exposure(config, camera, visit=1, detector=d, truth=truth)
        for d in camera.detector_ids()
    ]
    skymap = DiscreteSkyMap.from_centers(
        [config.ra],
        [config.dec],
        [0.05],
        config=SkyMapConfig(pixel_scale=0.25, patch_inner_dimensions=(300, 300), patch_border=20),
    )
    tract = skymap[0]
    ra, dec = sims[0].exposure.pixel_to_sky(399.0, 399.0)  # near the mosaic centre
    patch = tract.find_patch(float(ra), float(dec))
    task = MakeWarpTask(
        MakeWarpConfig(make_psf_matched=True).with_values(
            {"model_psf": {"default_fwhm": MODEL_FWHM}}
        )
    )
    result = task.run_on_patch([s.exposure for s in sims], tract, patch)
    return sims, tract, patch, result


def isolated_stars(sims, tract, warp, *, min_flux: float, margin: int = 15):
    """Tract-pixel positions and nJy fluxes of isolated stars with complete data in ``warp``."""
    bbox = warp.bbox
    rows = [t[t["kind"] == "star"] for t in (s.truth for s in sims)]
    ra = np.concatenate([r["ra"] for r in rows])
    dec = np.concatenate([r["dec"] for r in rows])
    flux = np.concatenate([r["flux_njy"] for r in rows])
    ra, unique = np.unique(ra, return_index=True)
    dec, flux = dec[unique], flux[unique]
    x, y = tract.sky_to_pixel(ra, dec)
    inside = (x > bbox.x0 + margin) & (x < bbox.x_end - margin - 1)
    inside &= (y > bbox.y0 + margin) & (y < bbox.y_end - margin - 1)
    distance = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :]) + np.eye(x.size) * 1e9
    isolated = distance.min(axis=1) > 2 * margin
    keep = inside & isolated & (flux > min_flux)
    x, y, flux = x[keep], y[keep], flux[keep]
    complete = np.array(
        [
            np.all(np.isfinite(cutout(warp.image, bbox, a, b, margin)))
            for a, b in zip(x, y, strict=True)
        ],
        bool,
    )  # not across a chip gap
    return x[complete], y[complete], flux[complete]


def cutout(image: np.ndarray, bbox: Box, x: float, y: float, half: int) -> np.ndarray:
    ix, iy = round(x) - bbox.x0, round(y) - bbox.y0
    return image[iy - half : iy + half + 1, ix - half : ix + half + 1]


def test_direct_warp_conserves_star_flux(visit):
    sims, tract, _, result = visit
    warp = result.direct
    assert warp.units == "nJy" and warp.photo_calib is None
    x, y, flux = isolated_stars(sims, tract, warp, min_flux=3e3)
    assert x.size >= 3
    sums = np.array(
        [cutout(warp.image, warp.bbox, a, b, 14).sum() for a, b in zip(x, y, strict=True)]
    )
    # the Moffat wings beyond 14 px hold < 0.3% of the flux
    np.testing.assert_allclose(sums / flux, 1.0, atol=3e-3)


def test_direct_warp_psf_matches_its_stars(visit):
    """The CoaddPsf at a star has the star's adaptive second moments (within 2%)."""
    sims, tract, _, result = visit
    warp = result.direct
    assert isinstance(warp.psf, CoaddPsf) and len(warp.psf.inputs) == len(result.inputs)
    x, y, _ = isolated_stars(sims, tract, warp, min_flux=3e3)
    for a, b in zip(x[:4], y[:4], strict=True):
        star = adaptive_moments(cutout(warp.image, warp.bbox, a, b, 14))[2:]
        model = warp.psf.second_moments(a, b)
        np.testing.assert_allclose(star[:2], model[:2], rtol=0.03)


def test_psf_matched_warp_has_the_model_psf_everywhere(visit):
    sims, tract, _, result = visit
    warp = result.psf_matched
    assert warp.psf.fwhm(*warp.bbox.center) == pytest.approx(
        MakeWarpConfig().model_psf.with_values({"default_fwhm": MODEL_FWHM}).make().fwhm(0, 0)
    )
    x, y, _ = isolated_stars(sims, tract, warp, min_flux=3e3)
    assert x.size >= 3
    model_sigma = warp.psf.sigma(0.0, 0.0)
    for a, b in zip(x, y, strict=True):
        ixx, iyy, ixy = adaptive_moments(cutout(warp.image, warp.bbox, a, b, 15))[2:]
        sigma = (ixx * iyy - ixy * ixy) ** 0.25
        assert sigma == pytest.approx(model_sigma, rel=0.02)


def test_detectors_merge_without_double_counting(visit):
    _, _, patch, result = visit
    warp = result.direct
    good = ~warp.mask.get("NO_DATA")
    assert int(good.sum()) == int(np.sum(result.inputs["n_pixels"]))
    assert np.all(np.isfinite(warp.image[good])) and np.all(np.isnan(warp.image[~good]))
    assert warp.bbox == patch.outer_bbox
    assert warp.visit_info.visit == 1 and warp.visit_info.detector is None
    assert set(result.inputs["detector"]) <= {0, 1, 2, 3} and all(result.inputs["psf_matched"])


def test_warp_of_a_patch_without_data_is_none(visit):
    sims, tract, _, _ = visit
    far = tract.patch((0, 0))
    result = MakeWarpTask().run_on_patch([s.exposure for s in sims], tract, far)
    assert result.direct is None and len(result.inputs) == 0


def test_make_warp_refuses_bad_inputs(visit):
    sims, tract, patch, _ = visit
    exposures = [s.exposure for s in sims]
    other_visit = exposures[1].replace(
        visit_info=exposures[1].visit_info.__class__(visit=2, detector=1)
    )
    with pytest.raises(InvalidParameterError, match="share a visit"):
        MakeWarpTask().run_on_patch([exposures[0], other_visit], tract, patch)
    with pytest.raises(InvalidExposureError, match="no PhotoCalib"):
        MakeWarpTask().run_on_patch([exposures[0].replace(photo_calib=None)], tract, patch)
    with pytest.raises(InvalidParameterError, match="empty"):
        MakeWarpTask().run_on_patch([], tract, patch)


# -- command line ------------------------------------------------------------------------------


def test_cli_warps_a_visit_onto_a_patch_and_an_image_onto_a_grid(tmp_path, capsys):
    from skydiff.cli import main
    from skydiff.io import read_exposure

    demo = tmp_path / "demo"
    demo_args = ["demo", "-o", str(demo), "--visits", "1", "--size", "200", "--seed", "2"]
    assert main([*demo_args, "--simulate-only"]) == 0
    calexps = sorted(str(p) for p in demo.glob("calexp_v1_d*.fits"))
    first = read_exposure(calexps[0])
    skymap = DiscreteSkyMap.from_centers(
        [150.0], [2.0], [0.03], config=SkyMapConfig(patch_inner_dimensions=(400, 400))
    )
    skymap_file = skymap.write(tmp_path / "skymap.json")
    ra, dec = first.pixel_to_sky(199.0, 199.0)
    patch = skymap[0].find_patch(float(ra), float(dec))
    warp_file, matched_file = tmp_path / "warp.fits", tmp_path / "matched.fits"
    command = ["warp", *calexps, "--skymap", str(skymap_file), "--tract", "0"]
    command += ["--patch", f"{patch.index.x},{patch.index.y}", "-o", str(warp_file)]
    command += ["--psf-matched", str(matched_file), "-c", "model_psf.default_fwhm=7.0"]
    assert main(command) == 0
    assert "4 detectors on tract 0" in capsys.readouterr().out
    warp, matched = read_exposure(warp_file), read_exposure(matched_file)
    assert warp.bbox == patch.outer_bbox and warp.units == "nJy"
    assert isinstance(warp.psf, CoaddPsf) and matched.psf.fwhm(0, 0) > 7.0
    # one calexp alone on the warp's grid gives the same pixels where it is the only input
    like_file = tmp_path / "like.fits"
    assert main(["warp", calexps[0], "--like", str(warp_file), "-o", str(like_file)]) == 0
    like = read_exposure(like_file)
    good = ~like.mask.get("NO_DATA")
    assert good.mean() > 0.05
    calibrated = like.image[good] * first.photo_calib.calibration_mean
    np.testing.assert_allclose(
        calibrated, warp.image[good], rtol=1e-4, atol=1e-3 * np.std(warp.image[good])
    )
    # bad requests are refused with the reason
    assert main(["warp", calexps[0], "-o", str(tmp_path / "x.fits")]) == 1
    assert "--skymap" in capsys.readouterr().err


def test_defect_values_do_not_ring_into_unmasked_warp_pixels(visit):
    """A BAD column holding a raw value (here -1000 on an empty image) spreads through the
    Lanczos kernel's side lobes; growing BAD over the whole kernel footprint masks every
    pixel it reaches, so the coadd (which drops BAD) never sees the ringing. With LSST's
    default (only EDGE grown: its calexps are interpolated under defects) it leaks."""
    sims, tract, patch, _ = visit
    exposure = sims[0].exposure
    masked = exposure.masked_image.copy()
    masked.image[...] = 0.0
    masked.mask.array[...] = 0
    column = 200 - exposure.bbox.x0
    masked.image[:, column] = -1000.0
    masked.mask.array[:, column] = masked.mask.bitmask(("BAD",))
    damaged = exposure.replace(masked_image=masked)

    def unmasked_extreme(config: MakeWarpConfig) -> float:
        warp = MakeWarpTask(config).run_on_patch([damaged], tract, patch).direct
        bad = warp.mask.bitmask(("BAD", "EDGE", "NO_DATA"))
        clean = (warp.mask.array & bad) == 0
        assert clean.sum() > 1000 and (~clean & ~warp.mask.get("NO_DATA")).any()
        return float(np.abs(warp.image[clean]).max())

    assert unmasked_extreme(MakeWarpConfig()) < 1e-3
    lsst_default = MakeWarpConfig().with_values({"warper": {"grow_mask_planes": ("EDGE",)}})
    assert unmasked_extreme(lsst_default) > 10.0
