"""AlardLuptonSubtractTask: PSF-matched image subtraction with decorrelation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.table import Table

from ..errors import (
    AlgorithmError,
    BadSubtractionError,
    InsufficientSourcesError,
    InvalidExposureError,
    NoWorkFound,
)
from ..image import Exposure, MaskedImage, grid_offset
from ..math import clipped_stats
from ..psf import SIGMA_TO_FWHM, ImagePsf
from ..task import Task, TaskMetadata, TaskResult
from ._basis import alard_lupton_basis, basis_sigmas, kernel_size_for, separable_basis
from ._config import AlardLuptonSubtractConfig
from ._convolve_exposure import convolve_exposure
from ._decorrelate import (
    compute_decorrelation,
    decorrelate,
    decorrelate_spatially,
    difference_psf,
)
from ._kernel import DifferentialBackground, SpatialKernel
from ._solve import (
    StampEquations,
    solve_spatial,
    solve_stamps_individually,
    stamp_equations,
)
from ._sources import detect_kernel_sources, kernel_stamp_centers

__all__ = ["AlardLuptonSubtractResult", "AlardLuptonSubtractTask"]


@dataclass(frozen=True)
class AlardLuptonSubtractResult(TaskResult):
    """Result of :meth:`AlardLuptonSubtractTask.run` (LSST field names in brackets).

    Attributes
    ----------
    difference : Exposure
        Science minus PSF-matched template (or matched science minus template),
        decorrelated, with its own PSF [difference].
    matched_template : Exposure
        The template convolved to the science PSF (the template itself in
        ``convolveScience`` mode) [matchedTemplate].
    background_model : DifferentialBackground
        Background difference fitted with the kernel [backgroundModel].
    psf_matching_kernel : SpatialKernel
        The spatially varying kernel [psfMatchingKernel].
    kernel_sources : astropy.table.Table
        Stamps offered to the fit, with ``used`` and ``kernel_sum`` columns.
    mode : str
        ``convolveTemplate`` or ``convolveScience``.
    """

    difference: Exposure
    matched_template: Exposure
    background_model: DifferentialBackground
    psf_matching_kernel: SpatialKernel
    kernel_sources: Table
    mode: str


class AlardLuptonSubtractTask(Task):
    """Alard & Lupton (1998) PSF-matched subtraction of a template from a science exposure.

    The template must already lie on the science exposure's pixel grid
    (warp it first, e.g. with ``GetTemplateTask``). A kernel built from
    Gaussians times polynomials, varying as a polynomial across the image,
    and a Chebyshev differential background are fitted by least squares to
    stamps around stars; the image with the narrower PSF (or the one the
    configuration names) is convolved by the kernel and the other subtracted;
    the difference is decorrelated.
    """

    ConfigClass = AlardLuptonSubtractConfig
    _DefaultName = "subtract"

    # -- entry point --------------------------------------------------------------------

    def run(
        self, template: Exposure, science: Exposure, sources: Table | None = None
    ) -> AlardLuptonSubtractResult:
        """PSF-match, subtract and decorrelate (see the class description).

        Raises
        ------
        NoWorkFound
            If the template covers less than ``required_template_fraction`` of the science.
        InsufficientSourcesError
            If too few kernel stamps are usable.
        BadSubtractionError
            If the residuals on the kernel stars exceed the configured limits.
        """
        metadata = self.new_metadata()
        template, science = self._prepare(template, science, metadata)
        if sources is None:
            with self.timer("detect_sources", metadata):
                sources = detect_kernel_sources(science, self.config)
        mode = self._choose_mode(template, science)
        metadata.add("mode", mode)
        with self.timer("subtract", metadata):
            if mode == "convolveTemplate":
                result = self.run_convolve_template(template, science, sources, metadata)
            else:
                result = self.run_convolve_science(template, science, sources, metadata)
        self._check_quality(result, science, metadata)
        return result

    def run_convolve_template(
        self,
        template: Exposure,
        science: Exposure,
        sources: Table,
        metadata: TaskMetadata | None = None,
    ) -> AlardLuptonSubtractResult:
        """Convolve the template with the matching kernel and subtract it from the science."""
        metadata = metadata or self.new_metadata()
        kernel, background, stamps = self._fit(template, science, sources, metadata)
        matched = self._convolve(template, kernel, metadata)
        difference = self._subtract(science, matched, background)
        difference = self.finalize(
            template, science, difference, kernel, metadata, template_matched=True
        )
        return AlardLuptonSubtractResult(
            difference=difference,
            matched_template=matched,
            background_model=background,
            psf_matching_kernel=kernel,
            kernel_sources=stamps,
            mode="convolveTemplate",
            metadata=metadata,
        )

    def run_convolve_science(
        self,
        template: Exposure,
        science: Exposure,
        sources: Table,
        metadata: TaskMetadata | None = None,
    ) -> AlardLuptonSubtractResult:
        """Convolve the science image with the matching kernel and subtract the template."""
        metadata = metadata or self.new_metadata()
        kernel, background, stamps = self._fit(science, template, sources, metadata)
        matched_science = self._convolve(science, kernel, metadata)
        # the model is template = K * science + background
        difference = self._subtract(matched_science, template, None)
        difference.image[...] += background.evaluate(science.bbox)
        difference = self.finalize(
            template, science, difference, kernel, metadata, template_matched=False
        )
        return AlardLuptonSubtractResult(
            difference=difference,
            matched_template=template,
            background_model=background,
            psf_matching_kernel=kernel,
            kernel_sources=stamps,
            mode="convolveScience",
            metadata=metadata,
        )

    # -- steps --------------------------------------------------------------------------

    def _prepare(
        self, template: Exposure, science: Exposure, metadata: TaskMetadata
    ) -> tuple[Exposure, Exposure]:
        """Same units, the template cut to the science box, coverage checked."""
        if not template.bbox.contains(science.bbox):
            overlap = template.bbox.intersection(science.bbox)
            if overlap.is_empty:
                raise NoWorkFound(
                    f"template {template.bbox} does not overlap science {science.bbox}"
                )
            padded = Exposure(
                MaskedImage.no_data(science.bbox),
                wcs=template.wcs,
                psf=template.psf,
                units=template.units,
                photo_calib=template.photo_calib,
                band=template.band,
            )
            padded.masked_image.assign(template.masked_image)
            template = padded
        _check_same_grid(template, science)
        template = template[science.bbox]
        if science.units != template.units:
            science, template = science.calibrated(), template.calibrated()
        coverage = 1.0 - float(
            np.mean(
                template.mask.get("NO_DATA", ignore_missing=True) | ~np.isfinite(template.image)
            )
        )
        metadata.add("template_coverage", coverage)
        if coverage < self.config.required_template_fraction:
            raise NoWorkFound(
                f"template covers {coverage:.1%} of science {science.describe()}, below "
                f"required_template_fraction={self.config.required_template_fraction}"
            )
        for name, exposure in (("science", science), ("template", template)):
            if exposure.psf is None:
                raise InvalidExposureError(f"{name} exposure {exposure.describe()} has no PSF")
        return template, science

    def _choose_mode(self, template: Exposure, science: Exposure) -> str:
        if self.config.mode != "auto":
            return self.config.mode
        x, y = science.bbox.center
        narrower_template = template.psf.sigma(x, y) <= science.psf.sigma(x, y)
        return "convolveTemplate" if narrower_template else "convolveScience"

    def _basis(self, reference: Exposure, target: Exposure):
        """Basis for a kernel taking ``reference``'s PSF to ``target``'s."""
        k = self.config.kernel
        x, y = target.bbox.center
        sigma_target, sigma_reference = target.psf.sigma(x, y), reference.psf.sigma(x, y)
        fwhm = SIGMA_TO_FWHM * max(sigma_target, sigma_reference)
        size = k.size or kernel_size_for(
            fwhm, scaling=k.size_fwhm_scaling, minimum=k.size_min, maximum=k.size_max
        )
        sigmas = k.sigmas or basis_sigmas(
            sigma_target,
            sigma_reference,
            beta=k.beta,
            floor=k.min_sigma,
            n_gaussians=len(k.degrees),
        )
        sigmas = tuple(sigmas)
        return alard_lupton_basis(size, sigmas, k.degrees), separable_basis(size, sigmas, k.degrees)

    def _fit(
        self, reference: Exposure, target: Exposure, sources: Table, metadata: TaskMetadata
    ) -> tuple[SpatialKernel, DifferentialBackground, Table]:
        """Kernel and background with ``target ~ kernel * reference + background``."""
        k = self.config.kernel
        basis, separable = self._basis(reference, target)
        radius = basis.shape[1] // 2
        x, y = target.bbox.center
        fwhm = SIGMA_TO_FWHM * max(target.psf.sigma(x, y), reference.psf.sigma(x, y))
        half = max(int(np.ceil(k.stamp_radius * fwhm)), 3)
        centers, stamps = kernel_stamp_centers(
            sources, target, reference, self.config, half_size=half, kernel_radius=radius, fwhm=fwhm
        )
        b = target.bbox
        bounds = (b.x0 - 0.5, b.y0 - 0.5, b.x_end - 0.5, b.y_end - 0.5)
        with self.timer("stamp_equations", metadata):
            equations = stamp_equations(
                reference.image,
                target.image,
                self._weights(reference, target),
                separable,
                centers,
                half_size=half,
                origin=(b.x0, b.y0),
                background_order=k.background_order,
                bounds=bounds,
            )
        with self.timer("solve", metadata):
            used, solution = self._solve_with_rejection(equations, bounds, metadata)
        kernel = SpatialKernel(basis, solution.kernel_coefficients, bounds, k.spatial_order)
        background = DifferentialBackground(
            solution.background_solution, k.background_order, bounds
        )
        stamps = stamps.copy()
        stamps["used"] = used
        stamps["kernel_sum"] = [
            kernel.kernel_sum(a, c) for a, c in zip(equations.x, equations.y, strict=True)
        ]
        metadata.add("kernel_size", basis.shape[1])
        metadata.add("n_basis", basis.shape[0])
        metadata.add("kernel_sum", kernel.kernel_sum(x, y))
        metadata.add("n_stamps_used", int(used.sum()))
        metadata.add("n_stamps_rejected", int((~used).sum()))
        metadata.add("condition_number", solution.condition_number)
        return kernel, background, stamps

    def _weights(self, reference: Exposure, target: Exposure) -> np.ndarray:
        good = np.isfinite(target.image) & np.isfinite(target.variance)
        if self.config.kernel.constant_weighting:
            return good.astype(np.float32)
        with np.errstate(divide="ignore"):
            variance = target.variance + reference.variance
            return np.where(good & (variance > 0), 1.0 / variance, 0.0).astype(np.float32)

    def _solve_with_rejection(self, equations: StampEquations, bounds, metadata: TaskMetadata):
        """Reject stamps with deviant kernel sums or residuals, then iterate the spatial fit."""
        k = self.config.kernel
        n_cols = equations.matrices.shape[1]
        dof = np.maximum(equations.n_pixels - n_cols, 1)
        single = solve_stamps_individually(equations)
        keep = _inliers(single[:, 0], k.nsigma_reject) & _inliers(
            equations.chi2(single) / dof, k.nsigma_reject, upper_only=True
        )
        for _ in range(k.max_reject_iterations + 1):
            if keep.sum() < self.config.min_stamps:
                raise InsufficientSourcesError(
                    f"only {int(keep.sum())} kernel stamps survive rejection "
                    f"(of {keep.size}); {self.config.min_stamps} needed",
                    metadata.values,
                )
            solution = solve_spatial(equations.subset(keep), k.spatial_order, bounds)
            coefficients = solution.stamp_coefficients(equations, k.spatial_order, bounds)
            residual = equations.chi2(coefficients) / dof
            new_keep = keep & _inliers(residual, k.nsigma_reject, upper_only=True, using=keep)
            if np.array_equal(new_keep, keep):
                break
            keep = new_keep
        if solution.condition_number > k.max_condition_number:
            raise AlgorithmError(
                f"kernel solution is ill-conditioned (condition number "
                f"{solution.condition_number:.3g} > {k.max_condition_number:.3g})",
                metadata.values,
            )
        return keep, solution

    def _convolve(
        self, exposure: Exposure, kernel: SpatialKernel, metadata: TaskMetadata
    ) -> Exposure:
        """``exposure`` convolved with the spatially varying kernel; variance and mask too."""
        with self.timer("convolve", metadata):
            return convolve_exposure(
                exposure,
                kernel,
                grown_planes=self.config.convolved_bad_planes,
                exact_variance=self.config.exact_convolved_variance,
            )

    def _subtract(
        self, minuend: Exposure, subtrahend: Exposure, background: DifferentialBackground | None
    ) -> Exposure:
        difference = minuend.masked_image - subtrahend.masked_image
        if background is not None:
            difference.image -= background.evaluate(minuend.bbox)
        difference.set_no_data(difference.mask.get("NO_DATA"))
        return minuend.replace(masked_image=difference, units=minuend.units)

    # -- finalize -----------------------------------------------------------------------

    def finalize(
        self,
        template: Exposure,
        science: Exposure,
        difference: Exposure,
        kernel: SpatialKernel,
        metadata: TaskMetadata | None = None,
        *,
        template_matched: bool = True,
    ) -> Exposure:
        """Decorrelate the difference and give it its PSF and masks (LSST ``finalize``)."""
        metadata = metadata or self.new_metadata()
        self.update_masks(template, science, difference)
        x, y = science.bbox.center
        matched_psf = science if template_matched else template
        psf_image = matched_psf.psf.kernel_image(x, y)
        if not self.config.do_decorrelation:
            return difference.replace(psf=ImagePsf(psf_image))
        with self.timer("decorrelate", metadata):
            science_variance = _mean_variance(science)
            template_variance = _mean_variance(template)
            mode = "convolveTemplate" if template_matched else "convolveScience"
            image, variance, phi = self._decorrelate(
                difference, kernel, science_variance, template_variance, mode, metadata
            )
        masked = MaskedImage(image, difference.mask, variance, bbox=difference.bbox)
        masked.set_no_data(masked.mask.get("NO_DATA") | ~np.isfinite(image))
        metadata.add("science_variance", science_variance)
        metadata.add("template_variance", template_variance)
        return difference.replace(masked_image=masked, psf=ImagePsf(difference_psf(psf_image, phi)))

    def _decorrelate(
        self,
        difference: Exposure,
        kernel: SpatialKernel,
        science_variance: float,
        template_variance: float,
        mode: str,
        metadata: TaskMetadata,
    ):
        """Decorrelated image and variance, and the decorrelation kernel at the centre."""
        x, y = difference.bbox.center
        excluded = difference.mask.bitmask(
            self.config.decorrelation_excluded_planes, ignore_missing=True
        )
        image = difference.image
        hit = np.bitwise_and(difference.mask.array, excluded) != 0 if excluded else None
        if hit is not None and hit.any():
            image = image.copy()
            image[hit] = 0.0
        central = compute_decorrelation(
            kernel.kernel_image(x, y), science_variance, template_variance, mode=mode
        )
        metadata.add("decorrelation_variance_ratio", central.variance_ratio)
        metadata.add("decorrelation_kernel_size", int(central.kernel.shape[0]))
        if self.config.spatially_varying_decorrelation:
            x0, y0 = difference.bbox.x0, difference.bbox.y0
            cells = self.config.decorrelation_cells
            out = decorrelate_spatially(
                image,
                difference.variance,
                lambda a, b: kernel.kernel_image(a + x0, b + y0),
                science_variance,
                template_variance,
                n_cells=(cells, cells),
                mode=mode,
            )
        else:
            out = decorrelate(
                image,
                difference.variance,
                central.kernel,
                variance_ratio=central.variance_ratio,
            )
        return out.image, out.variance, central.kernel

    def update_masks(self, template: Exposure, science: Exposure, difference: Exposure) -> None:
        """Bring template planes into the difference's mask (in place; LSST ``updateMasks``).

        ``template_preserve_planes`` are ORed in under their own names,
        ``template_rename_planes`` under ``<NAME>_TEMPLATE``.
        """
        c = self.config
        for plane in c.template_preserve_planes:
            difference.mask.set(plane, template.mask.get(plane, ignore_missing=True))
        for plane in c.template_rename_planes:
            difference.mask.set(f"{plane}_TEMPLATE", template.mask.get(plane, ignore_missing=True))

    # -- quality ------------------------------------------------------------------------

    def _check_quality(
        self, result: AlardLuptonSubtractResult, science: Exposure, metadata: TaskMetadata
    ) -> None:
        difference = result.difference
        bad = difference.mask.get(
            ("NO_DATA", "BAD", "SAT", "EDGE", "SAT_TEMPLATE"), ignore_missing=True
        )
        # every third row and column: a million pixels pin the statistics to 0.1%
        with np.errstate(invalid="ignore", divide="ignore"):
            normalized = difference.image[::3, ::3] / np.sqrt(difference.variance[::3, ::3])
        stats = clipped_stats(normalized, good=~bad[::3, ::3] & np.isfinite(normalized))
        metadata.add("residual_mean", stats.mean)
        metadata.add("residual_std", stats.stddev)
        ratios = _footprint_ratios(result, science)
        if ratios.size:
            metadata.add("footprint_ratio_mean", float(np.mean(ratios)))
            metadata.add("footprint_ratio_std", float(np.std(ratios)))
            c = self.config
            if (
                np.mean(ratios) > c.max_footprint_ratio_mean
                or np.std(ratios) > c.max_footprint_ratio_std
            ):
                raise BadSubtractionError(
                    f"residuals on the kernel stars are too large: mean |difference| / flux "
                    f"{np.mean(ratios):.3f} (limit {c.max_footprint_ratio_mean}), spread "
                    f"{np.std(ratios):.3f} (limit {c.max_footprint_ratio_std})",
                    metadata.values,
                )


def _check_same_grid(template: Exposure, science: Exposure) -> None:
    """Raise unless both exposures map the science corners to the same sky positions."""
    if template.wcs is None or science.wcs is None:
        return
    offset = grid_offset(science.wcs, template.wcs, science.bbox)
    if not offset < 0.01:
        raise InvalidExposureError(
            f"the template is on a different pixel grid from the science exposure (offsets up "
            f"to {offset:.3g} px): warp it onto the science grid first (GetTemplateTask or "
            "skydiff warp --like)"
        )


def _mean_variance(exposure: Exposure) -> float:
    """Median variance of the good pixels (of every third row and column)."""
    variance = exposure.variance[::3, ::3]
    bad = exposure.mask.array[::3, ::3] & exposure.mask.bitmask(
        ("NO_DATA", "BAD"), ignore_missing=True
    )
    return float(np.median(variance[np.isfinite(variance) & (bad == 0)]))


def _inliers(
    values: np.ndarray, nsigma: float, *, upper_only: bool = False, using: np.ndarray | None = None
) -> np.ndarray:
    """Values within ``nsigma`` clipped standard deviations of the clipped mean."""
    sample = values if using is None else values[using]
    stats = clipped_stats(sample, nsigma=nsigma, max_iter=5)
    if not np.isfinite(stats.stddev) or stats.stddev == 0:
        return np.isfinite(values)
    deviation = (values - stats.mean) / stats.stddev
    return deviation < nsigma if upper_only else np.abs(deviation) < nsigma


def _footprint_ratios(
    result: AlardLuptonSubtractResult, science: Exposure, *, min_snr: float = 50.0
) -> np.ndarray:
    """``|sum of difference| / flux`` within 2 PSF FWHM of each bright used kernel star.

    Only stars above ``min_snr`` count, so that the ratio measures the
    subtraction's systematic residual rather than the pixel noise.
    """
    stamps = result.kernel_sources[np.asarray(result.kernel_sources["used"])]
    if len(stamps) == 0 or "psf_flux" not in stamps.colnames or "snr" not in stamps.colnames:
        return np.zeros(0)
    stamps = stamps[np.asarray(stamps["snr"], float) >= min_snr]
    x, y = science.bbox.center
    radius = max(2, round(SIGMA_TO_FWHM * science.psf.sigma(x, y)))
    offsets = np.arange(-radius, radius + 1)
    disc = (offsets[:, None] ** 2 + offsets[None, :] ** 2) <= radius**2
    cx = np.rint(np.asarray(stamps["x"], float)).astype(int) - science.bbox.x0
    cy = np.rint(np.asarray(stamps["y"], float)).astype(int) - science.bbox.y0
    image = result.difference.image
    rows = np.clip(cy[:, None, None] + offsets[None, :, None], 0, image.shape[0] - 1)
    cols = np.clip(cx[:, None, None] + offsets[None, None, :], 0, image.shape[1] - 1)
    residual = np.abs((np.nan_to_num(image[rows, cols]) * disc).sum(axis=(1, 2)))
    flux = np.asarray(stamps["psf_flux"], float)
    if (
        result.difference.units == "nJy"
        and science.photo_calib is not None
        and str(stamps["psf_flux"].unit) == "ct"
    ):
        flux = flux * science.photo_calib.calibration_mean
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = residual / np.abs(flux)
    return ratios[np.isfinite(ratios)]
