"""GetTemplateTask: templates cut from coadd patches of one or more tracts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from astropy.wcs import WCS

from skydiff.coadd import GetTemplateConfig, GetTemplateTask
from skydiff.errors import NoWorkFound
from skydiff.image import Box, Exposure, MaskedImage
from skydiff.psf import CoaddPsf, CoaddPsfInput, GaussianPsf
from skydiff.skymap import DiscreteSkyMap, SkyMapConfig

RA, DEC = 150.0, 2.0
NOISE = 0.5  # coadd pixel sigma, nJy
#: blobs of the truth field: (offset east arcsec, offset north arcsec, sigma arcsec, amplitude nJy)
BLOBS = [(-20.0, 5.0, 1.5, 80.0), (3.0, -4.0, 2.0, 150.0), (15.0, 12.0, 1.0, 60.0), (0, 20, 3, 40)]


def truth(ra: np.ndarray, dec: np.ndarray, pixel_area: float) -> np.ndarray:
    """A smooth field (Gaussian blobs on a slope), in nJy per pixel of ``pixel_area`` arcsec^2."""
    east = (ra - RA) * np.cos(np.radians(DEC)) * 3600.0
    north = (dec - DEC) * 3600.0
    value = 10.0 + 0.05 * east
    for x, y, sigma, amplitude in BLOBS:
        value = value + amplitude * np.exp(-0.5 * ((east - x) ** 2 + (north - y) ** 2) / sigma**2)
    return value * pixel_area / 0.04  # amplitudes are per 0.2" pixel


@dataclass
class MemoryHandle:
    """A coadd in memory behind the handle interface (bbox, wcs, get)."""

    exposure: Exposure

    @property
    def bbox(self) -> Box:
        return self.exposure.bbox

    @property
    def wcs(self) -> WCS:
        return self.exposure.wcs

    def get(self, bbox: Box | None = None) -> Exposure:
        self.reads = [*getattr(self, "reads", []), bbox]
        return self.exposure if bbox is None else self.exposure[bbox]


def two_tract_skymap() -> DiscreteSkyMap:
    """Two small tracts 40 arcsec apart in RA, each 3x3 patches of 120 px (0.2")."""
    offset = 40.0 / 3600.0 / np.cos(np.radians(DEC))
    config = SkyMapConfig(patch_inner_dimensions=(120, 120), patch_border=10, tract_overlap=0.0)
    return DiscreteSkyMap.from_centers(
        [RA - offset / 2, RA + offset / 2], [DEC, DEC], [0.008, 0.008], config=config
    )


def make_coadd(tract, patch, rng, *, variance_boost: Box | None = None) -> Exposure:
    box = patch.outer_bbox
    y, x = np.mgrid[box.y0 : box.y_end, box.x0 : box.x_end]
    ra, dec = tract.pixel_to_sky(x.ravel(), y.ravel())
    image = truth(np.asarray(ra), np.asarray(dec), 0.04).reshape(box.shape)
    masked = MaskedImage.zeros(box)
    masked.image[...] = image + rng.normal(0.0, NOISE, box.shape)
    masked.variance[...] = NOISE**2
    if variance_boost is not None:
        masked[variance_boost].variance[...] *= 10.0
    return Exposure(masked, wcs=tract.wcs, psf=GaussianPsf(3.0), units="nJy", band="r")


def all_coadds(skymap, rng, **kwargs) -> dict:
    return {
        (tract.tract_id, patch.sequential_index): MemoryHandle(
            make_coadd(tract, patch, rng, **kwargs)
        )
        for tract in skymap
        for patch in tract.patches()
    }


def science_wcs(*, angle: float = 25.0, crpix=(100.0, 80.0), ra: float = RA, dec: float = DEC):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [crpix[0] + 1, crpix[1] + 1]
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    wcs.wcs.cd = 0.2 / 3600 * np.array([[-c, s], [s, c]])
    return wcs


def run_template(task, handles, skymap, bbox, wcs):
    found = task.get_exposures(handles, bbox, skymap, wcs)
    return found, task.run(found.coadd_handles, bbox, wcs, found.data_ids, "sim-r").template


@pytest.fixture(scope="module")
def skymap():
    return two_tract_skymap()


def test_template_straddling_patches_and_tracts_matches_the_truth(skymap):
    rng = np.random.default_rng(1)
    handles = all_coadds(skymap, rng)
    bbox, wcs = Box(20, 10, 180, 140), science_wcs()
    found, template = run_template(GetTemplateTask(), handles, skymap, bbox, wcs)
    assert len(found.coadd_handles) == 2  # both tracts
    assert sum(len(v) for v in found.data_ids.values()) >= 4  # several patches
    assert template.bbox == bbox.grown(20) and template.units == "nJy"
    assert np.all(np.isfinite(template.image)) and not template.mask.get("NO_DATA").any()
    y, x = np.mgrid[template.bbox.y0 : template.bbox.y_end, template.bbox.x0 : template.bbox.x_end]
    ra, dec = wcs.all_pix2world(x, y, 0)
    expected = truth(ra, dec, 0.04)
    sigma = np.sqrt(template.variance)
    # LSST's test: rtol 0.1 and atol 4 sigma
    assert np.all(np.abs(template.image - expected) <= 0.1 * np.abs(expected) + 4 * sigma)
    # the template noise is the coadd noise resampled (smaller, correlated), not more
    assert np.std(template.image - expected) < NOISE
    # only what overlaps was read, and only the needed sub-boxes
    reads = [r for h in handles.values() for r in getattr(h, "reads", [])]
    assert reads and all(r is not None and r.area < 160 * 160 for r in reads)
    assert isinstance(template.psf, CoaddPsf)
    # the coadd PSF carried through the rotation (resampling broadens it slightly)
    assert template.psf.fwhm(*template.bbox.center) == pytest.approx(3.0, rel=0.05)


def test_tract_overlaps_are_variance_weighted_with_variances_averaged(skymap):
    """Where both tracts cover a pixel the variance is their weighted mean, not less."""
    rng = np.random.default_rng(2)
    handles = all_coadds(skymap, rng)
    bbox, wcs = Box(40, 40, 100, 100), science_wcs(angle=0.0)
    _, template = run_template(GetTemplateTask(), handles, skymap, bbox, wcs)
    single_tract = {k: v for k, v in handles.items() if k[0] == 0}
    _, one = run_template(GetTemplateTask(), single_tract, skymap, bbox, wcs)
    both = ~one.mask.get("NO_DATA")
    # equal coadd variances: the weighted mean of the variances is the variance of either
    np.testing.assert_allclose(template.variance[both], one.variance[both], rtol=0.02)


def test_missing_patch_leaves_no_data_exactly_where_it_was(skymap):
    rng = np.random.default_rng(3)
    tract = skymap[0]
    handles = {k: v for k, v in all_coadds(skymap, rng).items() if k[0] == 0}
    missing = tract.patch((1, 1))
    del handles[(0, missing.sequential_index)]
    bbox = Box(0, 0, 200, 200)
    center = tract.pixel_to_sky(
        np.array([missing.inner_bbox.x0 + 0.0]), np.array([missing.inner_bbox.y0 + 0.0])
    )
    wcs = science_wcs(angle=0.0, ra=float(center[0][0]), dec=float(center[1][0]))
    config = GetTemplateConfig().with_values({"warper": {"interp_length": 1}})
    _, template = run_template(GetTemplateTask(config), handles, skymap, bbox, wcs)
    # expected: the Lanczos-3 footprint of each pixel (6 x 6 tract pixels) lies in available
    # patches' outer boxes
    y, x = np.mgrid[template.bbox.y0 : template.bbox.y_end, template.bbox.x0 : template.bbox.x_end]
    tx, ty = tract.sky_to_pixel(*wcs.all_pix2world(x, y, 0))
    x_lo, y_lo = np.floor(tx).astype(int) - 2, np.floor(ty).astype(int) - 2
    have = np.zeros(tract.bbox.shape, bool)
    for _, index in handles:
        have[tract.patch(index).outer_bbox.slices(tract.bbox)] = True
    have = np.pad(have, 50)  # beyond the tract: no data
    covered = np.ones(x.shape, bool)
    for dy in range(6):
        for dx in range(6):
            covered &= have[y_lo + dy + 50, x_lo + dx + 50]
    assert (~covered).sum() > 1000  # the hole is big
    np.testing.assert_array_equal(template.mask.get("NO_DATA"), ~covered)


def test_no_template_outside_every_tract_or_without_wcs(skymap):
    rng = np.random.default_rng(4)
    handles = all_coadds(skymap, rng)
    far = science_wcs(ra=RA + 1.0)
    task = GetTemplateTask()
    with pytest.raises(NoWorkFound, match="no coadd patch overlaps"):
        task.get_exposures(handles, Box(0, 0, 100, 100), skymap, far)
    with pytest.raises(NoWorkFound, match="no WCS"):
        task.get_exposures(handles, Box(0, 0, 100, 100), skymap, None)


def test_high_variance_marks_a_region_with_ten_times_the_variance(skymap):
    rng = np.random.default_rng(5)
    tract = skymap[0]
    hot = Box(140, 140, 40, 40)  # tract pixels
    handles = {
        (0, p.sequential_index): MemoryHandle(make_coadd(tract, p, rng, variance_boost=hot))
        if p.outer_bbox.contains(hot)
        else MemoryHandle(make_coadd(tract, p, rng))
        for p in tract.patches()
    }
    ra, dec = tract.pixel_to_sky(np.array([160.0]), np.array([160.0]))
    wcs = science_wcs(angle=0.0, ra=float(ra[0]), dec=float(dec[0]))
    _, template = run_template(GetTemplateTask(), handles, skymap, Box(0, 0, 200, 200), wcs)
    flagged = template.mask.get("HIGH_VARIANCE")
    # the hot box lands around science pixel (100, 80) +- 20
    assert flagged[80 + 20 - 10 : 80 + 20 + 10, 100 + 20 - 10 : 100 + 20 + 10].all()
    assert flagged.sum() < 2 * 45 * 45 and not flagged[:40, :40].any()


def test_high_variance_leaves_star_cores_alone(skymap):
    """A bright star's core has a high variance of its own photon noise (here 100x the sky
    at the peak, FWHM ~5 px); it is not a shallow template region and stays unflagged, so
    bright stars remain usable as kernel stamps."""
    rng = np.random.default_rng(9)
    tract = skymap[0]
    handles = all_coadds(skymap, rng)
    for handle in handles.values():
        exposure = handle.exposure
        y, x = np.mgrid[
            exposure.bbox.y0 : exposure.bbox.y_end, exposure.bbox.x0 : exposure.bbox.x_end
        ]
        core = np.exp(-((x - 160.0) ** 2 + (y - 160.0) ** 2) / (2 * 2.1**2))
        exposure.variance[...] *= 1.0 + 100.0 * core
    ra, dec = tract.pixel_to_sky(np.array([160.0]), np.array([160.0]))
    wcs = science_wcs(angle=0.0, ra=float(ra[0]), dec=float(dec[0]))
    _, template = run_template(GetTemplateTask(), handles, skymap, Box(0, 0, 200, 200), wcs)
    assert np.nanmax(template.variance) > 50 * np.nanmedian(template.variance)
    assert not template.mask.get("HIGH_VARIANCE").any()


# -- command line ------------------------------------------------------------------------------


def test_cli_template_reads_coadd_files_and_matches_the_task(skymap, tmp_path, capsys):
    from skydiff.cli import main
    from skydiff.io import read_exposure, write_exposure

    rng = np.random.default_rng(6)
    handles = all_coadds(skymap, rng)
    directory = tmp_path / "coadds"
    directory.mkdir()
    for (tract, patch), handle in handles.items():
        write_exposure(handle.exposure, directory / f"coadd_{tract}_{patch}.fits")
    bbox, wcs = Box(20, 10, 180, 140), science_wcs()
    science = Exposure(MaskedImage.zeros(bbox), wcs=wcs, psf=GaussianPsf(3.0), units="nJy")
    write_exposure(science, tmp_path / "science.fits")
    out = tmp_path / "template.fits"
    assert (
        main(
            ["template", str(tmp_path / "science.fits"), "--coadds", str(directory), "-o", str(out)]
        )
        == 0
    )
    assert "from 2 tract(s)" in capsys.readouterr().out
    _, expected = run_template(GetTemplateTask(), handles, skymap, bbox, wcs)
    written = read_exposure(out)
    np.testing.assert_allclose(written.image, expected.image, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(written.mask.get("NO_DATA"), expected.mask.get("NO_DATA"))
    missing = ["template", str(tmp_path / "science.fits"), "--coadds", str(tmp_path / "none")]
    assert main([*missing, "-o", str(tmp_path / "other.fits")]) == 1
    assert "no such coadd file" in capsys.readouterr().err


def test_cli_subtract_resamples_a_template_on_another_grid(tmp_path, capsys):
    """A template on a rotated grid is brought onto the science grid before subtraction."""
    import json

    from skydiff.cli import main
    from skydiff.io import write_exposure
    from skydiff.testing import make_test_pair
    from skydiff.warp import warp_exposure

    pair = make_test_pair(shape=(300, 300), n_stars=80, template_noise=1.0, seed=4)
    rotated = science_wcs(
        angle=30.0,
        crpix=(250.0, 350.0),
        ra=float(pair.template.wcs.wcs.crval[0]),
        dec=float(pair.template.wcs.wcs.crval[1]),
    )
    template = warp_exposure(pair.template, rotated, Box(0, 0, 600, 700))
    source = CoaddPsfInput(pair.template.psf, pair.template.wcs, pair.template.bbox)
    template = template.replace(psf=CoaddPsf([source], rotated))
    write_exposure(pair.science, tmp_path / "science.fits")
    write_exposure(template, tmp_path / "template.fits")
    metrics = tmp_path / "metrics.json"
    command = ["subtract", str(tmp_path / "science.fits"), str(tmp_path / "template.fits")]
    assert main([*command, "-o", str(tmp_path / "diff.fits"), "--metrics", str(metrics)]) == 0
    values = json.loads(metrics.read_text())
    # two resamplings of the template (there and back) cost little: the residuals stay white
    assert abs(values["values"]["residual_std"] - 1.0) < 0.1
