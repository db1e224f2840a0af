"""DetectAndMeasureTask: DIA sources of a difference image, with dipoles merged and fitted."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Literal, NamedTuple

import numpy as np
from astropy import units as u
from astropy.table import Table, vstack
from scipy import fft
from scipy.optimize import least_squares
from scipy.spatial import cKDTree

from ..detection import (
    DetectionResult,
    SourceDetectionConfig,
    SourceDetectionTask,
    SourceMeasurementConfig,
    SourceMeasurementTask,
    aperture_fluxes,
    peak_centroids,
    psf_fluxes,
)
from ..errors import AlgorithmError, InvalidExposureError
from ..image import Box, Exposure, Mask, MaskedImage
from ..math import cut_stamps
from ..psf import Psf
from ..task import Config, Task, TaskMetadata, TaskResult, config_field

__all__ = [
    "DetectAndMeasureConfig",
    "DetectAndMeasureResult",
    "DetectAndMeasureTask",
    "DipoleFit",
    "DipoleStamp",
    "associate_dipoles",
    "fit_dipole",
    "flag_column",
]

#: Flag columns of :class:`~skydiff.detection.SourceMeasurementTask` named after a mask plane.
_MEASURED_PLANE_FLAGS = {
    "SAT": "flag_saturated", "INTRP": "flag_interpolated", "CR": "flag_cr", "BAD": "flag_bad",
    "SUSPECT": "flag_suspect", "NO_DATA": "flag_no_data", "EDGE": "flag_edge",
}  # fmt: skip
_FLAG_PLANES = (
    "SAT", "BAD", "NO_DATA", "EDGE", "INTRP", "CR", "SUSPECT", "HIGH_VARIANCE", "SAT_TEMPLATE",
    "STREAK",
)  # fmt: skip
_BAD_FLAGS = (
    "flag_no_data", "flag_edge", "flag_saturated", "flag_bad", "flag_cr", "flag_sat_template",
    "flag_streak",
)  # fmt: skip
_OTHER_FLAGS = ("flag_blended", "flag_dipole_fit_failed")
#: Float columns ``dipole_<name>`` by unit ("flux": the difference's flux unit).
_DIPOLE_COLUMNS = {
    "pix": ("pos_x", "pos_y", "neg_x", "neg_y", "separation", "separation_err"),
    "flux": ("pos_flux", "pos_flux_err", "neg_flux", "neg_flux_err"),
    "deg": ("angle",),
    "": ("flux_ratio", "chi2"),
}


def flag_column(plane: str) -> str:
    """Name of the flag column set when mask plane ``plane`` is at a source's centre."""
    return _MEASURED_PLANE_FLAGS.get(plane, f"flag_{plane.lower()}")


@dataclass(frozen=True)
class DetectAndMeasureConfig(Config):
    """Configuration of :class:`DetectAndMeasureTask` (LSST ``DetectAndMeasureConfig``)."""

    detection: SourceDetectionConfig = config_field(
        doc="Detection: 5 sigma, both polarities, NO_DATA, BAD and EDGE pixels ignored.",
        factory=lambda: SourceDetectionConfig(
            threshold=5.0, polarity="both", ignored_planes=("NO_DATA", "BAD", "EDGE")
        ),
    )
    measurement: SourceMeasurementConfig = config_field(
        doc="Measurement of every detected peak.", factory=SourceMeasurementConfig
    )
    dipole_radius: float = config_field(
        1.5, doc="Opposite-sign peaks closer than this many PSF FWHM form a dipole."
    )
    dipole_min_lobe_snr: float = config_field(
        5.0, doc="Minimum detection significance (S/N) of each lobe of a dipole [minSn]."
    )
    fit_dipoles: bool = config_field(
        True, doc="Fit two PSFs to each dipole; else keep the lobes' peaks and PSF fluxes."
    )
    dipole_fit_pre_subtraction: bool = config_field(
        True,
        doc="Also fit the science (positive lobe) and matched template (negative lobe) "
        "when given, which pins down the lobe positions of close pairs.",
    )
    flag_planes: tuple[str, ...] = config_field(
        _FLAG_PLANES, doc="Planes in the 3x3 pixels at a source's centre that flag it."
    )
    bad_flags: tuple[str, ...] = config_field(
        _BAD_FLAGS, doc="Flag columns any of which makes a source unreliable (is_good False)."
    )
    exclude_planes: tuple[str, ...] = config_field(
        (), doc="Sources with any of these planes in their 3x3 centre pixels are dropped."
    )

    def validate(self) -> None:
        self.check(self.dipole_radius > 0, "dipole_radius", "must be > 0")
        self.check(self.dipole_min_lobe_snr >= 0, "dipole_min_lobe_snr", "must be >= 0")
        known = {flag_column(p) for p in (*self.flag_planes, *_MEASURED_PLANE_FLAGS)}
        known.update(_OTHER_FLAGS)
        self.check(set(self.bad_flags) <= known, "bad_flags", f"must be among {sorted(known)}")


@dataclass(frozen=True)
class DetectAndMeasureResult(TaskResult):
    """Result of :meth:`DetectAndMeasureTask.run`.

    Attributes
    ----------
    dia_sources : astropy.table.Table
        The DIA sources (columns in :class:`DetectAndMeasureTask`).
    difference : Exposure
        The difference with a new mask carrying ``DETECTED`` and
        ``DETECTED_NEGATIVE`` (LSST ``subtractedMeasuredExposure``). Its image
        and variance arrays are the input's, not copies: copy before writing.
    """

    dia_sources: Table
    difference: Exposure


class DetectAndMeasureTask(Task):
    """Detect, measure and flag the sources of a difference image; merge and fit dipoles.

    Peaks of both signs are detected on the background-free difference and
    measured (:class:`~skydiff.detection.SourceMeasurementTask`). A positive
    and a negative peak of the PSF-smoothed image closer than
    ``dipole_radius`` FWHM (closest first, each peak in one pair at most;
    an unresolved dipole's peaks lie 1.2 FWHM apart) form one dipole, as
    LSST merges overlapping footprints: one row, fitted with a positive and
    a negative PSF (:func:`fit_dipole`). The difference alone constrains
    only flux times separation of an unresolved dipole; given the science
    and matched template, the fit also models the source in each, which
    fixes the lobe positions.

    Columns (positions in parent pixels; [flux] is the difference's unit, nJy or ct):

    - ``id``; ``parent``, footprint number signed by polarity (the brighter lobe's).
    - ``x, y`` [pix] (dipoles: midpoint of the lobes); ``ra, dec`` [deg] with a WCS.
    - ``ixx, iyy, ixy`` [pix2], adaptive moments (NaN for dipoles).
    - ``psf_flux, psf_flux_err`` [flux], PSF fit at ``x, y``: < 0 for fading
      sources, the net flux of dipoles; ``psf_chi2``; ``ap_flux, ap_flux_err`` [flux].
    - ``snr``, S/N of ``psf_flux`` in the source's polarity (``|psf_flux| / err``
      for dipoles); ``significance``, detection S/N (the larger lobe's); ``is_negative``
      (net flux < 0 for dipoles); ``n_peaks`` in the footprint.
    - ``is_dipole``; ``dipole_id``, 1, 2, ... (0 for other sources); the rest NaN
      for other sources: ``dipole_pos_x, dipole_pos_y, dipole_neg_x, dipole_neg_y``
      [pix]; ``dipole_pos_flux(_err), dipole_neg_flux(_err)`` [flux], the negative
      lobe's < 0, errors at fixed positions; ``dipole_separation(_err)`` [pix];
      ``dipole_angle`` [deg], of the negative-to-positive vector from +x towards +y;
      ``dipole_flux_ratio``, positive / -negative lobe flux; ``dipole_chi2``, of the fit.
    - ``science_psf_flux(_err), template_psf_flux(_err)`` [flux], forced PSF fluxes
      at ``x, y`` (NaN when those images are not given).
    - ``flag_*``: the measurement's (ORed over lobes); ``flag_<plane>`` of
      ``flag_planes`` at the centre (:func:`flag_column`); ``flag_dipole_fit_failed``
      (no fit: the lobes are the peaks, with their PSF fluxes). ``is_good``: no
      ``bad_flags`` set.

    ``meta`` holds ``visit``, ``detector``, ``band`` and ``units``.
    """

    ConfigClass = DetectAndMeasureConfig
    _DefaultName = "detect_and_measure"

    def __init__(self, config: DetectAndMeasureConfig | None = None, **kwargs):
        super().__init__(config, **kwargs)
        self.make_subtask("detection", SourceDetectionTask, self.config.detection)
        self.make_subtask("measurement", SourceMeasurementTask, self.config.measurement)

    def run(
        self,
        difference: Exposure,
        *,
        science: Exposure | None = None,
        matched_template: Exposure | None = None,
    ) -> DetectAndMeasureResult:
        """Detect and measure DIA sources; no input is modified.

        Parameters
        ----------
        difference : Exposure
            Background-free difference image with a PSF and a variance plane.
        science, matched_template : Exposure, optional
            The images subtracted (same box and units), for forced PSF
            photometry and dipole fits.

        Returns
        -------
        DetectAndMeasureResult
            ``dia_sources``, ``difference`` (with detection planes) and ``metadata``.
        """
        _check_inputs(difference, science, matched_template)
        metadata = self.new_metadata()
        detections = self.detection.run(difference)
        mask = difference.mask.copy()
        detections.set_mask_planes(mask)
        masked = MaskedImage(difference.image, mask, difference.variance, bbox=difference.bbox)
        output = difference.replace(masked_image=masked)
        measured = self.measurement.run(output, detections)
        for child in (detections.metadata, measured.metadata):
            metadata.add_child(child)
        lobes = _with_extra_columns(measured.catalog, detections, difference.bbox)
        fwhm = _fwhm(difference.psf, difference)
        images = (output, science, matched_template)
        with self.timer("dipoles", metadata):
            table = self._merge_dipoles(lobes, fwhm, images)
        for name, image in (("science", science), ("template", matched_template)):
            if image is not None:
                x, y = np.asarray(table["x"]), np.asarray(table["y"])
                fluxes = self._forced_psf(image, x, y, difference.psf)
                table[f"{name}_psf_flux"][:] = fluxes["psf_flux"]
                table[f"{name}_psf_flux_err"][:] = fluxes["psf_flux_err"]
        table = _finish_table(self._flag(table, mask, metadata), difference)
        self._record(table, len(lobes), fwhm, metadata)
        return DetectAndMeasureResult(dia_sources=table, difference=output, metadata=metadata)

    def _merge_dipoles(self, lobes: Table, fwhm: float, images: tuple) -> Table:
        """Unpaired sources, then one row per dipole."""
        c = self.config
        negative = np.asarray(lobes["is_negative"])
        eligible = np.asarray(lobes["significance"]) >= c.dipole_min_lobe_snr
        pos, neg = np.flatnonzero(~negative & eligible), np.flatnonzero(negative & eligible)
        peaks = np.column_stack([lobes["peak_x"], lobes["peak_y"]])
        i, j = associate_dipoles(peaks[pos], peaks[neg], c.dipole_radius * fwhm)
        pos, neg = pos[i], neg[j]
        paired = np.zeros(len(lobes), bool)
        paired[pos] = paired[neg] = True
        snr = np.asarray(lobes["snr"])
        rows = lobes[np.where(snr[pos] >= snr[neg], pos, neg)]
        for name in [n for n in lobes.colnames if n.startswith("flag_")]:
            rows[name] = lobes[name][pos] | lobes[name][neg]
        for name in ("significance", "n_peaks"):
            rows[name] = np.maximum(lobes[name][pos], lobes[name][neg])
        if not c.dipole_fit_pre_subtraction:
            images = (images[0], None, None)
        self._fill_dipoles(rows, lobes[pos], lobes[neg], fwhm, images)
        return vstack([lobes[~paired], rows], metadata_conflicts="silent")

    def _fill_dipoles(
        self, rows: Table, pos: Table, neg: Table, fwhm: float, images: tuple
    ) -> None:
        """Dipole columns from the fits (or the lobes); net fluxes at the midpoints."""
        fits = self._fit_pairs(pos, neg, fwhm, images)
        values = {k: np.array([getattr(f, k) for f in fits], float) for k in _FIT_VALUES}
        failed = ~np.array([f.success for f in fits], bool)
        for lobe, table in (("pos", pos), ("neg", neg)):
            for key in ("x", "y", "flux", "flux_err"):
                column = f"peak_{key}" if len(key) == 1 else f"psf_{key}"
                values[f"{lobe}_{key}"][failed] = np.asarray(table[column])[failed]
        dx, dy = values["pos_x"] - values["neg_x"], values["pos_y"] - values["neg_y"]
        values["separation"][failed] = np.hypot(dx, dy)[failed]
        values["angle"] = np.degrees(np.arctan2(dy, dx))
        values["flux_ratio"] = values["pos_flux"] / -values["neg_flux"]
        for key, value in values.items():
            rows[f"dipole_{key}"][:] = value
        rows["flag_dipole_fit_failed"][:] = failed
        rows["is_dipole"][:] = True
        rows["dipole_id"][:] = np.arange(1, len(rows) + 1)
        x, y = 0.5 * (values["pos_x"] + values["neg_x"]), 0.5 * (values["pos_y"] + values["neg_y"])
        self._measure_at(rows, images[0], x, y)

    def _fit_pairs(self, pos: Table, neg: Table, fwhm: float, images: tuple) -> list[DipoleFit]:
        """A :func:`fit_dipole` per pair (parent pixels), on stamps of the images given."""
        if not self.config.fit_dipoles or len(pos) == 0:
            return [_NO_FIT] * len(pos)
        bbox = images[0].bbox
        start = np.array([pos["peak_x"], pos["peak_y"], neg["peak_x"], neg["peak_y"]]).T
        centre = np.rint(0.5 * (start[:, :2] + start[:, 2:])) - [bbox.x0, bbox.y0]
        half = math.ceil(0.5 * self.config.dipole_radius * fwhm + 2.0 * fwhm)
        stamps = [
            _dipole_stamps(image, kind, centre, 2 * half + 1, images[0].psf, self._bad_planes)
            for image, kind in zip(images, ("difference", "science", "template"), strict=True)
            if image is not None
        ]
        fits = []
        for k, (x0, y0) in enumerate(centre + np.array([bbox.x0, bbox.y0])):
            fit = fit_dipole(
                [s[k] for s in stamps], start[k] - (x0, y0, x0, y0), max_offset=half - 1
            )
            moved = {"pos_x": fit.pos_x + x0, "neg_x": fit.neg_x + x0}
            fits.append(replace(fit, **moved, pos_y=fit.pos_y + y0, neg_y=fit.neg_y + y0))
        return fits

    @property
    def _bad_planes(self) -> tuple[str, ...]:
        return self.config.measurement.psf_flux_bad_planes

    def _measure_at(self, rows: Table, exposure: Exposure, x: np.ndarray, y: np.ndarray) -> None:
        """Move ``rows`` to ``x, y``; PSF and aperture fluxes there, no moments."""
        rows["x"][:], rows["y"][:] = x, y
        if "ra" in rows.colnames:
            rows["ra"][:], rows["dec"][:] = exposure.pixel_to_sky(x, y)
        fluxes = self._forced_psf(exposure, x, y)
        for name in ("psf_flux", "psf_flux_err", "psf_chi2"):
            rows[name][:] = fluxes[name]
        bad = exposure.mask.get(self._bad_planes, ignore_missing=True)
        radius = self.config.measurement.aperture_radius or 3.0 * _fwhm(exposure.psf, exposure)
        ax, ay = x - exposure.bbox.x0, y - exposure.bbox.y0
        ap_flux, ap_err, _ = aperture_fluxes(exposure.image, exposure.variance, bad, ax, ay, radius)
        rows["ap_flux"][:], rows["ap_flux_err"][:] = ap_flux, ap_err
        for name in ("ixx", "iyy", "ixy"):
            rows[name][:] = np.nan
        with np.errstate(divide="ignore", invalid="ignore"):
            rows["snr"][:] = np.abs(fluxes["psf_flux"]) / fluxes["psf_flux_err"]
        rows["is_negative"][:] = fluxes["psf_flux"] < 0

    def _forced_psf(
        self, exposure: Exposure, x: np.ndarray, y: np.ndarray, psf: Psf | None = None
    ) -> dict:
        """PSF fluxes at fixed parent positions (``psf`` if ``exposure`` has none)."""
        psf = exposure.psf or psf
        size = self.config.measurement.stamp_size or min(
            psf.kernel_size, max(15, 2 * math.ceil(2.0 * _fwhm(psf, exposure)) + 1)
        )
        ax, ay = x - exposure.bbox.x0, y - exposure.bbox.y0
        stamps = cut_stamps(exposure.image, exposure.variance, exposure.mask.array, ax, ay, size)
        bad_bits = exposure.mask.bitmask(self._bad_planes, ignore_missing=True)
        return psf_fluxes(stamps, psf, x, y, bad_bits)

    def _flag(self, table: Table, mask: Mask, metadata: TaskMetadata) -> Table:
        """Centre-plane flags, ``is_good``, and removal of ``exclude_planes`` sources."""
        c = self.config
        core = _core_bits(mask, np.asarray(table["x"]), np.asarray(table["y"]))
        for plane in c.flag_planes:
            column = flag_column(plane)
            hit = (core & mask.bitmask(plane, ignore_missing=True)) != 0
            table[column] = (table[column] | hit) if column in table.colnames else hit
        bad = np.zeros(len(table), bool)
        for name in c.bad_flags:
            bad |= np.asarray(table[name])
        table["is_good"] = ~bad
        excluded = (core & mask.bitmask(c.exclude_planes, ignore_missing=True)) != 0
        metadata.add("n_excluded", int(excluded.sum()))
        return table[~excluded]

    def _record(self, table: Table, n_peaks: int, fwhm: float, metadata: TaskMetadata) -> None:
        dipole, negative = np.asarray(table["is_dipole"]), np.asarray(table["is_negative"])
        counts = {
            "n_sources": len(table),
            "n_positive": int(np.sum(~dipole & ~negative)),
            "n_negative": int(np.sum(~dipole & negative)),
            "n_dipoles": int(dipole.sum()),
            "n_flagged": int(np.sum(~np.asarray(table["is_good"]))),
            "n_dipole_fit_failed": int(np.sum(np.asarray(table["flag_dipole_fit_failed"]))),
            "n_peaks_measured": n_peaks,
            "psf_fwhm": fwhm,
            "dipole_radius_pixels": self.config.dipole_radius * fwhm,
        }
        for key, value in counts.items():
            metadata.add(key, value)
        self.log.info("DIA sources: %s", counts)


# -- dipoles (array layer) ------------------------------------------------------------------


def associate_dipoles(
    positive: np.ndarray, negative: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(i_positive, i_negative)`` of closest-first, one-to-one pairs within ``radius``.

    ``positive`` and ``negative`` are ``(n, 2)`` positions.
    """
    pairs = []
    if len(positive) and len(negative):
        tree = cKDTree(positive)
        near = tree.sparse_distance_matrix(cKDTree(negative), radius, output_type="ndarray")
        used_pos, used_neg = set(), set()
        for i, j in near[["i", "j"]][np.argsort(near["v"], kind="stable")].tolist():
            if i not in used_pos and j not in used_neg:
                used_pos.add(i)
                used_neg.add(j)
                pairs.append((i, j))
    i, j = np.array(pairs, np.int64).reshape(-1, 2).T
    return i, j


class DipoleStamp(NamedTuple):
    """Pixels of one image around a dipole, for :func:`fit_dipole`.

    ``kind`` says what the image shows: ``"difference"`` (positive minus
    negative lobe), ``"science"`` (the positive lobe's source on a constant)
    or ``"template"`` (the negative lobe's source on a constant). ``weight``
    is the inverse variance, 0 for pixels to ignore (whose ``data`` must be
    finite); ``kernel`` the odd-sized, unit-sum PSF image.
    """

    kind: Literal["difference", "science", "template"]
    data: np.ndarray
    weight: np.ndarray
    kernel: np.ndarray


@dataclass(frozen=True)
class DipoleFit:
    """Fitted lobes of a dipole: positions [pix], fluxes, separation and reduced chi^2."""

    pos_x: float
    pos_y: float
    neg_x: float
    neg_y: float
    pos_flux: float
    pos_flux_err: float
    neg_flux: float
    neg_flux_err: float
    separation: float
    separation_err: float
    chi2: float
    success: bool


_NO_FIT = DipoleFit(*[math.nan] * 11, success=False)
_FIT_VALUES = tuple(f.name for f in fields(DipoleFit) if f.name != "success")


def fit_dipole(stamps: Sequence[DipoleStamp], start: np.ndarray, *, max_offset: float) -> DipoleFit:
    """Positive and negative PSF lobes least-squares fitted to one or more stamps.

    Positions ``(pos_x, pos_y, neg_x, neg_y)``, relative to the stamps'
    centre pixel and within ``max_offset`` of it, are fitted from ``start``;
    the fluxes (and constants of science and template stamps) are solved
    linearly at each trial (variable projection). The separation error
    comes from the Jacobian; flux errors hold the positions fixed.
    """
    margin = math.ceil(max_offset) + 2
    prepared = [(s, *_psf_spectrum(s.kernel, s.data.shape[0], margin)) for s in stamps]

    def solve(p: np.ndarray) -> list[tuple]:
        return [_linear_solve(s, _lobes(spectrum, crop, p)) for s, spectrum, crop in prepared]

    def residuals(p: np.ndarray) -> np.ndarray:
        return np.concatenate([r for _, r, _ in solve(p)])

    x0 = np.clip(np.asarray(start, float), -max_offset, max_offset)
    fit = least_squares(residuals, x0, bounds=(-max_offset, max_offset), diff_step=1e-3)
    coef, _, design = solve(fit.x)[0]
    flux_err = np.sqrt(np.diag(np.linalg.pinv(design.T @ design)))
    d = fit.x[:2] - fit.x[2:]
    separation = float(np.hypot(*d))
    grad = np.concatenate([d, -d]) / max(separation, 1e-12)
    separation_err = float(np.sqrt(grad @ np.linalg.pinv(fit.jac.T @ fit.jac) @ grad))
    n_data = sum(int(np.count_nonzero(s.weight)) for s in stamps)
    chi2 = 2.0 * fit.cost / max(n_data - 4 - 2 * len(stamps), 1)
    ok = bool(fit.success and coef[0] > 0 and coef[1] > 0 and np.all(np.isfinite(flux_err)))
    return DipoleFit(
        *fit.x[:2], *fit.x[2:], coef[0], flux_err[0], -coef[1], flux_err[1],
        separation, separation_err, float(chi2), ok,
    )  # fmt: skip


def _psf_spectrum(kernel: np.ndarray, size: int, margin: int) -> tuple[np.ndarray, slice]:
    """FFT of ``kernel`` centred on a canvas with ``margin`` to shift into; the crop to ``size``."""
    n = fft.next_fast_len(max(size, kernel.shape[0]) + 2 * margin, real=True)
    half, centre = kernel.shape[0] // 2, n // 2
    canvas = np.zeros((n, n))
    canvas[centre - half : centre + half + 1, centre - half : centre + half + 1] = kernel
    return fft.rfft2(canvas), slice(centre - size // 2, centre + size // 2 + 1)


def _lobes(spectrum: np.ndarray, crop: slice, offsets: np.ndarray) -> np.ndarray:
    """The PSF moved to the ``(pos_x, pos_y, neg_x, neg_y)`` offsets: ``(2, size**2)``."""
    n = spectrum.shape[0]
    dx, dy = offsets[0::2, None, None], offsets[1::2, None, None]
    phase = dy * fft.fftfreq(n)[:, None] + dx * fft.rfftfreq(n)[None, :]
    shifted = fft.irfft2(spectrum * np.exp(-2j * np.pi * phase), s=(n, n))
    return shifted[:, crop, crop].reshape(2, -1)


def _linear_solve(stamp: DipoleStamp, lobes: np.ndarray) -> tuple:
    """Weighted linear fit of the lobe models: ``(coefficients, residuals, design)``."""
    pos, neg = lobes
    one = np.ones_like(pos)
    columns = {"difference": (pos, -neg), "science": (pos, one), "template": (neg, one)}
    root_w = np.sqrt(stamp.weight).ravel()
    design = np.column_stack(columns[stamp.kind]) * root_w[:, None]
    target = stamp.data.ravel() * root_w
    coef = np.linalg.lstsq(design, target, rcond=None)[0]
    return coef, target - design @ coef, design


# -- helpers --------------------------------------------------------------------------------


def _fwhm(psf: Psf, exposure: Exposure) -> float:
    return float(psf.fwhm(*exposure.bbox.center))


def _check_inputs(difference: Exposure, *others: Exposure | None) -> None:
    if difference.psf is None:
        raise InvalidExposureError(f"difference {difference.describe()} has no PSF")
    for other in [o for o in others if o is not None]:
        if other.bbox != difference.bbox or other.units != difference.units:
            raise InvalidExposureError(
                f"{other.describe()} ({other.units}) must cover the difference's box "
                f"{difference.bbox} in its units ({difference.units})"
            )


def _with_extra_columns(catalog: Table, detections: DetectionResult, bbox: Box) -> Table:
    """The measurement catalogue with its smoothed-image peaks, dipole and forced-flux columns."""
    table = catalog.copy()
    n, flux_unit = len(table), table["psf_flux"].unit
    table["peak_x"], table["peak_y"] = _peak_positions(detections, bbox, catalog).T
    table["is_dipole"], table["dipole_id"] = np.zeros(n, bool), np.zeros(n, np.int64)
    for unit, names in _DIPOLE_COLUMNS.items():
        for name in names:
            scale = flux_unit if unit == "flux" else (u.Unit(unit) if unit else 1.0)
            table[f"dipole_{name}"] = np.full(n, np.nan) * scale
    for name in ("science", "template"):
        table[f"{name}_psf_flux"] = table[f"{name}_psf_flux_err"] = np.full(n, np.nan) * flux_unit
    table["flag_dipole_fit_failed"] = np.zeros(n, bool)
    return table


def _peak_positions(detections: DetectionResult, bbox: Box, catalog: Table) -> np.ndarray:
    """``(n, 2)`` parent positions of the smoothed-image peaks, in the catalogue's order."""
    peaks, negative = [np.zeros((0, 2))], [np.zeros(0, bool)]
    for footprints, sign in ((detections.positive, 1.0), (detections.negative, -1.0)):
        if footprints is not None:
            xy = peak_centroids(sign * detections.smoothed, footprints.peak_x, footprints.peak_y)
            peaks.append(np.column_stack(xy) + np.array([bbox.x0, bbox.y0]))
            negative.append(np.full(footprints.peak_x.size, sign < 0))
    if not np.array_equal(np.concatenate(negative), np.asarray(catalog["is_negative"])):
        raise AlgorithmError("the measurement catalogue does not follow the detected peaks")
    return np.concatenate(peaks)


def _dipole_stamps(
    image: Exposure, kind: str, centre: np.ndarray, size: int, psf: Psf, bad_planes: tuple
) -> list[DipoleStamp]:
    """A :class:`DipoleStamp` of ``image`` at each centre (array pixels); ``psf`` if it has none."""
    psf = image.psf or psf
    stamps = cut_stamps(image.image, image.variance, image.mask.array, *centre.T, size)
    bad = image.mask.bitmask(bad_planes, ignore_missing=True)
    good = stamps.inside & ((stamps.mask & bad) == 0) & np.isfinite(stamps.image)
    good &= np.isfinite(stamps.variance) & (stamps.variance > 0)
    weight = np.where(good, 1.0 / np.where(good, stamps.variance, 1.0), 0.0)
    data = np.where(good, stamps.image, 0.0)
    x0, y0 = image.bbox.x0, image.bbox.y0
    kernels = [psf.kernel_image(x + x0, y + y0) for x, y in centre]
    return [DipoleStamp(kind, d, w, k) for d, w, k in zip(data, weight, kernels, strict=True)]


def _core_bits(mask: Mask, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """OR of the mask bits in the 3x3 pixels around each parent position."""
    height, width = mask.array.shape
    offsets = np.arange(-1, 2)
    rows = np.rint(y - mask.bbox.y0).astype(np.int64)[:, None, None] + offsets[None, :, None]
    cols = np.rint(x - mask.bbox.x0).astype(np.int64)[:, None, None] + offsets[None, None, :]
    core = mask.array[np.clip(rows, 0, height - 1), np.clip(cols, 0, width - 1)]
    return np.bitwise_or.reduce(core.reshape(len(x), 9), axis=1)


def _finish_table(table: Table, difference: Exposure) -> Table:
    """Number the rows, put ``id`` first, drop the peaks and record where the sources are from."""
    table["id"] = np.arange(1, len(table) + 1, dtype=np.int64)
    table = table[["id", *[n for n in table.colnames if n not in ("id", "peak_x", "peak_y")]]]
    info = difference.visit_info
    table.meta.update(visit=info.visit, detector=info.detector, band=difference.band)
    table.meta["units"] = difference.units
    return table
