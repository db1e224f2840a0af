"""One simulated calexp: pick the sources on a detector, render, add noise and defects."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from astropy.table import Table, vstack
from astropy.wcs import WCS

from ..image import Box, Exposure, Mask, MaskedImage, PhotoCalib, VisitInfo, sky_to_pixel
from ..psf import VaryingAnalyticPsf
from ._camera import Camera
from ._catalog import SurveyTruth, make_truth
from ._config import SurveyConfig
from ._detector import add_noise, bad_columns, saturate
from ._geometry import detector_wcs, sky_to_tangent, tangent_to_focal_plane
from ._psf import detector_psf
from ._psfgrid import PsfGrid
from ._render import GALAXY_MAX_HALF, render_galaxies, render_point_sources
from ._visits import STREAM_EXPOSURE, VisitConditions, rng_for

__all__ = ["SimulatedExposure", "simulate_exposure", "sky_image"]

log = logging.getLogger(__name__)

#: Wings of point sources are drawn out to where they fall below this fraction of the sky noise.
_WING_NOISE_FRACTION = 0.1
_SHAPE_COLUMNS = ("half_light_radius", "sersic_n", "axis_ratio", "position_angle")


@dataclass(eq=False)
class SimulatedExposure:
    """A simulated calexp and the truth of what is in it.

    Attributes
    ----------
    exposure : Exposure
        The calexp (counts, with WCS, true PSF, PhotoCalib and VisitInfo).
    truth : astropy.table.Table
        One row per source rendered on the detector: ``id, kind ('star',
        'galaxy', 'transient', 'variable'), ra, dec, x, y`` (parent pixels),
        ``flux_njy, flux_counts, inside`` (centre within the image),
        ``is_saturated`` and the galaxy shape columns of
        :attr:`SurveyTruth.sources`.
    model : numpy.ndarray or None
        The expected (noiseless) image in counts, when asked for.
    """

    exposure: Exposure
    truth: Table
    model: np.ndarray | None = None

    @property
    def visit(self) -> int:
        """Visit identifier."""
        return int(self.exposure.visit_info.visit)

    @property
    def detector(self) -> int:
        """Detector identifier."""
        return int(self.exposure.visit_info.detector)


@dataclass(frozen=True)
class _Frame:
    """How one detector sees the sky in one visit."""

    config: SurveyConfig
    camera: Camera
    conditions: VisitConditions
    index: int
    detector: int
    origin: tuple[int, int]
    bbox: Box
    wcs: WCS
    psf: VaryingAnalyticPsf
    photo_calib: PhotoCalib

    @classmethod
    def make(
        cls,
        config: SurveyConfig,
        camera: Camera,
        conditions: VisitConditions,
        index: int,
        detector: int,
        origin: tuple[int, int],
    ) -> _Frame:
        """The WCS, PSF and calibration of ``detector`` in the visit of ``conditions``."""
        boresight = (conditions.boresight_ra, conditions.boresight_dec)
        wcs = detector_wcs(
            camera, detector, boresight, conditions.rotation, config.sip_amplitude, origin
        )
        psf = detector_psf(config, camera, conditions, detector, origin)
        photo_calib = PhotoCalib.from_zero_point(conditions.zero_point)
        bbox = camera.detector_bbox(origin)
        return cls(config, camera, conditions, index, detector, origin, bbox, wcs, psf, photo_calib)

    @property
    def margin(self) -> int:
        """Pixels beyond the image from which a source can still add light to it."""
        return GALAXY_MAX_HALF + self.psf.kernel_size // 2 + 2


def _candidate_rows(table: Table, frame: _Frame) -> np.ndarray:
    """Rows that may land near the detector (a cheap test that ignores the distortion)."""
    conditions, camera = frame.conditions, frame.camera
    xi, eta = sky_to_tangent(
        table["ra"], table["dec"], conditions.boresight_ra, conditions.boresight_dec
    )
    fx, fy = tangent_to_focal_plane(xi, eta, camera.pixel_scale, conditions.rotation)
    x0, y0 = camera.focal_plane_position(frame.detector, 0.0, 0.0)
    x, y = fx - x0, fy - y0
    slack = frame.margin + 10.0 + 2.0 * frame.config.sip_amplitude
    return (x > -slack) & (x < camera.width + slack) & (y > -slack) & (y < camera.height + slack)


def _all_sources(truth: SurveyTruth, visit: int) -> Table:
    """Static and varying sources with their flux at ``visit`` and shape columns."""
    static = truth.sources[["id", "kind", "ra", "dec", "flux_njy", *_SHAPE_COLUMNS]]
    varying = truth.varying_sources(visit)
    n = len(varying)
    for name, value in zip(_SHAPE_COLUMNS, (0.0, 0.0, 1.0, 0.0), strict=True):
        varying[name] = np.full(n, value)
    table = vstack([static, varying])
    table["kind"] = table["kind"].astype("<U9")
    return table


def _sources_on_detector(truth: SurveyTruth, frame: _Frame) -> Table:
    """The sources that add light to the image, with pixel positions and fluxes in counts."""
    sources = _all_sources(truth, frame.conditions.visit)
    sources = sources[_candidate_rows(sources, frame)]
    x, y = sky_to_pixel(frame.wcs, np.asarray(sources["ra"]), np.asarray(sources["dec"]))
    bbox, margin = frame.bbox, frame.margin
    keep = (
        (x > bbox.x0 - margin)
        & (x < bbox.x_end + margin)
        & (y > bbox.y0 - margin)
        & (y < bbox.y_end + margin)
    )
    sources = sources[keep]
    x, y = x[keep], y[keep]
    sources.add_column(x, name="x", index=4)
    sources.add_column(y, name="y", index=5)
    counts = frame.photo_calib.nanojansky_to_instflux(np.asarray(sources["flux_njy"]))
    sources.add_column(counts, name="flux_counts", index=7)
    inside = (
        (x >= bbox.x0 - 0.5)
        & (x < bbox.x_end - 0.5)
        & (y >= bbox.y0 - 0.5)
        & (y < bbox.y_end - 0.5)
    )
    sources.add_column(inside, name="inside", index=8)
    return sources


def _sky_image(frame: _Frame) -> np.ndarray:
    """Sky level plus the visit's linear gradient across the focal plane, counts."""
    camera, conditions, bbox = frame.camera, frame.conditions, frame.bbox
    radius = camera.focal_plane_radius
    fx, fy = camera.focal_plane_position(
        frame.detector,
        np.arange(bbox.x0, bbox.x_end),
        np.arange(bbox.y0, bbox.y_end),
        frame.origin,
    )
    row = (conditions.sky_level + conditions.sky_gradient_x * fx / radius).astype(np.float32)
    col = (conditions.sky_gradient_y * fy / radius).astype(np.float32)
    return col[:, None] + row[None, :]


def _render_model(frame: _Frame, sources: Table) -> np.ndarray:
    """The expected image in counts: sky, point sources and galaxies."""
    camera = frame.camera
    model = _sky_image(frame)
    grid = PsfGrid(frame.psf, frame.bbox)
    sky_noise = np.sqrt(
        frame.conditions.sky_level / camera.gain + (camera.read_noise / camera.gain) ** 2
    )
    point = sources[sources["kind"] != "galaxy"]
    render_point_sources(
        model,
        frame.bbox,
        grid,
        point["x"],
        point["y"],
        point["flux_counts"],
        wing_threshold=_WING_NOISE_FRACTION * sky_noise,
    )
    galaxies = sources[sources["kind"] == "galaxy"]
    columns = {name: np.asarray(galaxies[name]) for name in ("x", "y", *_SHAPE_COLUMNS)}
    columns["flux"] = np.asarray(galaxies["flux_counts"])
    render_galaxies(model, frame.bbox, grid, columns, frame.wcs.pixel_scale_matrix * 3600.0)
    return model


def _detector_effects(frame: _Frame, model: np.ndarray) -> tuple[np.ndarray, Mask]:
    """Noise, saturation with bleed trails and bad columns, with their mask planes."""
    config, camera = frame.config, frame.camera
    if config.add_noise:
        rng = rng_for(config.seed, STREAM_EXPOSURE, frame.index, frame.detector)
        image = add_noise(rng, model, camera.gain, camera.read_noise)
    else:
        image = model.copy()
    mask = Mask.zeros(frame.bbox)
    mask.set("SAT", saturate(image, camera.saturation))
    bad = np.zeros(frame.bbox.shape, bool)
    for column, first_row in bad_columns(config.seed, camera, frame.detector):
        bad[first_row:, column] = True
    image[bad] = 0.0
    mask.set("BAD", bad)
    return image, mask


def _metadata(frame: _Frame) -> dict:
    """Scalars for tests and users: sky model, detector constants, seeing, zero point."""
    camera, conditions = frame.camera, frame.conditions
    cx, cy = frame.bbox.center
    fx, fy = camera.focal_plane_position(frame.detector, cx, cy, frame.origin)
    radius = camera.focal_plane_radius
    slope_x = conditions.sky_gradient_x / radius
    slope_y = conditions.sky_gradient_y / radius
    origin_x, origin_y = camera.detector_origin(frame.detector)
    return {
        # focal-plane pixel position of parent pixel (0, 0): the detector layout that
        # sky correction needs (FocalPlaneBackground), carried by each calexp
        "FPX0": float(origin_x - frame.origin[0]),
        "FPY0": float(origin_y - frame.origin[1]),
        "SKYLEVEL": conditions.sky_level + slope_x * fx + slope_y * fy,
        "SKYSLPX": slope_x,
        "SKYSLPY": slope_y,
        "GAIN": camera.gain,
        "RDNOISE": camera.read_noise,
        "SATURATE": camera.saturation,
        "SEEING": conditions.seeing,
        "PSFFWHM": float(frame.psf.fwhm(cx, cy)),
        "ZEROPT": conditions.zero_point,
        "PIXSCALE": camera.pixel_scale,
        "SIMSEED": frame.config.seed,
        "SIMNOISE": frame.config.add_noise,
    }


def _visit_info(frame: _Frame) -> VisitInfo:
    conditions = frame.conditions
    return VisitInfo(
        visit=conditions.visit,
        detector=frame.detector,
        mjd=conditions.mjd,
        exposure_time=frame.config.exposure_time,
        airmass=conditions.airmass,
        boresight_ra=conditions.boresight_ra,
        boresight_dec=conditions.boresight_dec,
        boresight_rotation=conditions.rotation,
        instrument=frame.camera.name,
    )


def _flag_saturated(truth: Table, mask: Mask, bbox: Box) -> None:
    flags = np.zeros(len(truth), bool)
    inside = np.asarray(truth["inside"])
    ix = np.rint(np.asarray(truth["x"])[inside]).astype(int) - bbox.x0
    iy = np.rint(np.asarray(truth["y"])[inside]).astype(int) - bbox.y0
    flags[inside] = (mask.array[iy, ix] & mask.bitmask("SAT")) != 0
    truth["is_saturated"] = flags


def simulate_exposure(
    config: SurveyConfig | None = None,
    camera: Camera | None = None,
    visit: int | None = None,
    detector: int = 0,
    *,
    origin: tuple[int, int] = (0, 0),
    truth: SurveyTruth | None = None,
    keep_model: bool = False,
) -> SimulatedExposure:
    """Simulate the calexp of one detector in one visit.

    The result is the same as that of the survey's exposure for this visit
    and detector, whatever else is simulated: every random choice is keyed
    on the seed, the visit and the detector.

    Parameters
    ----------
    config : SurveyConfig, optional
        Survey configuration (default ``SurveyConfig()``).
    camera : Camera, optional
        Camera (default ``Camera.small()``).
    visit : int, optional
        Visit identifier (default the first visit).
    detector : int
        Detector identifier.
    origin : (int, int)
        Parent-frame position of the image's first pixel (its ``Box`` origin);
        the WCS, PSF and truth positions follow it.
    truth : SurveyTruth, optional
        The survey's truth, if already made (it is drawn from the seed otherwise).
    keep_model : bool
        Also return the noiseless expected image.
    """
    start = time.perf_counter()
    config = SurveyConfig() if config is None else config
    camera = Camera.small() if camera is None else camera
    truth = make_truth(config, camera) if truth is None else truth
    visit = config.first_visit if visit is None else visit
    index, detector = config.visit_index(visit), camera.check_detector(detector)
    origin = (int(origin[0]), int(origin[1]))
    frame = _Frame.make(config, camera, truth.conditions[index], index, detector, origin)
    sources = _sources_on_detector(truth, frame)
    model = _render_model(frame, sources)
    image, mask = _detector_effects(frame, model)
    variance = model / camera.gain + np.float32((camera.read_noise / camera.gain) ** 2)
    _flag_saturated(sources, mask, frame.bbox)
    exposure = Exposure(
        MaskedImage(image, mask, variance, bbox=frame.bbox),
        wcs=frame.wcs,
        psf=frame.psf,
        photo_calib=frame.photo_calib,
        band=config.band,
        physical_filter=config.physical_filter,
        visit_info=_visit_info(frame),
        metadata=_metadata(frame),
        units="count",
    )
    log.debug(
        "simulated visit %d detector %d (%d sources) in %.2f s",
        visit,
        detector,
        len(sources),
        time.perf_counter() - start,
    )
    return SimulatedExposure(exposure, sources, model if keep_model else None)


def sky_image(exposure: Exposure) -> np.ndarray:
    """The true sky of a simulated exposure (counts): its level and linear gradient.

    Read from the ``SKYLEVEL`` (at the box centre), ``SKYSLPX`` and ``SKYSLPY``
    metadata that :func:`simulate_exposure` records, for tests that need the
    background without estimating it.
    """
    meta = exposure.metadata
    cx, cy = exposure.bbox.center
    x = np.arange(exposure.bbox.x0, exposure.bbox.x_end, dtype=np.float64) - cx
    y = np.arange(exposure.bbox.y0, exposure.bbox.y_end, dtype=np.float64) - cy
    return meta["SKYLEVEL"] + meta["SKYSLPX"] * x[None, :] + meta["SKYSLPY"] * y[:, None]
