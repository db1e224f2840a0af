"""PsfDeterminerTask: fit a spatially varying pixel-basis PSF to the stars of an exposure."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.table import Table

from ..errors import InsufficientSourcesError, InvalidParameterError
from ..image import Exposure
from ..math import n_polynomial_terms
from ..psf import PixelBasisPsf
from ..psf._fit import PsfModelFit, fit_psf_model
from ..psf._star_stamps import CentredStamps, centre_stamps
from ..task import Config, Task, TaskMetadata, TaskResult, config_field

__all__ = ["PsfDeterminerConfig", "PsfDeterminerResult", "PsfDeterminerTask"]

#: Mask planes that make a star's stamp unusable by default.
DEFAULT_PSF_BAD_PLANES = ("BAD", "SAT", "CR", "INTRP", "EDGE", "NO_DATA", "SUSPECT")


@dataclass(frozen=True)
class PsfDeterminerConfig(Config):
    """Configuration of :class:`PsfDeterminerTask` (LSST names in brackets)."""

    stamp_size: int = config_field(
        41,
        doc="Width of the star stamps and of the model's kernel, odd pixels; should hold "
        "4 FWHM or more on each side, as the outer two-pixel ring is the local sky [stampSize].",
    )
    spatial_order: int = config_field(
        2, doc="Order of the polynomial in position of every kernel pixel [spatialOrder]."
    )
    n_components: int | None = config_field(
        None,
        doc="Keep this many principal components of the fitted kernels (a smaller model); "
        "None keeps the per-pixel polynomials exactly.",
    )
    local_background: bool = config_field(
        True,
        doc="Subtract from each stamp the median of its outer two-pixel ring (neighbours "
        "excluded); the exposure must be background-subtracted either way.",
    )
    bad_mask_planes: tuple[str, ...] = config_field(
        DEFAULT_PSF_BAD_PLANES, doc="Mask planes of which one pixel makes a stamp unusable."
    )
    max_centroid_shift: float = config_field(
        2.0, doc="Drop stars whose measured centroid lies further than this from (x, y), pixels."
    )
    nsigma: float = config_field(
        4.0,
        doc="Reject stars whose chi^2/dof exceeds the clipped mean of all by this many "
        "clipped standard deviations.",
    )
    max_iter: int = config_field(5, doc="Rejection passes; 0 rejects no star.")
    pixel_nsigma: float | None = config_field(
        5.0,
        doc="Mask stamp pixels outside the core further than this many sigma from the model "
        "(neighbours, cosmic rays); None masks none.",
    )
    core_radius: float = config_field(
        2.0, doc="Radius, in FWHM, of the core of a stamp where no pixel is masked."
    )
    holdout_fraction: float = config_field(
        0.2,
        doc="Fraction of the stars held out of the fit to measure its chi^2/dof "
        "[reserve.fraction].",
    )
    min_stars: int = config_field(
        20, doc="Fewest stars to fit with, after the hold-out and the rejection."
    )
    seed: int = config_field(0, doc="Seed of the random choice of held-out stars [reserve.seed].")

    def validate(self) -> None:
        size = self.stamp_size
        self.check(size % 2 == 1 and 9 <= size <= 201, "stamp_size", "must be odd, 9 to 201")
        self.check(0 <= self.spatial_order <= 4, "spatial_order", "must be in 0..4")
        self.check(
            self.n_components is None or self.n_components >= 1,
            "n_components",
            "must be None or >= 1",
        )
        self.check(self.max_centroid_shift > 0, "max_centroid_shift", "must be > 0")
        self.check(self.nsigma > 0, "nsigma", "must be > 0")
        self.check(self.max_iter >= 0, "max_iter", "must be >= 0")
        self.check(
            self.pixel_nsigma is None or self.pixel_nsigma > 0, "pixel_nsigma", "must be > 0"
        )
        self.check(self.core_radius >= 0, "core_radius", "must be >= 0")
        self.check(0 <= self.holdout_fraction <= 0.5, "holdout_fraction", "must be in [0, 0.5]")
        n_terms = n_polynomial_terms(self.spatial_order)
        self.check(
            self.min_stars > n_terms,
            "min_stars",
            f"must exceed the {n_terms} polynomial terms of spatial_order {self.spatial_order}",
        )
        self.check(self.seed >= 0, "seed", "must be >= 0")


@dataclass(frozen=True)
class PsfDeterminerResult(TaskResult):
    """Result of :meth:`PsfDeterminerTask.run`.

    Attributes
    ----------
    psf : PixelBasisPsf
        The fitted model, kernels ``stamp_size`` pixels wide, polynomial over
        the exposure's box.
    stars : astropy.table.Table
        A copy of the input stars with ``calib_psf_candidate`` (usable stamp),
        ``calib_psf_used``, ``calib_psf_reserved`` (held out),
        ``calib_psf_rejected`` (outlier), ``psf_chi2_dof`` and
        ``psf_model_flux`` (amplitude of the model, image units).
    chi2_dof_fit, chi2_dof_holdout : float
        Chi^2 per degree of freedom of the used stars and of the held-out
        stars that are not outliers (NaN when none is held out).
    n_stars_used, n_reserved, n_rejected : int
        Stars in the fit, held out, and rejected from the fit as outliers.
    """

    psf: PixelBasisPsf
    stars: Table
    chi2_dof_fit: float
    chi2_dof_holdout: float
    n_stars_used: int
    n_reserved: int
    n_rejected: int

    @property
    def used(self) -> np.ndarray:
        """Boolean array: the stars the model was fitted to."""
        return np.asarray(self.stars["calib_psf_used"])


class PsfDeterminerTask(Task):
    """Fit a spatially varying PSF to selected stars (LSST ``PsfexPsfDeterminerTask``).

    Every pixel of the kernel is a polynomial in position, fitted to
    recentred, flux-normalised star stamps by weighted least squares, with
    neighbour pixels masked, outlying stars rejected and a random fraction
    of the stars held out to measure the model's chi^2/dof
    (:func:`skydiff.psf._fit.fit_psf_model`). The model is the fit without
    the held-out stars, so they stay independent for quality checks, as
    LSST's reserved stars.
    """

    ConfigClass = PsfDeterminerConfig
    _DefaultName = "psf_determiner"
    config: PsfDeterminerConfig

    def run(self, exposure: Exposure, stars: Table) -> PsfDeterminerResult:
        """Fit the PSF of ``exposure`` to ``stars``.

        Parameters
        ----------
        exposure : Exposure
            Background-subtracted exposure with a variance plane.
        stars : astropy.table.Table
            Star candidates with parent-frame pixel positions ``x`` and ``y``
            (float); other columns are carried through.

        Returns
        -------
        PsfDeterminerResult
            ``psf``, ``stars`` (with flags), ``chi2_dof_fit``,
            ``chi2_dof_holdout``, ``n_stars_used``, ``n_reserved``,
            ``n_rejected`` and ``metadata``.

        Raises
        ------
        InsufficientSourcesError
            If fewer than ``min_stars`` stars remain to fit.
        """
        metadata = self.new_metadata()
        x, y = _positions(stars)
        with self.timer("stamps", metadata):
            stamps = self.make_stamps(exposure, x, y)
        self._record_stamps(metadata, len(stars), stamps)
        with self.timer("fit", metadata):
            fit = self._fit(exposure, stamps, metadata)
        psf = PixelBasisPsf(fit.basis, fit.coefficients, _bounds(exposure))
        self._record_fit(metadata, fit, psf, exposure)
        return PsfDeterminerResult(
            psf=psf,
            stars=_flagged(stars, stamps, fit),
            chi2_dof_fit=fit.chi2_dof_fit,
            chi2_dof_holdout=fit.chi2_dof_holdout,
            n_stars_used=int(fit.used.sum()),
            n_reserved=int(fit.reserved.sum()),
            n_rejected=int(fit.rejected.sum()),
            metadata=metadata,
        )

    def make_stamps(self, exposure: Exposure, x: np.ndarray, y: np.ndarray) -> CentredStamps:
        """Centred, background-free stamps of the stars at ``(x, y)`` that are usable."""
        c = self.config
        return centre_stamps(
            exposure.image,
            exposure.variance,
            x,
            y,
            size=c.stamp_size,
            mask=exposure.mask.array,
            bad_bits=exposure.mask.bitmask(c.bad_mask_planes, ignore_missing=True),
            x0=exposure.bbox.x0,
            y0=exposure.bbox.y0,
            local_background=c.local_background,
            max_offset=c.max_centroid_shift,
        )

    def _fit(self, exposure: Exposure, stamps: CentredStamps, metadata: TaskMetadata):
        c = self.config
        try:
            return fit_psf_model(
                stamps.data,
                stamps.variance,
                stamps.x,
                stamps.y,
                _bounds(exposure),
                order=c.spatial_order,
                n_components=c.n_components,
                nsigma=c.nsigma,
                max_iter=c.max_iter,
                pixel_nsigma=c.pixel_nsigma,
                core_radius=c.core_radius * stamps.fwhm,
                local_background=c.local_background,
                holdout_fraction=c.holdout_fraction,
                min_stars=c.min_stars,
                seed=c.seed,
                n_star_parameters=3 + int(c.local_background),
            )
        except InsufficientSourcesError as error:
            counts = ", ".join(f"{k}={v}" for k, v in metadata.values.items() if k[:2] == "n_")
            raise InsufficientSourcesError(
                f"cannot fit a PSF to {exposure.describe()}: {error} [{counts}]",
                {**metadata.values, **error.metadata},
            ) from error

    def _record_stamps(self, metadata: TaskMetadata, n_input: int, stamps: CentredStamps) -> None:
        metadata.add("n_input", n_input)
        metadata.add("n_off_image", stamps.n_off_image)
        metadata.add("n_bad_pixels", stamps.n_bad_pixels)
        metadata.add("n_bad_centroid", stamps.n_bad_centroid)
        metadata.add("n_candidates", len(stamps.data))
        metadata.add("stamp_fwhm", stamps.fwhm)

    def _record_fit(
        self, metadata: TaskMetadata, fit: PsfModelFit, psf: PixelBasisPsf, exposure: Exposure
    ) -> None:
        for name in ("used", "reserved", "rejected", "reserved_outlier"):
            metadata.add(f"n_{name}", int(getattr(fit, name).sum()))
        for name in ("chi2_dof_fit", "chi2_dof_holdout", "masked_fraction", "n_iterations"):
            metadata.add(name, getattr(fit, name))
        metadata.add("rejection_threshold", fit.threshold)
        metadata.add("fwhm_center", psf.fwhm(*exposure.bbox.center))
        self.log.info(
            "PSF of %s from %d stars (%d held out, %d rejected): chi2/dof %.3f fit, %.3f held out",
            exposure.describe(),
            int(fit.used.sum()),
            int(fit.reserved.sum()),
            int(fit.rejected.sum()),
            fit.chi2_dof_fit,
            fit.chi2_dof_holdout,
        )


def _positions(stars: Table) -> tuple[np.ndarray, np.ndarray]:
    missing = [name for name in ("x", "y") if name not in stars.colnames]
    if missing:
        raise InvalidParameterError(
            f"the stars table needs columns 'x' and 'y' (parent pixels); missing {missing}, "
            f"has {stars.colnames}"
        )
    return np.asarray(stars["x"], np.float64), np.asarray(stars["y"], np.float64)


def _bounds(exposure: Exposure) -> tuple[float, float, float, float]:
    box = exposure.bbox
    return (box.x0, box.y0, box.x_end - 1, box.y_end - 1)


def _flagged(stars: Table, stamps: CentredStamps, fit: PsfModelFit) -> Table:
    """A copy of ``stars`` with the candidate, used, reserved and rejected flags."""
    table = stars.copy()
    n = len(table)
    columns = {
        "calib_psf_candidate": np.ones(len(stamps.index), bool),
        "calib_psf_used": fit.used,
        "calib_psf_reserved": fit.reserved,
        "calib_psf_rejected": fit.rejected | fit.reserved_outlier,
    }
    for name, values in columns.items():
        table[name] = np.zeros(n, bool)
        table[name][stamps.index] = values
    for name, values in (("psf_chi2_dof", fit.chi2_dof), ("psf_model_flux", fit.amplitude)):
        table[name] = np.full(n, np.nan)
        table[name][stamps.index] = values
    return table
