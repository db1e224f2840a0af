"""AlardLuptonPreconvolveSubtractTask: a score image for detection (pre-convolution mode)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.table import Table

from ..image import Exposure, MaskedImage
from ..psf import ImagePsf
from ..task import TaskResult
from ._convolve import convolve_image
from ._convolve_exposure import grown_mask
from ._decorrelate import compute_decorrelation, decorrelate
from ._kernel import DifferentialBackground, SpatialKernel
from ._sources import detect_kernel_sources
from ._subtract import AlardLuptonSubtractTask, _mean_variance

__all__ = ["AlardLuptonPreconvolveSubtractResult", "AlardLuptonPreconvolveSubtractTask"]


@dataclass(frozen=True)
class AlardLuptonPreconvolveSubtractResult(TaskResult):
    """Result of :meth:`AlardLuptonPreconvolveSubtractTask.run`.

    Attributes
    ----------
    score : Exposure
        The decorrelated score image: the science image filtered with its own
        PSF minus the matched template. ``score / sqrt(variance)`` is the
        significance of a point source at each pixel, so it is thresholded
        directly, without further smoothing [scoreExposure].
    matched_template : Exposure
        The template convolved with the kernel [matchedTemplate].
    background_model : DifferentialBackground
    psf_matching_kernel : SpatialKernel
    kernel_sources : astropy.table.Table
    """

    score: Exposure
    matched_template: Exposure
    background_model: DifferentialBackground
    psf_matching_kernel: SpatialKernel
    kernel_sources: Table


class AlardLuptonPreconvolveSubtractTask(AlardLuptonSubtractTask):
    """Pre-convolution subtraction (LSST ``AlardLuptonPreconvolveSubtractTask``).

    The science image is convolved with (the reflection of) its own PSF,
    the matched filter for point sources; the template is then matched to
    that doubly blurred image, which the Alard-Lupton kernel can always do
    since it only broadens. The decorrelated difference is a score image
    whose value over its standard deviation is the detection significance.
    """

    _DefaultName = "preconvolve_subtract"

    def run(
        self, template: Exposure, science: Exposure, sources: Table | None = None
    ) -> AlardLuptonPreconvolveSubtractResult:
        """Pre-convolve the science image, match the template to it, subtract, decorrelate."""
        metadata = self.new_metadata()
        template, science = self._prepare(template, science, metadata)
        if sources is None:
            with self.timer("detect_sources", metadata):
                sources = detect_kernel_sources(science, self.config)
        x, y = science.bbox.center
        psf = science.psf.kernel_image(x, y)
        preconvolved = self._preconvolve(science, psf)
        with self.timer("subtract", metadata):
            kernel, background, stamps = self._fit(template, preconvolved, sources, metadata)
            matched = self._convolve(template, kernel, metadata)
            difference = self._subtract(preconvolved, matched, background)
            self.update_masks(template, science, difference)
        with self.timer("decorrelate", metadata):
            decorrelation = compute_decorrelation(
                kernel.kernel_image(x, y),
                _mean_variance(science),
                _mean_variance(template),
                preconvolution_kernel=psf,
            )
            out = decorrelate(
                difference.image,
                difference.variance,
                decorrelation.kernel,
                variance_ratio=decorrelation.variance_ratio,
            )
        masked = MaskedImage(out.image, difference.mask, out.variance, bbox=difference.bbox)
        masked.set_no_data(masked.mask.get("NO_DATA") | ~np.isfinite(out.image))
        metadata.add("mode", "preconvolution")
        return AlardLuptonPreconvolveSubtractResult(
            score=difference.replace(masked_image=masked, psf=None),
            matched_template=matched,
            background_model=background,
            psf_matching_kernel=kernel,
            kernel_sources=stamps,
            metadata=metadata,
        )

    def _preconvolve(self, science: Exposure, psf: np.ndarray) -> Exposure:
        """The science exposure convolved with its reflected PSF, with that PSF squared."""
        reflected = psf[::-1, ::-1]
        image = convolve_image(science.image, reflected)
        variance = convolve_image(science.variance, reflected**2)
        mask = grown_mask(science.mask, self.config.convolved_bad_planes, psf.shape[0] // 2)
        masked = MaskedImage(image, mask, variance, bbox=science.bbox)
        masked.set_no_data(mask.get("NO_DATA"))
        doubled = convolve_image(np.pad(psf, psf.shape[0] // 2), reflected)
        return science.replace(masked_image=masked, psf=ImagePsf(doubled / doubled.sum()))
