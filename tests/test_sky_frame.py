"""Sky frames (SkyMeasurementTask, SkyFrameBuilderTask) and focal-plane sky correction."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest

from skydiff.background import BackgroundList, BackgroundModel, SubtractBackgroundTask
from skydiff.cli import main
from skydiff.coadd import MakeWarpConfig, MakeWarpTask
from skydiff.errors import AlgorithmError, InvalidExposureError, InvalidParameterError
from skydiff.image import Box, Exposure, MaskedImage, VisitInfo
from skydiff.io import read_background, read_exposure, write_exposure
from skydiff.math import clipped_stats
from skydiff.sim import Camera, SurveyConfig, make_truth, simulate_exposure, sky_image
from skydiff.skyframe import (
    FocalPlaneBackground,
    FocalPlaneBackgroundConfig,
    ScaleSamples,
    SkyCorrectionConfig,
    SkyCorrectionTask,
    SkyFrameBuilderTask,
    SkyMeasurementTask,
    background_to_exposure,
    detector_offsets,
    exposure_to_background,
    solve_scale,
)
from skydiff.skymap import DiscreteSkyMap, SkyMapConfig

CAMERA = Camera.small()  # 2 x 2 detectors of 256 x 256 pixels, 20-pixel gaps
SIZE = 256
ORIGIN = (40, -25)  # parent-frame origin of every test image: non-zero on purpose


# -- synthetic exposures: sky frame pattern x level + stars + noise ----------------------------


def detector_box() -> Box:
    return Box(ORIGIN[0], ORIGIN[1], SIZE, SIZE)


def pattern(detector: int, flat: float = 1.0) -> np.ndarray:
    """The true sky frame of ``detector``: unit mean, structure on the detector's scale."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    phase = 0.7 * detector
    p = 1 + 0.1 * np.sin(2 * np.pi * x / 500 + phase) * np.cos(2 * np.pi * y / 450 - phase)
    p += 0.08 * ((x - 128) ** 2 + (y - 100) ** 2) / 128**2
    return flat * p / p.mean()


def star_field(rng: np.random.Generator, n: int, sigma: float = 1.5) -> np.ndarray:
    """Gaussian stars of 10^3 .. 10^5 counts at random positions."""
    image = np.zeros((SIZE, SIZE))
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    for cx, cy, flux in zip(
        rng.uniform(0, SIZE, n), rng.uniform(0, SIZE, n), 10 ** rng.uniform(3, 5, n), strict=True
    ):
        near = (
            slice(max(int(cy) - 12, 0), int(cy) + 13),
            slice(max(int(cx) - 12, 0), int(cx) + 13),
        )
        r2 = (x[near] - cx) ** 2 + (y[near] - cy) ** 2
        image[near] += flux * np.exp(-r2 / (2 * sigma**2)) / (2 * np.pi * sigma**2)
    return image


def exposure(
    rng: np.random.Generator,
    detector: int,
    level: float,
    *,
    visit: int = 1,
    flat: float = 1.0,
    n_stars: int = 10,
) -> tuple[Exposure, np.ndarray]:
    """A calexp with sky ``level * pattern`` (counts), stars and Gaussian noise; and its stars."""
    stars = star_field(rng, n_stars)
    model = level * pattern(detector, flat) + stars
    image = model + rng.normal(0.0, np.sqrt(model))
    masked = MaskedImage(image, None, model, bbox=detector_box())
    return Exposure(masked, visit_info=VisitInfo(visit=visit, detector=detector)), stars


def origins() -> dict[int, tuple[int, int]]:
    """Focal-plane position of each detector's parent pixel (0, 0)."""
    return {
        d: (CAMERA.detector_origin(d)[0] - ORIGIN[0], CAMERA.detector_origin(d)[1] - ORIGIN[1])
        for d in CAMERA.detector_ids()
    }


@pytest.fixture(scope="module")
def built():
    """Sky frames of the four detectors, each from five exposures of varied sky level."""
    rng = np.random.default_rng(101)
    task = SkyFrameBuilderTask()
    results, levels = {}, {}
    for detector in CAMERA.detector_ids():
        levels[detector] = rng.uniform(300.0, 1500.0, 5)
        exposures = [
            exposure(rng, detector, level, visit=10 + i, n_stars=15)[0]
            for i, level in enumerate(levels[detector])
        ]
        results[detector] = task.run(exposures)
    return results, levels


@pytest.fixture(scope="module")
def frames(built) -> dict[int, BackgroundModel]:
    return {detector: result.sky_frame for detector, result in built[0].items()}


# -- building ----------------------------------------------------------------------------------


def test_builder_recovers_the_pattern_and_the_levels(built):
    results, levels = built
    for detector, result in results.items():
        frame = result.sky_frame.evaluate(detector_box())
        assert np.corrcoef(frame.ravel(), pattern(detector).ravel())[0, 1] > 0.99
        assert np.abs(frame - pattern(detector)).max() < 0.03
        np.testing.assert_allclose(result.levels, levels[detector], rtol=0.01)
        assert result.sky_frame.bbox == detector_box()
        assert result.metadata["n_inputs"] == 5 and result.metadata["n_empty_bins"] == 0
        assert abs(result.metadata["frame_mean"] - 1.0) < 0.01
        assert result.exposure.visit_info.detector == detector


def test_builder_masks_the_stars():
    """Without object masking the stars bias the frame; with it they do not."""
    rng = np.random.default_rng(5)
    exposures = [exposure(rng, 0, 400.0, visit=i, n_stars=40)[0] for i in range(3)]
    truth = pattern(0)
    masked = SkyFrameBuilderTask().run(exposures).sky_frame.evaluate(detector_box())
    config = SkyFrameBuilderTask.ConfigClass(do_mask_objects=False)
    config = config.with_overrides(["sky.background.statistic=mean"])
    unmasked = SkyFrameBuilderTask(config).run(exposures).sky_frame.evaluate(detector_box())
    assert np.abs(masked - truth).std() < 0.2 * np.abs(unmasked - truth).std()


def test_builder_restores_subtracted_backgrounds_and_takes_given_levels():
    rng = np.random.default_rng(6)
    exposures = [exposure(rng, 3, level, visit=i)[0] for i, level in enumerate((500.0, 900.0))]
    config = SkyFrameBuilderTask.ConfigClass(do_mask_objects=False)
    plain = SkyFrameBuilderTask(config).run(exposures)
    outputs = [SubtractBackgroundTask().run(e) for e in exposures]
    restored = SkyFrameBuilderTask(config).run(
        [o.exposure for o in outputs], backgrounds=[o.background for o in outputs]
    )
    np.testing.assert_allclose(restored.sky_frame.values, plain.sky_frame.values, rtol=1e-5)
    given = SkyFrameBuilderTask(config).run(exposures, levels=[1000.0, 1800.0])
    assert given.levels == (1000.0, 1800.0)
    np.testing.assert_allclose(given.sky_frame.values, plain.sky_frame.values / 2, rtol=0.01)


def test_average_backgrounds_clips_outliers_and_skips_empty_bins():
    task = SkyMeasurementTask()
    box = Box(5, 7, 64, 32)
    values = np.full((5, 2, 4), 1.0)
    values[:, 0, 0] = [1.0, 1.1, 0.9, 1.0, 50.0]  # one outlier
    values[1:, 0, 1] = np.nan  # measured in one input only
    values[:, 1, 3] = np.nan  # measured in none
    models = [_binned_model(box, v) for v in values]
    mean = task.average_backgrounds(models)
    assert mean.values[0, 0] == pytest.approx(1.0)
    assert mean.values[0, 1] == 1.0 and np.isnan(mean.values[1, 3])
    assert np.isfinite(mean.variances[0, 1]) and np.isnan(mean.variances[1, 3])
    assert np.isfinite(mean.evaluate()).all()
    np.testing.assert_array_equal(mean.counts, np.sum([m.counts for m in models], axis=0))


def _binned_model(box: Box, values: np.ndarray) -> BackgroundModel:
    ny, nx = values.shape
    return BackgroundModel(
        bbox=box,
        bin_size=(box.width // nx, box.height // ny),
        values=values,
        variances=np.where(np.isfinite(values), 0.01, np.nan),
        counts=np.where(np.isfinite(values), 100, 0),
        x_centers=box.x0 + (np.arange(nx) + 0.5) * box.width / nx - 0.5,
        y_centers=box.y0 + (np.arange(ny) + 0.5) * box.height / ny - 0.5,
    )


# -- scaling and subtracting ------------------------------------------------------------------


@pytest.mark.parametrize(("flat", "expected"), [(1.0, 5.0), (1.1, 5.5)])
def test_scale_of_a_visit_is_recovered(frames, flat, expected):
    """Sky = 5 x pattern (x 1.1 after a flat-field change) on every detector of a visit."""
    rng = np.random.default_rng(7)
    calexps = [exposure(rng, d, 5.0, visit=99, flat=flat, n_stars=3)[0] for d in frames]
    task = SkyMeasurementTask()
    samples = [task.measure_scale(c, frames[c.visit_info.detector]) for c in calexps]
    assert all(s.image_samples.size == 16 for s in samples)
    assert task.solve_scales(samples) == pytest.approx(expected, abs=0.1)
    assert samples[0].scale == pytest.approx(expected, abs=0.2)
    result = SkyCorrectionTask().run(calexps, origins(), sky_frames=frames)
    assert result.scale == pytest.approx(expected, abs=0.1)
    assert result.metadata["sky_frame_scale"] == result.scale
    assert result.metadata["n_scale_samples_used"] >= 60


def test_subtracting_the_sky_frame_leaves_zero_mean(frames):
    rng = np.random.default_rng(8)
    task = SkyMeasurementTask()
    visit = [exposure(rng, d, 5.0, visit=98, n_stars=5) for d in frames]
    scale = task.solve_scales([task.measure_scale(e, frames[d]) for d, (e, _) in enumerate(visit)])
    residuals, variances = [], []
    for detector, (calexp, stars) in enumerate(visit):
        before = calexp.image.copy()
        applied = task.subtract_sky_frame_in_place(calexp, frames[detector], scale)
        assert isinstance(applied, BackgroundList) and len(applied) == 1
        np.testing.assert_allclose(before - calexp.image, applied.evaluate(calexp.bbox), rtol=1e-4)
        residuals.append(calexp.image - stars)
        variances.append(calexp.variance)
    assert abs(np.mean(residuals)) < 0.01 * np.sqrt(np.mean(variances))
    assert np.std(np.divide(residuals, np.sqrt(variances))) == pytest.approx(1.0, abs=0.01)


def test_solve_scale_rejects_outlying_samples():
    rng = np.random.default_rng(3)
    sky = rng.uniform(0.8, 1.2, 200)
    image = 7.0 * sky + rng.normal(0, 0.01, 200)
    image[:10] += 5.0  # samples hit by a bright galaxy
    image[10] = np.nan
    fit = solve_scale(image, sky)
    assert fit.scale == pytest.approx(7.0, abs=0.005)
    assert fit.n_samples == 199 and fit.n_used <= 189
    assert solve_scale(image, sky, n_iter=0).scale > 7.1
    assert ScaleSamples(image[11:], sky[11:]).scale == pytest.approx(7.0, abs=0.005)
    with pytest.raises(AlgorithmError, match="no finite"):
        solve_scale([np.nan], [1.0])


# -- persistence --------------------------------------------------------------------------------


def test_sky_frame_round_trips_through_an_exposure_file(frames, tmp_path):
    frame = frames[2]
    values, variances = frame.values.copy(), frame.variances.copy()
    values[1, 2] = variances[1, 2] = np.nan  # an empty bin survives as NO_DATA
    frame = BackgroundModel(
        bbox=frame.bbox,
        bin_size=frame.bin_size,
        values=values,
        variances=variances,
        counts=frame.counts,
        x_centers=frame.x_centers,
        y_centers=frame.y_centers,
        interpolation=frame.interpolation,
    )
    stored = background_to_exposure(frame, visit_info=VisitInfo(detector=2), band="r")
    assert stored.mask.get("NO_DATA")[1, 2] and stored.metadata["ALGORITHM"] == "NATURAL_SPLINE"
    path = write_exposure(stored, tmp_path / "sky.fits")
    again = read_exposure(path)
    assert again.masked_image == stored.masked_image and again.metadata == stored.metadata
    restored = SkyMeasurementTask.exposure_to_background(again)
    assert restored.bbox == frame.bbox and restored.bin_size == frame.bin_size
    np.testing.assert_array_equal(restored.values, frame.values)
    np.testing.assert_array_equal(restored.variances, frame.variances)
    np.testing.assert_array_equal(restored.x_centers, frame.x_centers)
    np.testing.assert_array_equal(restored.y_centers, frame.y_centers)
    np.testing.assert_array_equal(restored.evaluate(), frame.evaluate())
    with pytest.raises(InvalidExposureError, match=r"not a binned background.*BOX\.MINX"):
        exposure_to_background(Exposure(MaskedImage(np.zeros((4, 4)))))


# -- focal-plane background and the sky correction of a visit ----------------------------------


def smooth_sky(detector: int, camera: Camera) -> np.ndarray:
    """A large-scale sky across the focal plane: a wave, a bowl and a tilt."""
    ox, oy = camera.detector_origin(detector)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    fx, fy = x + ox, y + oy
    return 200 + 40 * np.sin(2 * np.pi * fx / 700) + 60 * ((fy - 100) / 532) ** 2 + 0.05 * fx


def test_focal_plane_background_beats_per_detector_fits_across_chip_gaps():
    rng = np.random.default_rng(11)
    calexps = []
    for detector in CAMERA.detector_ids():
        truth = smooth_sky(detector, CAMERA)
        image = MaskedImage(truth + rng.normal(0, np.sqrt(truth)), None, truth, bbox=detector_box())
        calexps.append(Exposure(image, visit_info=VisitInfo(visit=1, detector=detector)))
    offsets = detector_offsets(calexps, origins())
    config = FocalPlaneBackgroundConfig(bin_size_x=128, bin_size_y=128)
    focal_plane = FocalPlaneBackground.measure(calexps, offsets, config=config)
    fp_errors, detector_errors = [], []
    for detector, (calexp, offset) in enumerate(zip(calexps, offsets, strict=True)):
        model = focal_plane.to_detector(calexp.bbox, offset)
        # the model cut to a detector is the focal-plane model on its pixels, exactly
        np.testing.assert_array_equal(model.evaluate(), focal_plane.evaluate(calexp.bbox, offset))
        fp_errors.append(model.evaluate() - smooth_sky(detector, CAMERA))
        alone = BackgroundModel.measure(calexp.masked_image, bin_size=128)
        detector_errors.append(alone.evaluate() - smooth_sky(detector, CAMERA))
    fp_rms = np.sqrt(np.mean(np.square(fp_errors)))
    detector_rms = np.sqrt(np.mean(np.square(detector_errors)))
    assert fp_rms < 0.5 * detector_rms  # measured: 1.8 vs 5.4 counts
    assert fp_rms < 2.5 and focal_plane.n_empty_bins == 0


@pytest.fixture(scope="module")
def sim_visit():
    """A simulated visit of the 2 x 2 camera: sky 800 counts and a focal-plane gradient."""
    config = SurveyConfig(n_visits=1, seed=3, sky_gradient=60.0).with_sky(
        star_density=8.0, bright_star_density=0.0, galaxy_density=2.0, n_transients=0, n_variables=0
    )
    truth = make_truth(config, CAMERA)
    calexps = [
        simulate_exposure(config, CAMERA, visit=1, detector=d, truth=truth).exposure
        for d in CAMERA.detector_ids()
    ]
    flat = _binned_model(Box(0, 0, SIZE, SIZE), np.ones((1, 1)))
    result = SkyCorrectionTask().run(calexps, CAMERA, sky_frames=[flat] * len(calexps))
    return config, calexps, result


def test_sky_correction_removes_the_sky_of_a_simulated_visit(sim_visit):
    _, calexps, result = sim_visit
    assert result.scale == pytest.approx(np.mean([c.metadata["SKYLEVEL"] for c in calexps]), 0.01)
    assert result.metadata["n_detectors"] == 4 and result.metadata["bg_model_n_empty_bins"] == 0
    for calexp, corrected, correction in zip(
        calexps, result.calexps, result.sky_corrections, strict=True
    ):
        noise = np.sqrt(calexp.metadata["SKYLEVEL"] / CAMERA.gain)
        error = (calexp.image - corrected.image) - sky_image(calexp)
        assert abs(error.mean()) < 0.01 * noise and error.std() < 0.01 * noise
        assert len(correction) == 2  # the scaled sky frame, then the focal-plane background
        np.testing.assert_allclose(
            calexp.image - correction.evaluate(calexp.bbox), corrected.image, atol=2e-3
        )
        assert corrected.mask == calexp.mask and corrected.visit_info == calexp.visit_info


def test_make_warp_applies_the_sky_corrections(sim_visit):
    config, calexps, result = sim_visit
    skymap = DiscreteSkyMap.from_centers(
        [config.ra],
        [config.dec],
        [0.05],
        config=SkyMapConfig(pixel_scale=0.25, patch_inner_dimensions=(200, 200), patch_border=10),
    )
    tract = skymap[0]
    ra, dec = calexps[0].pixel_to_sky(266.0, 266.0)  # the middle of the mosaic
    patch = tract.find_patch(float(ra), float(dec))
    warp = MakeWarpTask(MakeWarpConfig(apply_sky_corr=True)).run_on_patch(
        calexps, tract, patch, sky_corrections=result.sky_corrections
    )
    good = ~warp.direct.mask.get("NO_DATA")
    stats = clipped_stats(warp.direct.image[good])
    assert abs(stats.mean) < 0.02 * stats.stddev


def test_restored_backgrounds_give_the_same_correction(frames):
    rng = np.random.default_rng(12)
    raw = [exposure(rng, d, 5.0, visit=97, n_stars=3)[0] for d in frames]
    subtracted, backgrounds = [], []
    for calexp in raw:
        out = SubtractBackgroundTask().run(calexp)
        subtracted.append(out.exposure)
        backgrounds.append(out.background)
    copies = [c.image.copy() for c in subtracted]
    task = SkyCorrectionTask()
    direct = task.run(raw, origins(), sky_frames=frames)
    restored = task.run(subtracted, origins(), sky_frames=frames, backgrounds=backgrounds)
    assert restored.scale == pytest.approx(direct.scale, rel=1e-5)
    for a, b, before, after in zip(
        direct.calexps, restored.calexps, copies, subtracted, strict=True
    ):
        np.testing.assert_allclose(a.image, b.image, atol=1e-3)
        np.testing.assert_array_equal(before, after.image)  # inputs untouched
    first = restored.sky_corrections[0]
    assert len(first) == 3  # inverted background, sky frame, focal-plane background
    np.testing.assert_allclose(
        first[0].evaluate(detector_box()), -backgrounds[0].evaluate(detector_box()), atol=1e-4
    )


def test_results_and_configs_pickle(sim_visit):
    _, _, result = sim_visit
    again = pickle.loads(pickle.dumps(result))
    assert again.scale == result.scale
    np.testing.assert_array_equal(
        again.sky_corrections[1].evaluate(detector_box()),
        result.sky_corrections[1].evaluate(detector_box()),
    )
    config = SkyCorrectionConfig().with_overrides(["bg_model.bin_size_x=64", "do_sky=false"])
    assert pickle.loads(pickle.dumps(config)) == config


# -- bad input ---------------------------------------------------------------------------------


def test_bad_inputs_are_refused_naming_the_argument(frames):
    rng = np.random.default_rng(13)
    calexp = exposure(rng, 0, 5.0, n_stars=0)[0]
    task = SkyMeasurementTask()
    with pytest.raises(InvalidParameterError, match="bg_list is empty"):
        task.average_backgrounds([])
    other_bins = _binned_model(detector_box(), np.ones((2, 2)))
    with pytest.raises(InvalidParameterError, match=r"bg_list\[1\] has box"):
        task.average_backgrounds([frames[0], other_bins])
    with pytest.raises(InvalidParameterError, match="scales is empty"):
        task.solve_scales([])
    elsewhere = _binned_model(Box(0, 0, 100, 100), np.ones((2, 2)))
    with pytest.raises(InvalidParameterError, match="sky_background covers"):
        task.measure_scale(calexp, elsewhere)
    with pytest.raises(InvalidParameterError, match="sky_background covers"):
        task.subtract_sky_frame_in_place(calexp, elsewhere, 1.0)
    builder = SkyFrameBuilderTask()
    with pytest.raises(InvalidParameterError, match="exposures has 0 entries"):
        builder.run([])
    small = Exposure(MaskedImage(np.ones((64, 64))), visit_info=VisitInfo(detector=0))
    with pytest.raises(InvalidParameterError, match=r"exposures\[1\].*different box"):
        builder.run([calexp, small])
    correction = SkyCorrectionTask()
    with pytest.raises(InvalidParameterError, match="calexps is empty"):
        correction.run([], origins())
    with pytest.raises(InvalidParameterError, match="sky_frames has 2 entries for 1 calexps"):
        correction.run([calexp], origins(), sky_frames=[frames[0], frames[1]])
    with pytest.raises(InvalidParameterError, match="origins has no entry for detector 0"):
        correction.run([calexp], {5: (0, 0)})
    with pytest.raises(InvalidParameterError, match="origins is required"):
        correction.run([calexp, exposure(rng, 1, 5.0, n_stars=0)[0]], None)
    with pytest.raises(InvalidParameterError, match="calexps holds detector 0 more than once"):
        correction.run([calexp, calexp], origins())


# -- command line ------------------------------------------------------------------------------


def test_cli_builds_and_applies_a_sky_frame(tmp_path, capsys, frames):
    rng = np.random.default_rng(14)
    paths = []
    for i, level in enumerate((400.0, 900.0, 1300.0)):
        path = tmp_path / f"calexp_{i}.fits"
        write_exposure(exposure(rng, 1, level, visit=i, n_stars=8)[0], path)
        paths.append(str(path))
    sky = tmp_path / "sky.fits"
    assert main(["sky-frame", "build", *paths, "-o", str(sky)]) == 0
    assert "from 3 exposures" in capsys.readouterr().out
    frame = exposure_to_background(read_exposure(sky))
    assert np.corrcoef(frame.evaluate().ravel(), pattern(1).ravel())[0, 1] > 0.99

    science = tmp_path / "science.fits"
    write_exposure(exposure(rng, 1, 5.0, visit=50, n_stars=0)[0], science)
    out, corr = tmp_path / "corrected.fits", tmp_path / "skycorr.fits"
    args = ["sky-frame", "apply", str(science), "--sky", str(sky), "-o", str(out)]
    assert main([*args, "--sky-corr", str(corr)]) == 0
    printed = re.search(r"sky frame scale ([0-9.]+)", capsys.readouterr().out)
    assert float(printed.group(1)) == pytest.approx(5.0, abs=0.1)
    corrected = read_exposure(out)
    assert abs(corrected.image.mean()) < 0.02 * np.sqrt(5.0)
    assert len(read_background(corr)) == 2
    assert main(args) == 1  # refuses to overwrite
    assert "use --overwrite" in capsys.readouterr().err
    assert main(["sky-frame", "build", paths[0], "-o", str(sky), "--overwrite", "-c", "bad=1"]) == 1
    assert "has no field 'bad'" in capsys.readouterr().err
