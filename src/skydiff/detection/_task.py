"""SourceDetectionTask and SourceMeasurementTask: footprints, peaks and their measurements."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from astropy import units as u
from astropy.table import Table

from ..errors import InvalidExposureError
from ..image import Exposure, Mask
from ..math import cut_stamps, matched_filter_significance
from ..psf import SIGMA_TO_FWHM
from ..task import Config, Task, TaskResult, config_field
from ._footprints import Footprints, detect_footprints
from ._measure import aperture_fluxes, peak_centroids, psf_fluxes, stamp_moments

__all__ = [
    "DetectionResult",
    "MeasurementResult",
    "SourceDetectionConfig",
    "SourceDetectionTask",
    "SourceMeasurementConfig",
    "SourceMeasurementTask",
]

#: Mask planes reported as a ``flag_<name>`` column when set at a source's centre.
_CENTER_FLAGS = {
    "saturated": "SAT",
    "interpolated": "INTRP",
    "cr": "CR",
    "bad": "BAD",
    "suspect": "SUSPECT",
}


@dataclass(frozen=True)
class SourceDetectionConfig(Config):
    """Configuration of :class:`SourceDetectionTask` (LSST names in brackets)."""

    threshold: float = config_field(
        5.0, doc="Detection threshold in sigma of the PSF-smoothed image [thresholdValue]."
    )
    polarity: Literal["positive", "negative", "both"] = config_field(
        "positive", doc="Which signs of sources to detect [thresholdPolarity]."
    )
    grow_sigma: float = config_field(
        2.4, doc="Grow footprints by this many PSF sigmas [nSigmaToGrow]."
    )
    min_pixels: int = config_field(1, doc="Minimum pixels above threshold [minPixels].")
    min_peak_separation: float = config_field(
        1.0, doc="Peaks closer than this many PSF FWHM are merged into the brighter."
    )
    single_peak_planes: tuple[str, ...] = config_field(
        ("SAT",), doc="Footprints touching these planes keep only their brightest peak."
    )
    ignored_planes: tuple[str, ...] = config_field(
        ("NO_DATA", "BAD"), doc="Pixels with these planes count as zero signal."
    )
    default_fwhm: float = config_field(
        3.0, doc="PSF FWHM in pixels to smooth with when the exposure has no PSF."
    )

    def validate(self) -> None:
        self.check(self.threshold > 0, "threshold", "must be > 0")
        self.check(self.grow_sigma >= 0, "grow_sigma", "must be >= 0")
        self.check(self.min_pixels >= 1, "min_pixels", "must be >= 1")
        self.check(self.min_peak_separation >= 0, "min_peak_separation", "must be >= 0")
        self.check(self.default_fwhm > 0, "default_fwhm", "must be > 0")


@dataclass(frozen=True)
class DetectionResult(TaskResult):
    """Result of :meth:`SourceDetectionTask.run`.

    Attributes
    ----------
    positive, negative : Footprints or None
        Detections of each polarity asked for.
    smoothed : numpy.ndarray
        The PSF-smoothed image (used for centroids).
    psf_sigma : float
        Gaussian sigma used for smoothing, pixels.
    """

    positive: Footprints | None
    negative: Footprints | None
    smoothed: np.ndarray
    psf_sigma: float

    def set_mask_planes(self, mask: Mask) -> None:
        """Set ``DETECTED`` / ``DETECTED_NEGATIVE`` on ``mask`` (in place) from the footprints."""
        mask.clear(["DETECTED", "DETECTED_NEGATIVE"])
        if self.positive is not None:
            mask.set("DETECTED", self.positive.mask)
        if self.negative is not None:
            mask.set("DETECTED_NEGATIVE", self.negative.mask)


class SourceDetectionTask(Task):
    """Threshold the PSF-smoothed significance image (LSST ``SourceDetectionTask``).

    The image must be background-subtracted. The noise is taken from the
    variance plane, so the significance of a point source equals its PSF
    photometry S/N.
    """

    ConfigClass = SourceDetectionConfig
    _DefaultName = "detection"

    def psf_sigma(self, exposure: Exposure) -> float:
        """Gaussian sigma (pixels) matched to the exposure's PSF at its centre."""
        if exposure.psf is None:
            return self.config.default_fwhm / SIGMA_TO_FWHM
        sigma = float(exposure.psf.sigma(*exposure.bbox.center))
        if not (np.isfinite(sigma) and sigma > 0):
            raise InvalidExposureError(
                f"the PSF of {exposure.describe()} has no finite width (sigma {sigma})"
            )
        return sigma

    def run(self, exposure: Exposure) -> DetectionResult:
        """Detect footprints and peaks; the exposure is not modified."""
        c = self.config
        metadata = self.new_metadata()
        sigma = self.psf_sigma(exposure)
        good = ~exposure.mask.get(c.ignored_planes, ignore_missing=True)
        with self.timer("smooth", metadata):
            significance, smoothed = matched_filter_significance(
                exposure.image, exposure.variance, sigma, good=good
            )
        grow = round(c.grow_sigma * sigma)
        separation = c.min_peak_separation * sigma * SIGMA_TO_FWHM
        found: dict[str, Footprints | None] = {"positive": None, "negative": None}
        single_peak = exposure.mask.get(c.single_peak_planes, ignore_missing=True)
        with self.timer("threshold", metadata):
            for polarity, sign in (("positive", 1.0), ("negative", -1.0)):
                if c.polarity in (polarity, "both"):
                    found[polarity] = detect_footprints(
                        sign * significance,
                        threshold=c.threshold,
                        grow=grow,
                        min_pixels=c.min_pixels,
                        min_peak_separation=separation,
                        single_peak=single_peak,
                    )
        for polarity, footprints in found.items():
            if footprints is not None:
                metadata.add(f"n_footprints_{polarity}", footprints.n_footprints)
                metadata.add(f"n_peaks_{polarity}", int(footprints.peak_x.size))
        metadata.add("psf_sigma", sigma)
        self.log.info(
            "detected %s in %s",
            {k: (v.peak_x.size if v else 0) for k, v in found.items()},
            exposure.describe(),
        )
        return DetectionResult(
            positive=found["positive"],
            negative=found["negative"],
            smoothed=smoothed,
            psf_sigma=sigma,
            metadata=metadata,
        )


@dataclass(frozen=True)
class SourceMeasurementConfig(Config):
    """Configuration of :class:`SourceMeasurementTask`."""

    stamp_size: int | None = config_field(
        None,
        doc="Side of the PSF-fit stamps (odd); default: 3 PSF FWHM on each side, at most "
        "the PSF kernel size.",
    )
    aperture_radius: float | None = config_field(
        None, doc="Circular aperture radius in pixels; default 3 PSF FWHM."
    )
    psf_flux_bad_planes: tuple[str, ...] = config_field(
        ("NO_DATA", "BAD", "SAT", "CR"), doc="Pixels excluded from PSF fits and apertures."
    )
    edge_planes: tuple[str, ...] = config_field(
        ("EDGE",), doc="A source whose stamp touches these planes is flagged edge."
    )

    def validate(self) -> None:
        self.check(
            self.stamp_size is None or (self.stamp_size >= 5 and self.stamp_size % 2),
            "stamp_size",
            "must be None or an odd integer >= 5",
        )
        self.check(
            self.aperture_radius is None or self.aperture_radius > 0,
            "aperture_radius",
            "must be None or > 0",
        )


@dataclass(frozen=True)
class MeasurementResult(TaskResult):
    """Result of :meth:`SourceMeasurementTask.run`: ``catalog``, an astropy Table with units."""

    catalog: Table


class SourceMeasurementTask(Task):
    """Centroids, adaptive moments, PSF and aperture fluxes and pixel flags of detected peaks.

    Columns: ``id``, ``parent`` (footprint), ``x``, ``y`` (parent pixels),
    ``ra``, ``dec``, ``ixx``, ``iyy``, ``ixy``, ``psf_flux``, ``psf_flux_err``,
    ``psf_chi2``, ``ap_flux``, ``ap_flux_err``, ``snr``, ``significance``,
    ``is_negative``, ``n_peaks`` (of the parent footprint), and boolean flags
    ``flag_edge``, ``flag_no_data``, ``flag_blended``, ``flag_saturated``,
    ``flag_interpolated``, ``flag_cr``, ``flag_bad``, ``flag_suspect``.
    Negative sources have negative fluxes.
    """

    ConfigClass = SourceMeasurementConfig
    _DefaultName = "measurement"

    def run(self, exposure: Exposure, detections: DetectionResult) -> MeasurementResult:
        """Measure every peak of ``detections`` on ``exposure`` (which needs a PSF)."""
        if exposure.psf is None:
            raise InvalidExposureError(f"exposure {exposure.describe()} has no PSF to measure with")
        metadata = self.new_metadata()
        tables = []
        for footprints, sign in ((detections.positive, 1.0), (detections.negative, -1.0)):
            if footprints is not None:
                with self.timer("measure", metadata):
                    tables.append(self._measure(exposure, detections, footprints, sign))
        catalog = _stack(tables)
        catalog["id"] = np.arange(1, len(catalog) + 1, dtype=np.int64)
        catalog.meta["units"] = exposure.units
        metadata.add("n_sources", len(catalog))
        return MeasurementResult(catalog=catalog, metadata=metadata)

    def _measure(
        self, exposure: Exposure, detections: DetectionResult, footprints: Footprints, sign: float
    ) -> Table:
        c, bbox, psf = self.config, exposure.bbox, exposure.psf
        fwhm = detections.psf_sigma * SIGMA_TO_FWHM
        ax, ay = peak_centroids(sign * detections.smoothed, footprints.peak_x, footprints.peak_y)
        size = c.stamp_size or min(psf.kernel_size, max(15, 2 * math.ceil(2.0 * fwhm) + 1))
        stamps = cut_stamps(exposure.image, exposure.variance, exposure.mask.array, ax, ay, size)
        mask = exposure.mask
        bad_bits = mask.bitmask(c.psf_flux_bad_planes, ignore_missing=True)
        moment_size = min(size, 2 * math.ceil(2.5 * fwhm) + 1)
        mx, my, ixx, iyy, ixy = stamp_moments(
            _signed(stamps, sign), detections.psf_sigma, bad_bits, moment_size
        )
        # The windowed centroid is unbiased; the parabola through the smoothed
        # peak is the fallback where it fails.
        refined = np.isfinite(mx) & np.isfinite(my) & (np.hypot(mx, my) < 1.5)
        ax = np.where(refined, stamps.x0 + np.nan_to_num(mx), ax)
        ay = np.where(refined, stamps.y0 + np.nan_to_num(my), ay)
        x, y = ax + bbox.x0, ay + bbox.y0
        fluxes = psf_fluxes(stamps, psf, x, y, bad_bits)
        radius = c.aperture_radius or 3.0 * fwhm
        bad = mask.get(c.psf_flux_bad_planes, ignore_missing=True)
        ap_flux, ap_err, truncated = aperture_fluxes(
            exposure.image, exposure.variance, bad, ax, ay, radius
        )
        table = Table()
        table["parent"] = footprints.peak_footprint.astype(np.int64) * (1 if sign > 0 else -1)
        table["x"], table["y"] = x * u.pix, y * u.pix
        if exposure.wcs is not None:
            ra, dec = exposure.pixel_to_sky(x, y)
            table["ra"], table["dec"] = ra * u.deg, dec * u.deg
        flux_unit = u.nJy if exposure.units == "nJy" else u.ct
        for name, values in (("ixx", ixx), ("iyy", iyy), ("ixy", ixy)):
            table[name] = values * u.pix**2
        table["psf_flux"] = fluxes["psf_flux"] * flux_unit
        table["psf_flux_err"] = fluxes["psf_flux_err"] * flux_unit
        table["psf_chi2"] = fluxes["psf_chi2"]
        table["ap_flux"], table["ap_flux_err"] = ap_flux * flux_unit, ap_err * flux_unit
        with np.errstate(divide="ignore", invalid="ignore"):
            table["snr"] = sign * fluxes["psf_flux"] / fluxes["psf_flux_err"]
        table["significance"] = footprints.peak_significance
        table["is_negative"] = np.full(len(table), sign < 0)
        n_peaks = footprints.n_peaks_per_footprint()[footprints.peak_footprint]
        table["n_peaks"] = n_peaks
        self._add_flags(table, stamps, mask, truncated, n_peaks)
        return table

    def _add_flags(
        self, table: Table, stamps, mask: Mask, truncated: np.ndarray, n_peaks: np.ndarray
    ) -> None:
        half = stamps.mask.shape[1] // 2
        core = stamps.mask[:, half - 1 : half + 2, half - 1 : half + 2]
        edge_bits = mask.bitmask(self.config.edge_planes, ignore_missing=True)
        table["flag_edge"] = (
            (~stamps.inside.all(axis=(1, 2)))
            | truncated
            | np.any(stamps.mask & edge_bits, axis=(1, 2))
        )
        table["flag_no_data"] = np.any(
            stamps.mask & mask.bitmask("NO_DATA", ignore_missing=True), axis=(1, 2)
        )
        table["flag_blended"] = n_peaks > 1
        for name, plane in _CENTER_FLAGS.items():
            bits = mask.bitmask(plane, ignore_missing=True)
            table[f"flag_{name}"] = np.any(core & bits, axis=(1, 2))


def _signed(stamps, sign: float):
    if sign > 0:
        return stamps
    from dataclasses import replace

    return replace(stamps, image=-stamps.image)


def _stack(tables: list[Table]) -> Table:
    if not tables:
        return Table()
    if len(tables) == 1:
        return tables[0]
    from astropy.table import vstack

    return vstack(tables)
