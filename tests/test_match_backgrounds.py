"""MatchBackgroundsTask: warps of several visits brought to the reference visit's background.

The scenes follow LSST's ``testMatchBackgrounds.py``: unit-variance noise with
offsets 50 (full coverage), 10 (a 100-pixel NaN column gap) and 20 (two
thirds NaN), a ramp dz/dx = 1, dz/dy = 2, saturated pixels at 65000. Here
they are tracts of 3 x 3 patches of 200 pixels (outer boxes of up to 220
pixels) and every visit is a list of patch warps.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from astropy.wcs import WCS

from skydiff.cli import main
from skydiff.coadd import (
    AssembleCoaddConfig,
    AssembleCoaddTask,
    MatchBackgroundsConfig,
    MatchBackgroundsTask,
)
from skydiff.errors import InvalidExposureError, InvalidParameterError
from skydiff.image import Box, Exposure, MaskedImage, VisitInfo, shifted_wcs
from skydiff.io import ExposureHandle, read_exposure, write_exposure
from skydiff.skymap import DiscreteSkyMap, SkyMapConfig

SIZE = 600  # tract pixels on a side: 3 x 3 patches of 200
GAP = slice(250, 350)  # the chip gap of the gap visit (tract columns)
COVERED = slice(0, 200)  # the columns of the low-coverage visit


@pytest.fixture(scope="module")
def skymap() -> DiscreteSkyMap:
    config = SkyMapConfig(patch_inner_dimensions=(200, 200), patch_border=10, tract_overlap=0.0)
    sky = DiscreteSkyMap.from_centers([150.0], [2.0], [0.015], config=config)
    assert sky[0].bbox == Box(0, 0, SIZE, SIZE)
    return sky


def sky_image(seed: int, offset: float, *, sigma=1.0, gap=None, covered=None, ramp=False):
    """A visit over the whole tract: ``offset`` + noise (+ ramp), NaN outside its coverage."""
    image = np.random.default_rng(seed).normal(offset, sigma, (SIZE, SIZE)).astype(np.float32)
    if ramp:
        y, x = np.mgrid[0:SIZE, 0:SIZE]
        image += (1.0 * x + 2.0 * y).astype(np.float32)  # dz/dx = 1, dz/dy = 2
    if gap is not None:
        image[:, gap] = np.nan
    if covered is not None:
        keep = np.zeros(SIZE, bool)
        keep[covered] = True
        image[:, ~keep] = np.nan
    return image


def patch_warps(image, visit, tract, *, sigma=1.0, band="r", wcs=None) -> list[Exposure]:
    """The visit cut into warps on the patches' outer boxes (NaN -> NO_DATA)."""
    warps = []
    for patch in tract.patches():
        box = patch.outer_bbox
        pixels = image[box.slices()]
        if np.isnan(pixels).all():
            continue
        masked = MaskedImage(pixels.copy(), variance=np.full(box.shape, sigma**2), bbox=box)
        masked.set_no_data(np.isnan(pixels))
        warps.append(
            Exposure(
                masked,
                wcs=tract.wcs if wcs is None else wcs,
                band=band,
                units="nJy",
                visit_info=VisitInfo(visit=visit),
            )
        )
    return warps


def mosaic(warps, tract, what="image") -> np.ndarray:
    """A tract image of the good pixels of the warps' inner boxes (NaN elsewhere)."""
    out = np.full((SIZE, SIZE), np.nan, np.float32)
    for warp in warps:
        inner = next(p.inner_bbox for p in tract.patches() if p.outer_bbox == warp.bbox)
        array = getattr(warp.masked_image, what).copy()
        array[warp.mask.get(("SAT", "NO_DATA"), ignore_missing=True)] = np.nan
        out[inner.slices()] = array[inner.slices(warp.bbox)]
    return out


def visit_warps(result, visit):
    return [w for w in result.matched_warps if w.visit_info.visit == visit]


def lsst_scene(skymap, *, ramp_in=None):
    """Visits 1 (mean 50), 2 (mean 10, column gap) and 3 (mean 20, two thirds NaN)."""
    tract = skymap[0]
    images = {
        1: sky_image(1, 50.0, ramp=ramp_in == 1),
        2: sky_image(2, 10.0, gap=GAP, ramp=ramp_in == 2),
        3: sky_image(3, 20.0, covered=COVERED, ramp=ramp_in == 3),
    }
    return images, [w for v, im in images.items() for w in patch_warps(im, v, tract)]


def check_accuracy(result, tract, visit):
    """LSST's checkAccuracy: the matched visit's mean is the reference's, and MSE ~ variance."""
    reference = mosaic(visit_warps(result, result.reference_visit), tract)
    matched = mosaic(visit_warps(result, visit), tract)
    common = np.isfinite(reference) & np.isfinite(matched)
    pixel_variance = 1.0
    assert abs(reference[common].mean() - matched[common].mean()) < pixel_variance
    row = result.diagnostics[result.diagnostics["visit"] == visit][0]
    assert row["matched_mse"] < 1.01 * row["diff_image_var"]
    # and, more strictly, the offset left is within 5 sigma of its error
    difference = (reference - matched)[common]
    assert abs(difference.mean()) < 5 * difference.std() / np.sqrt(common.sum()) + 0.02


# -- accuracy, after LSST's tests ---------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [{}, {"use_approximate": True, "approx_order": 4}, {"grid_statistic": "median"}],
    ids=["spline", "chebyshev", "median"],
)
def test_offsets_of_gapped_and_partial_visits_are_matched(skymap, options):
    _, warps = lsst_scene(skymap)
    config = MatchBackgroundsConfig(bin_size=64, **options)
    result = MatchBackgroundsTask(config).run(warps, skymap, ref_visit_id=1)
    assert result.reference_visit == 1
    for visit in (2, 3):
        check_accuracy(result, skymap[0], visit)
    # the reference's warps come back unchanged
    for before, after in zip(warps[:9], result.matched_warps[:9], strict=True):
        assert after.masked_image == before.masked_image


@pytest.mark.parametrize("use_approximate", [False, True], ids=["spline", "chebyshev"])
def test_a_ramp_is_matched(skymap, use_approximate):
    """LSST's testRamp: match flat visits to a ramp reference (dz/dx = 1, dz/dy = 2)."""
    _, warps = lsst_scene(skymap, ramp_in=1)
    config = MatchBackgroundsConfig(bin_size=64, use_approximate=use_approximate, approx_order=4)
    result = MatchBackgroundsTask(config).run(warps, skymap, ref_visit_id=1)
    for visit in (2, 3):
        check_accuracy(result, skymap[0], visit)


def test_a_ramp_in_a_visit_with_a_gap_is_matched_thanks_to_the_centroid_correction(skymap):
    """Partly covered bins of a sloped visit sample it off-centre; the correction fixes that."""
    _, warps = lsst_scene(skymap, ramp_in=2)
    result = MatchBackgroundsTask(MatchBackgroundsConfig(bin_size=64)).run(
        warps, skymap, ref_visit_id=1
    )
    check_accuracy(result, skymap[0], 2)
    uncorrected = MatchBackgroundsConfig(bin_size=64, correct_bin_centroids=False)
    biased = MatchBackgroundsTask(uncorrected).run(warps, skymap, ref_visit_id=1)
    row = biased.diagnostics[biased.diagnostics["visit"] == 2][0]
    assert row["matched_mse"] > 1.05 * row["diff_image_var"]


def test_identical_visits_need_no_background(skymap):
    """LSST's testSameImage: a copy of the reference is matched with a zero model."""
    tract = skymap[0]
    image = sky_image(1, 50.0)
    warps = patch_warps(image, 1, tract) + patch_warps(image, 2, tract)
    result = MatchBackgroundsTask().run(warps, skymap, ref_visit_id=1)
    for before, after in zip(warps, result.matched_warps, strict=True):
        np.testing.assert_array_equal(after.image, before.image)
    assert result.diagnostics["fit_rms"].max() == 0.0


@pytest.mark.parametrize("statistic", ["mean", "meanclip"])
def test_saturated_pixels_do_not_bias_the_fit(skymap, statistic):
    """LSST's testMasks: pixels at 65000 flagged SAT are left out of the bins."""
    tract = skymap[0]
    reference = sky_image(2, 10.0, gap=GAP)
    image = reference + 10.0
    rows = np.arange(0, 200, 20)
    image[rows, 5] = 65000.0
    warps = patch_warps(reference, 1, tract) + patch_warps(image, 2, tract)
    for warp in warps[len(warps) // 2 :]:
        saturated = warp.image == 65000.0
        warp.mask.set("SAT", saturated)
    config = MatchBackgroundsConfig(bin_size=128, grid_statistic=statistic)
    result = MatchBackgroundsTask(config).run(warps, skymap, ref_visit_id=1)
    check_accuracy(result, tract, 2)
    near = result.backgrounds[-1].evaluate(Box(0, 0, 128, 200))
    assert np.abs(near + 10.0).max() < 0.1
    # the test has teeth: with a plain mean and SAT not excluded the fit is off by ~100
    if statistic == "mean":
        blind = config.replace(bad_mask_planes=("NO_DATA",))
        off = MatchBackgroundsTask(blind).run(warps, skymap, ref_visit_id=1)
        assert np.abs(off.backgrounds[-1].evaluate(Box(0, 0, 128, 200)) + 10.0).max() > 50


def test_a_bin_larger_than_the_image_raises_value_error(skymap):
    _, warps = lsst_scene(skymap)
    for size in range(601, 1000, 100):
        with pytest.raises(ValueError, match="bin_size"):
            MatchBackgroundsTask(MatchBackgroundsConfig(bin_size=size)).run(warps, skymap)
    with pytest.raises(InvalidParameterError, match="larger than the region"):
        MatchBackgroundsTask(MatchBackgroundsConfig(bin_size=250)).run(warps[:1])


def test_chebyshev_order_is_reduced_or_refused_when_too_few_bins(skymap):
    """600 pixels in bins of 256 give 3 bins a side: order 2 at most (LSST testConfig)."""
    _, warps = lsst_scene(skymap)
    strict = MatchBackgroundsConfig(
        bin_size=256, use_approximate=True, approx_order=4, undersample_style="THROW_EXCEPTION"
    )
    with pytest.raises(ValueError, match=r"visit 2: .*order 4"):
        MatchBackgroundsTask(strict).run(warps[:18], skymap, ref_visit_id=1)
    reduced = MatchBackgroundsTask(strict.replace(undersample_style="REDUCE_INTERP_ORDER"))
    result = reduced.run(warps[:18], skymap, ref_visit_id=1)
    assert result.diagnostics["approx_order"][1] == 2
    check_accuracy(result, skymap[0], 2)


# -- tract-wide binning -----------------------------------------------------------------------


def test_patches_of_a_visit_share_one_continuous_model(skymap):
    _, warps = lsst_scene(skymap, ramp_in=1)
    result = MatchBackgroundsTask(MatchBackgroundsConfig(bin_size=64)).run(
        warps, skymap, ref_visit_id=1
    )
    mine = [i for i, w in enumerate(warps) if w.visit_info.visit == 2]
    assert len({id(result.backgrounds[i]) for i in mine}) == 1
    left, right = (result.matched_warps[i] for i in mine[:2])  # patches (0, 0) and (1, 0)
    overlap = left.bbox.intersection(right.bbox)
    assert overlap.width == 20
    np.testing.assert_array_equal(left[overlap].image, right[overlap].image)


def test_coadd_of_matched_warps_has_no_step_at_patch_or_visit_boundaries(skymap):
    tract = skymap[0]
    images = {
        1: sky_image(11, 50.0),
        2: sky_image(12, 10.0, gap=GAP),
        3: sky_image(13, 20.0, covered=COVERED),
        4: sky_image(14, -5.0, gap=slice(430, 470)),
    }
    warps = [w for v, image in images.items() for w in patch_warps(image, v, tract)]
    result = MatchBackgroundsTask(MatchBackgroundsConfig(bin_size=64)).run(warps, skymap)
    config = AssembleCoaddConfig(statistic="MEAN", do_artifact_rejection=False)

    def coadd(exposures):
        patches = []
        for patch in tract.patches():
            inputs = [w for w in exposures if w.bbox == patch.outer_bbox]
            patches.append(AssembleCoaddTask(config).run(inputs).coadd)
        return mosaic(patches, tract), mosaic(patches, tract, "variance")

    image, variance = coadd(result.matched_warps)
    sigma = np.sqrt(np.median(variance))
    boundaries = [200, 250, 350, 400, 430, 470]  # patches at 200, 400; visits at all
    for x in boundaries:
        step = image[:, x - 8 : x].mean() - image[:, x : x + 8].mean()
        assert abs(step) < 0.1 * sigma, (x, step / sigma)
    for y in (200, 400):
        step = image[y - 8 : y].mean() - image[y : y + 8].mean()
        assert abs(step) < 0.1 * sigma, (y, step / sigma)
    # unmatched, the same coadd steps by several sigma where visits start and stop
    raw, _ = coadd(warps)
    assert abs(raw[:, 242:250].mean() - raw[:, 250:258].mean()) > 3 * sigma


def test_the_least_noisy_full_coverage_visit_is_the_reference(skymap):
    tract = skymap[0]
    scene = {
        1: (sky_image(21, 10.0, sigma=2.0), 2.0),  # full, noisy
        2: (sky_image(22, 20.0, sigma=1.0), 1.0),  # full, quiet: the one to choose
        3: (sky_image(23, 30.0, sigma=1.0, gap=GAP), 1.0),  # quiet, a gap
        4: (sky_image(24, 40.0, sigma=0.5, covered=COVERED), 0.5),  # quietest, a third
    }
    warps = [
        w for v, (image, sigma) in scene.items() for w in patch_warps(image, v, tract, sigma=sigma)
    ]
    result = MatchBackgroundsTask(MatchBackgroundsConfig(bin_size=64)).run(warps, skymap)
    assert result.reference_visit == 2
    table = result.diagnostics
    assert table["visit"][np.argmin(table["cost"])] == 2
    np.testing.assert_allclose(table["coverage"], [1.0, 1.0, 5 / 6, 1 / 3])
    np.testing.assert_allclose(table["mean_variance"], [4.0, 1.0, 1.0, 0.25])
    # a reference given is used as it is
    given = MatchBackgroundsTask(MatchBackgroundsConfig(bin_size=64)).run(
        warps, skymap, ref_visit_id=3
    )
    assert given.reference_visit == 3 and bool(given.diagnostics["is_reference"][2])


# -- refused inputs --------------------------------------------------------------------------


def test_mixed_bands_are_refused_naming_the_warp(skymap):
    tract = skymap[0]
    warps = patch_warps(sky_image(1, 5.0), 1, tract) + patch_warps(
        sky_image(2, 6.0), 2, tract, band="i"
    )
    with pytest.raises(InvalidExposureError, match=r"visit=2 band=i.*one band"):
        MatchBackgroundsTask().run(warps, skymap)


def test_warps_of_another_tract_are_refused_naming_the_warp(skymap):
    tract = skymap[0]
    other = shifted_wcs(tract.wcs, 0.5, 0.0)
    warps = patch_warps(sky_image(1, 5.0), 1, tract) + patch_warps(
        sky_image(2, 6.0), 2, tract, wcs=other
    )
    with pytest.raises(InvalidExposureError, match=r"visit=2 .*not on the pixel grid"):
        MatchBackgroundsTask().run(warps)
    # with a sky map: on no tract of it
    elsewhere = WCS(tract.wcs.to_header())
    elsewhere.wcs.crval = [10.0, -40.0]
    lost = patch_warps(sky_image(1, 5.0), 1, tract, wcs=elsewhere)
    with pytest.raises(InvalidExposureError, match="not on the pixel grid of any tract"):
        MatchBackgroundsTask().run(lost, skymap)


def test_a_visit_without_overlap_with_the_reference_is_refused(skymap):
    tract = skymap[0]
    left = patch_warps(sky_image(1, 5.0, covered=slice(0, 190)), 1, tract)
    right = patch_warps(sky_image(2, 6.0, covered=slice(420, 600)), 2, tract)
    with pytest.raises(InvalidExposureError, match="visit 2 shares no bin with the reference"):
        MatchBackgroundsTask(MatchBackgroundsConfig(bin_size=64)).run(
            left + right, skymap, ref_visit_id=1
        )


def test_bad_reference_visit_units_and_empty_input_are_refused(skymap):
    _, warps = lsst_scene(skymap)
    with pytest.raises(InvalidParameterError, match=r"reference visit 7 .*\[1, 2, 3\]"):
        MatchBackgroundsTask().run(warps, skymap, ref_visit_id=7)
    counts = warps[0].replace(units="count")
    with pytest.raises(InvalidExposureError, match="not nJy"):
        MatchBackgroundsTask().run([counts, *warps[1:]], skymap)
    anonymous = warps[0].replace(visit_info=VisitInfo())
    with pytest.raises(InvalidExposureError, match="no visit id"):
        MatchBackgroundsTask().run([anonymous, *warps[1:]], skymap)
    from skydiff.errors import NoWorkFound

    with pytest.raises(NoWorkFound):
        MatchBackgroundsTask().run([])


# -- handles, laziness, immutability, persistence ------------------------------------------


def test_files_read_lazily_give_the_in_memory_result(skymap, tmp_path):
    _, warps = lsst_scene(skymap)
    paths = []
    for i, warp in enumerate(warps):
        paths.append(write_exposure(warp, tmp_path / f"warp_{i:02d}.fits"))
    config = MatchBackgroundsConfig(bin_size=64)
    in_memory = MatchBackgroundsTask(config).run(warps, skymap)
    handles = [ExposureHandle(p) for p in paths]
    # read a bin row at a time: the result does not depend on the blocks
    blockwise = config.replace(build_matched_warps=False, block_rows=64)
    lazy = MatchBackgroundsTask(blockwise).run(handles, skymap)
    assert lazy.matched_warps == () and lazy.reference_visit == in_memory.reference_visit
    for exposure, handle in zip(in_memory.matched_warps, lazy.matched_handles, strict=True):
        assert handle.get().masked_image == exposure.masked_image
        part = exposure.bbox.grown(-30)
        np.testing.assert_array_equal(handle.get(part).image, exposure[part].image)
    np.testing.assert_array_equal(in_memory.diagnostics["cost"], lazy.diagnostics["cost"])


def test_inputs_are_not_modified_and_results_pickle(skymap):
    _, warps = lsst_scene(skymap)
    before = [w.masked_image.copy() for w in warps]
    result = MatchBackgroundsTask(MatchBackgroundsConfig(bin_size=64)).run(warps, skymap)
    for warp, copy in zip(warps, before, strict=True):
        assert warp.masked_image == copy
    back = pickle.loads(pickle.dumps(result))
    assert back.reference_visit == result.reference_visit
    np.testing.assert_array_equal(back.diagnostics["fit_rms"], result.diagnostics["fit_rms"])
    box = Box(100, 250, 50, 40)  # in warp 12 (visit 2, patch (0, 1))
    assert result.matched_warps[12].bbox.contains(box)
    np.testing.assert_array_equal(
        back.backgrounds[12].evaluate(box), result.backgrounds[12].evaluate(box)
    )
    np.testing.assert_array_equal(
        back.matched_handles[12].get(box).image, result.matched_warps[12][box].image
    )
    config = MatchBackgroundsConfig(bin_size=64)
    assert pickle.loads(pickle.dumps(config)) == config


def test_metadata_holds_the_per_visit_diagnostics(skymap):
    _, warps = lsst_scene(skymap)
    result = MatchBackgroundsTask(MatchBackgroundsConfig(bin_size=64)).run(warps, skymap)
    m = result.metadata
    assert m["reference_visit"] == result.reference_visit == 1
    assert m["tract"] == 0 and m["n_visits"] == 3 and m["n_warps"] == len(warps)
    assert m["visit_2_n_bins"] == 90 and m["visit_3_n_bins"] == 40  # a gap and 2/3 empty
    for visit in (2, 3):
        assert m[f"visit_{visit}_matched_mse"] < 1.01 * m[f"visit_{visit}_diff_image_var"]
        assert 0 <= m[f"visit_{visit}_fit_rms"] < 0.1
    assert "visit_1_fit_rms" not in m.values
    rows = json.loads(m["diagnostics"])
    assert [r["visit"] for r in rows] == [1, 2, 3] and rows[0]["matched_mse"] is None
    assert set(m.timings) >= {"bin", "select", "fit", "diagnostics", "apply"}


# -- command line -----------------------------------------------------------------------------


def test_cli_writes_matched_warps_under_their_names_and_the_diagnostics(skymap, tmp_path, capsys):
    _, warps = lsst_scene(skymap)
    inputs = tmp_path / "warps"
    inputs.mkdir()
    paths = [
        str(write_exposure(w, inputs / f"v{w.visit_info.visit}_{i}.fits"))
        for i, w in enumerate(warps)
    ]
    out = tmp_path / "matched"
    argv = ["match-backgrounds", *paths, "-o", str(out), "--ref-visit", "3", "-c", "bin_size=64"]
    assert main(argv) == 0
    assert "reference visit 3" in capsys.readouterr().out
    written = sorted(p.name for p in out.glob("*.fits"))
    assert written == sorted(p.rsplit("/", 1)[-1] for p in paths)
    report = json.loads((out / "match_backgrounds.json").read_text())
    assert report["reference_visit"] == 3 and len(report["visits"]) == 3
    matched = read_exposure(out / "v1_0.fits")
    assert abs(np.nanmean(matched.image) - 20.0) < 0.1
    # refuses to overwrite, and to write over its inputs
    assert main(argv) == 1
    assert "use --overwrite" in capsys.readouterr().err
    assert main(["match-backgrounds", *paths, "-o", str(inputs), "--overwrite"]) == 1
    assert "would overwrite its input" in capsys.readouterr().err
