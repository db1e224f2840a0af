"""CharacterizeTask: background, variance scale, detection, measurement and PSF of an exposure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from astropy.table import Table
from scipy.spatial import cKDTree

from ..background import BackgroundList, SubtractBackgroundConfig, SubtractBackgroundTask
from ..detection import (
    SourceDetectionConfig,
    SourceDetectionTask,
    SourceMeasurementConfig,
    SourceMeasurementTask,
)
from ..errors import AlgorithmError
from ..image import Exposure, MaskedImage
from ..psf import SIGMA_TO_FWHM, GaussianPsf, Psf
from ..task import Config, Task, TaskMetadata, TaskResult, config_field
from ._psf_determiner import PsfDeterminerConfig, PsfDeterminerTask
from ._scale_variance import ScaleVarianceConfig, ScaleVarianceTask
from ._star_selector import StarSelectorConfig, StarSelectorTask, stellar_locus

__all__ = ["CharacterizeConfig", "CharacterizeResult", "CharacterizeTask"]


@dataclass(frozen=True)
class CharacterizeConfig(Config):
    """Configuration of :class:`CharacterizeTask` (LSST ``CharacterizeImageTask``)."""

    background: SubtractBackgroundConfig = config_field(
        doc="Background subtraction.", factory=SubtractBackgroundConfig
    )
    detection: SourceDetectionConfig = config_field(
        doc="Source detection.", factory=SourceDetectionConfig
    )
    measurement: SourceMeasurementConfig = config_field(
        doc="Source measurement.", factory=SourceMeasurementConfig
    )
    star_selector: StarSelectorConfig = config_field(
        doc="PSF star selection.", factory=StarSelectorConfig
    )
    psf_determiner: PsfDeterminerConfig = config_field(
        doc="PSF model fitting.", factory=PsfDeterminerConfig
    )
    scale_variance: ScaleVarianceConfig = config_field(
        doc="Variance-plane scaling.", factory=ScaleVarianceConfig
    )
    do_scale_variance: bool = config_field(
        True, doc="Rescale the variance plane to the measured pixel noise."
    )
    fit_psf: Literal["missing", "always", "never"] = config_field(
        "missing", doc="Fit a PSF model when the exposure has none, always, or never."
    )
    psf_iterations: int = config_field(
        2, doc="Detect-measure-fit passes; each uses the previous PSF [psfIterations]."
    )
    initial_fwhm: float | None = config_field(
        None,
        doc="Initial PSF FWHM in pixels; None estimates it from the sizes of the "
        "brightest compact sources.",
    )

    def validate(self) -> None:
        self.check(self.psf_iterations >= 1, "psf_iterations", "must be >= 1")
        self.check(
            self.initial_fwhm is None or self.initial_fwhm > 0,
            "initial_fwhm",
            "must be None or > 0",
        )


@dataclass(frozen=True)
class CharacterizeResult(TaskResult):
    """Result of :meth:`CharacterizeTask.run`.

    Attributes
    ----------
    exposure : Exposure
        A background-subtracted copy with its PSF, rescaled variance and the
        ``DETECTED`` plane set.
    sources : astropy.table.Table
        Measured sources (see :class:`~skydiff.detection.SourceMeasurementTask`)
        with boolean ``psf_candidate`` and ``psf_used`` columns.
    background : BackgroundList
        What was subtracted.
    variance_factor : float
        Factor the variance plane was multiplied by (1 if not scaled).
    """

    exposure: Exposure
    sources: Table
    background: BackgroundList
    variance_factor: float


class CharacterizeTask(Task):
    """Make an exposure ready for differencing: background, noise, sources and PSF.

    Subtracts the background, re-estimating it with detected sources
    masked; rescales the variance plane; detects and measures sources; and,
    when the exposure has no PSF (or always, by configuration), selects
    isolated stars and fits a spatially varying pixel PSF, iterating
    detection, measurement and fitting ``psf_iterations`` times.
    """

    ConfigClass = CharacterizeConfig
    _DefaultName = "characterize"

    def __init__(self, config: CharacterizeConfig | None = None, **kwargs):
        super().__init__(config, **kwargs)
        c = self.config
        self.make_subtask("background", SubtractBackgroundTask, c.background)
        self.make_subtask("detection", SourceDetectionTask, c.detection)
        self.make_subtask("measurement", SourceMeasurementTask, c.measurement)
        self.make_subtask("star_selector", StarSelectorTask, c.star_selector)
        self.make_subtask("psf_determiner", PsfDeterminerTask, c.psf_determiner)
        self.make_subtask("scale_variance", ScaleVarianceTask, c.scale_variance)

    def run(self, exposure: Exposure) -> CharacterizeResult:
        """Characterize ``exposure`` (not modified); see the class description."""
        metadata = self.new_metadata()
        c = self.config
        fit = c.fit_psf == "always" or (c.fit_psf == "missing" and exposure.psf is None)
        work, background = self._subtract_background(exposure, None, exposure.psf, 1.0, metadata)
        psf = exposure.psf or self._initial_psf(work, metadata)
        work = work.replace(psf=psf)
        detected = self.detection.run(work).positive.mask
        work, background = self._subtract_background(exposure, detected, psf, 1.0, metadata)
        factor = self._variance_factor(work, detected, metadata)
        work.variance[...] *= np.float32(factor)
        stars = Table({"x": np.zeros(0), "y": np.zeros(0), "used": np.zeros(0, bool)})
        for iteration in range(c.psf_iterations if fit else 0):
            with self.timer(f"psf_iteration_{iteration}", metadata):
                detections = self.detection.run(work)
                work, background = self._subtract_background(
                    exposure, detections.positive.mask, work.psf, factor, metadata
                )
                psf, stars = self._fit_psf(work, detections, metadata)
                work = work.replace(psf=psf)
        sources = self._measure(work, metadata)
        if fit:
            sources["psf_candidate"] = _near(sources, stars)
            sources["psf_used"] = _near(sources, stars[stars["used"]])
        metadata.add("variance_factor", factor)
        metadata.add("n_sources", len(sources))
        metadata.add("psf_fwhm", float(work.psf.fwhm(*work.bbox.center)))
        return CharacterizeResult(
            exposure=work,
            sources=sources,
            background=background,
            variance_factor=factor,
            metadata=metadata,
        )

    # -- steps ----------------------------------------------------------------------------

    def _subtract_background(
        self,
        exposure: Exposure,
        detected: np.ndarray | None,
        psf: Psf | None,
        factor: float,
        metadata: TaskMetadata,
    ) -> tuple[Exposure, BackgroundList]:
        """Background-subtracted copy of ``exposure`` with ``detected`` pixels masked."""
        mask = exposure.mask.copy()  # only the mask: the pixels are copied once, by the task
        mask.clear(["DETECTED", "DETECTED_NEGATIVE"])
        if detected is not None:
            mask.set("DETECTED", detected)
        masked = MaskedImage(exposure.image, mask, exposure.variance, bbox=exposure.bbox)
        source = exposure.replace(masked_image=masked)
        result = self.background.run(source)
        metadata.add_child(result.metadata)
        work = result.exposure.replace(psf=psf)
        if factor != 1.0:
            work.variance[...] *= np.float32(factor)
        return work, result.background

    def _initial_psf(self, work: Exposure, metadata: TaskMetadata) -> Psf:
        """A Gaussian of the configured FWHM, or of the stellar locus of bright sources."""
        if self.config.initial_fwhm is not None:
            return GaussianPsf(self.config.initial_fwhm)
        guess = work.replace(psf=GaussianPsf(self.config.detection.default_fwhm))
        detections = self.detection.run(guess)
        catalog = self.measurement.run(guess, detections).catalog
        bright = np.asarray(catalog["snr"]) > 3 * self.config.detection.threshold
        bright &= ~np.asarray(catalog["flag_saturated"]) & ~np.asarray(catalog["is_negative"])
        locus = stellar_locus(np.asarray(catalog["ixx"] + catalog["iyy"])[bright])
        fwhm = self.config.detection.default_fwhm
        if np.isfinite(locus):
            fwhm = float(np.sqrt(locus / 2.0) * SIGMA_TO_FWHM)
        metadata.add("initial_fwhm", fwhm)
        self.log.info("initial PSF: Gaussian of FWHM %.2f px from %d sources", fwhm, bright.sum())
        return GaussianPsf(fwhm)

    def _variance_factor(
        self, work: Exposure, detected: np.ndarray, metadata: TaskMetadata
    ) -> float:
        if not self.config.do_scale_variance:
            return 1.0
        mask = work.mask.copy()
        mask.set("DETECTED", detected)
        with self.timer("scale_variance", metadata):
            factor, method = self.scale_variance.measure(
                MaskedImage(work.image, mask, work.variance, bbox=work.bbox)
            )
        metadata.add("variance_method", method)
        return factor

    def _fit_psf(self, work: Exposure, detections, metadata: TaskMetadata) -> tuple[Psf, Table]:
        """Measure, select stars and fit; returns the PSF and the stars (``x, y, used``)."""
        catalog = self.measurement.run(work, detections).catalog
        fwhm = float(work.psf.fwhm(*work.bbox.center))
        selection = self.star_selector.run(catalog, work.bbox, fwhm=fwhm)
        metadata.add_child(selection.metadata)
        stars = catalog[selection.selected]
        fitted = self.psf_determiner.run(work, stars)
        metadata.add_child(fitted.metadata)
        new_sigma = fitted.psf.sigma(*work.bbox.center)
        old_sigma = work.psf.sigma(*work.bbox.center)
        if not (np.isfinite(new_sigma) and 0.33 < new_sigma / old_sigma < 3.0):
            raise AlgorithmError(
                f"the PSF fitted to {len(stars)} stars of {work.describe()} has a width "
                f"{new_sigma:.3g} px against {old_sigma:.3g} px before: too few or unsuitable "
                "stars (blends, galaxies, artefacts)",
                metadata.values,
            )
        table = Table(
            {
                "x": np.asarray(stars["x"]),
                "y": np.asarray(stars["y"]),
                "used": np.asarray(fitted.used, bool),
            }
        )
        return fitted.psf, table

    def _measure(self, work: Exposure, metadata: TaskMetadata) -> Table:
        detections = self.detection.run(work)
        detections.set_mask_planes(work.mask)
        result = self.measurement.run(work, detections)
        metadata.add_child(result.metadata)
        return result.catalog


def _near(sources: Table, stars: Table, radius: float = 1.0) -> np.ndarray:
    """True for sources within ``radius`` pixels of one of ``stars``."""
    if len(stars) == 0 or len(sources) == 0:
        return np.zeros(len(sources), bool)
    tree = cKDTree(np.column_stack([np.asarray(stars["x"]), np.asarray(stars["y"])]))
    distance, _ = tree.query(np.column_stack([np.asarray(sources["x"]), np.asarray(sources["y"])]))
    return distance < radius
