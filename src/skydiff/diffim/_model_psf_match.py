"""ModelPsfMatchTask: convolve an exposure so that its PSF becomes a model PSF."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS

from ..errors import AlgorithmError, InvalidExposureError
from ..image import Exposure
from ..psf import (
    SIGMA_TO_FWHM,
    DoubleGaussianPsf,
    ImagePsf,
    Psf,
    local_jacobian,
    resize_kernel,
    shift_stamps,
    transform_kernel,
)
from ..task import Config, Task, TaskMetadata, TaskResult, config_field
from ._basis import alard_lupton_basis, basis_sigmas, kernel_size_for, separable_basis
from ._config import KernelConfig
from ._convolve import convolve_image
from ._convolve_exposure import convolve_exposure
from ._kernel import SpatialKernel
from ._solve import solve_spatial, stamp_equations

__all__ = [
    "ModelPsfConfig",
    "ModelPsfMatchConfig",
    "ModelPsfMatchResult",
    "ModelPsfMatchTask",
    "WarpedModelPsf",
]


@dataclass(frozen=True)
class ModelPsfConfig(Config):
    """The model PSF of PSF-matched warps (LSST ``GaussianPsfFactory``)."""

    default_fwhm: float = config_field(
        7.7, doc="Core FWHM in pixels of the warp grid [defaultFwhm]."
    )
    add_wing: bool = config_field(True, doc="Add a wider Gaussian wing [addWing].")
    wing_fwhm_factor: float = config_field(2.5, doc="Wing FWHM / core FWHM [wingFwhmFactor].")
    wing_amplitude: float = config_field(0.1, doc="Wing peak / core peak [wingAmplitude].")
    size_factor: float = config_field(3.0, doc="Kernel half-width in core FWHM [sizeFactor].")

    def validate(self) -> None:
        self.check(self.default_fwhm > 0, "default_fwhm", "must be > 0")
        self.check(self.wing_fwhm_factor >= 1, "wing_fwhm_factor", "must be >= 1")
        self.check(self.wing_amplitude >= 0, "wing_amplitude", "must be >= 0")
        self.check(self.size_factor >= 1, "size_factor", "must be >= 1")

    def make(self) -> DoubleGaussianPsf:
        """The model PSF."""
        half = int(np.ceil(self.size_factor * self.default_fwhm))
        return DoubleGaussianPsf(
            self.default_fwhm,
            wing_fwhm_factor=self.wing_fwhm_factor,
            wing_amplitude=self.wing_amplitude if self.add_wing else 0.0,
            size=2 * half + 1,
        )


def _model_match_kernel() -> KernelConfig:
    return KernelConfig(spatial_order=2, background_order=0, size_max=61)


@dataclass(frozen=True)
class ModelPsfMatchConfig(Config):
    """Configuration of :class:`ModelPsfMatchTask` (LSST ``ModelPsfMatchConfig``)."""

    kernel: KernelConfig = config_field(
        doc="Matching-kernel basis and spatial order (the background term is not applied).",
        factory=_model_match_kernel,
    )
    n_cells: int = config_field(
        5, doc="PSF stamps per axis on which the spatial kernel is fitted [sizeCellX/Y]."
    )
    max_width_ratio: float = config_field(
        1.0,
        doc="The exposure PSF sigma may be at most this times the model's; wider PSFs "
        "would need deconvolution and raise AlgorithmError.",
    )
    max_residual: float = config_field(
        0.02,
        doc="Largest allowed |matched PSF - model| / model peak on the fitted stamps.",
    )

    def validate(self) -> None:
        self.check(self.n_cells >= 2, "n_cells", "must be >= 2")
        self.check(self.max_width_ratio > 0, "max_width_ratio", "must be > 0")
        self.check(self.max_residual > 0, "max_residual", "must be > 0")


@dataclass(frozen=True)
class ModelPsfMatchResult(TaskResult):
    """Result of :meth:`ModelPsfMatchTask.run`.

    Attributes
    ----------
    psf_matched_exposure : Exposure
        The exposure convolved to the model PSF; its PSF is the model carried
        to the exposure's grid [psfMatchedExposure].
    psf_matching_kernel : SpatialKernel
        The kernel [psfMatchingKernel].
    """

    psf_matched_exposure: Exposure
    psf_matching_kernel: SpatialKernel


class WarpedModelPsf(Psf):
    """A model PSF defined on a destination grid, seen on an exposure's grid.

    Warping the PSF-matched exposure onto the destination grid gives back
    exactly the model; LSST's ``WarpedPsf`` of the model PSF. It is persisted
    as an :class:`ImagePsf` of its kernel at ``center``.
    """

    psf_type = "warped_model"

    def __init__(
        self,
        model: Psf,
        exposure_wcs: WCS | None,
        model_wcs: WCS | None,
        *,
        size: int,
        center: tuple[float, float],
    ):
        self.model, self.exposure_wcs, self.model_wcs = model, exposure_wcs, model_wcs
        self._size, self.center = size, center

    @property
    def kernel_size(self) -> int:
        return self._size

    def kernel_image(self, x: float, y: float) -> np.ndarray:
        if self.model_wcs is None or self.exposure_wcs is None:
            return resize_kernel(self.model.kernel_image(x, y), self._size)
        jacobian, mx, my = local_jacobian(self.exposure_wcs, self.model_wcs, x, y)
        return transform_kernel(self.model.kernel_image(mx, my), jacobian, size=self._size)

    def image_at(self, x: float, y: float, *, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
        kernel = self.kernel_image(x, y)
        if dx == 0 and dy == 0:
            return kernel
        return shift_stamps(kernel[None], np.array([dx]), np.array([dy]))[0]

    def to_state(self):
        return ImagePsf(self.kernel_image(*self.center)).to_state()

    @classmethod
    def from_state(cls, params, arrays):
        return ImagePsf.from_state(params, arrays)


class ModelPsfMatchTask(Task):
    """Convolve an exposure so that its PSF becomes a model PSF (LSST ``ModelPsfMatchTask``).

    The PSF-matching kernel is fitted to PSF images, not stars: on a grid of
    ``n_cells x n_cells`` positions the exposure's PSF is the reference stamp
    and the model PSF (carried onto the exposure's grid when its own grid is
    given) the target, and the usual Alard-Lupton basis with a spatial
    polynomial is solved from all of them at once. The model must be wider
    than the exposure's PSF everywhere.
    """

    ConfigClass = ModelPsfMatchConfig
    config: ModelPsfMatchConfig

    def run(
        self, exposure: Exposure, model_psf: Psf, *, model_wcs: WCS | None = None
    ) -> ModelPsfMatchResult:
        """PSF-match ``exposure`` to ``model_psf``.

        Parameters
        ----------
        exposure : Exposure
            With a PSF (and a WCS when ``model_wcs`` is given).
        model_psf : Psf
            The model, in pixels of ``model_wcs``'s grid (or of the exposure).
        model_wcs : astropy.wcs.WCS, optional
            The grid the model is defined on (a patch's WCS); None for the
            exposure's own grid.

        Raises
        ------
        AlgorithmError
            If the exposure's PSF is wider than the model somewhere, or the
            kernel cannot reproduce the model to ``max_residual``.
        """
        if exposure.psf is None:
            raise InvalidExposureError(f"exposure {exposure.describe()} has no PSF to match")
        if model_wcs is not None and exposure.wcs is None:
            raise InvalidExposureError(f"exposure {exposure.describe()} has no WCS")
        metadata = self.new_metadata()
        size = _target_size(model_psf, exposure, model_wcs)
        target = WarpedModelPsf(
            model_psf, exposure.wcs, model_wcs, size=size, center=exposure.bbox.center
        )
        with self.timer("fit", metadata):
            kernel = self._fit(exposure, target, metadata)
        with self.timer("convolve", metadata):
            matched = convolve_exposure(
                exposure,
                kernel,
                grown_planes=("NO_DATA", "BAD", "SAT", "EDGE", "CR", "INTRP", "SUSPECT"),
                exact_variance=False,
            )
        return ModelPsfMatchResult(
            psf_matched_exposure=matched.replace(psf=target),
            psf_matching_kernel=kernel,
            metadata=metadata,
        )

    def _positions(self, exposure: Exposure) -> list[tuple[float, float]]:
        b, n = exposure.bbox, self.config.n_cells
        xs = b.x0 - 0.5 + (np.arange(n) + 0.5) * b.width / n
        ys = b.y0 - 0.5 + (np.arange(n) + 0.5) * b.height / n
        return [(float(x), float(y)) for y in ys for x in xs]

    def _fit(self, exposure: Exposure, target: Psf, metadata: TaskMetadata) -> SpatialKernel:
        k = self.config.kernel
        positions = self._positions(exposure)
        psf_sigma = max(exposure.psf.sigma(x, y) for x, y in positions)
        target_sigma = min(target.sigma(x, y) for x, y in positions)
        metadata.add("psf_sigma_max", psf_sigma)
        metadata.add("model_sigma_min", target_sigma)
        if psf_sigma > self.config.max_width_ratio * target_sigma:
            raise AlgorithmError(
                f"exposure {exposure.describe()} has a PSF (sigma {psf_sigma:.3f} px) wider "
                f"than the model PSF (sigma {target_sigma:.3f} px on its grid); matching it "
                "would need deconvolution",
                metadata.values,
            )
        fwhm = SIGMA_TO_FWHM * target_sigma
        # the kernel must reach as far as the model's wings
        size = k.size or kernel_size_for(
            fwhm, scaling=k.size_fwhm_scaling, minimum=target.kernel_size, maximum=k.size_max
        )
        sigmas = tuple(
            k.sigmas
            or basis_sigmas(
                target_sigma, psf_sigma, beta=k.beta, floor=k.min_sigma, n_gaussians=len(k.degrees)
            )
        )
        basis = alard_lupton_basis(size, sigmas, k.degrees)
        b = exposure.bbox
        bounds = (b.x0 - 0.5, b.y0 - 0.5, b.x_end - 0.5, b.y_end - 0.5)
        half = target.kernel_size // 2
        equations, residual = _psf_equations(
            exposure.psf, target, positions, basis, separable_basis(size, sigmas, k.degrees), half
        )
        solution = solve_spatial(equations, k.spatial_order, bounds)
        kernel = SpatialKernel(basis, solution.kernel_coefficients, bounds, k.spatial_order)
        worst = residual(kernel)
        metadata.add("kernel_size", size)
        metadata.add("kernel_sum", kernel.kernel_sum(*b.center))
        metadata.add("max_model_residual", worst)
        metadata.add("condition_number", solution.condition_number)
        if not worst <= self.config.max_residual:
            raise AlgorithmError(
                f"PSF matching of {exposure.describe()} leaves residuals of {worst:.3g} of the "
                f"model peak (limit {self.config.max_residual})",
                metadata.values,
            )
        return kernel


def _psf_equations(psf: Psf, target: Psf, positions, basis, separable, half: int):
    """Stamp equations with the exposure's PSF as reference and the model as target.

    The stamps are laid side by side on a mosaic (each reference padded by
    the kernel radius) and fed to :func:`stamp_equations`; their positions are
    then set to the real ones for the spatial fit. Also returns a function
    giving the worst residual of a kernel on those stamps.
    """
    radius = basis.shape[1] // 2
    outer = half + radius
    side = 2 * outer + 1
    n = len(positions)
    reference = np.zeros((side, n * side))
    science = np.zeros((side, n * side))
    for i, (x, y) in enumerate(positions):
        reference[:, i * side : (i + 1) * side] = resize_kernel(psf.kernel_image(x, y), side)
        science[:, i * side : (i + 1) * side] = resize_kernel(target.kernel_image(x, y), side)
    centers = np.array([[i * side + outer, outer] for i in range(n)])
    mosaic_bounds = (-0.5, -0.5, n * side - 0.5, side - 0.5)
    equations = stamp_equations(
        reference,
        science,
        np.ones_like(science),
        separable,
        centers,
        half_size=half,
        origin=(0, 0),
        background_order=0,
        bounds=mosaic_bounds,
    )
    xs = np.array([p[0] for p in positions])
    ys = np.array([p[1] for p in positions])
    nb = equations.n_basis  # drop the background column: PSF stamps have none
    equations = equations.__class__(
        equations.matrices[:, :nb, :nb],
        equations.vectors[:, :nb],
        equations.data_norms,
        equations.n_pixels,
        xs,
        ys,
        nb,
    )

    def residual(kernel: SpatialKernel) -> float:
        worst = 0.0
        for i, (x, y) in enumerate(positions):
            ref = reference[:, i * side : (i + 1) * side]
            model = science[:, i * side : (i + 1) * side]
            matched = convolve_image(ref, kernel.kernel_image(x, y))
            core = slice(radius, side - radius)
            worst = max(worst, float(np.abs(matched - model)[core, core].max() / model.max()))
        return worst

    return equations, residual


def _target_size(model: Psf, exposure: Exposure, model_wcs: WCS | None) -> int:
    """Side of the model kernel carried to the exposure grid."""
    if model_wcs is None or exposure.wcs is None:
        return model.kernel_size
    jacobian, _, _ = local_jacobian(exposure.wcs, model_wcs, *exposure.bbox.center)
    stretch = float(np.linalg.norm(np.linalg.inv(jacobian), 2))
    return 2 * int(np.ceil(model.kernel_size // 2 * stretch)) + 1
