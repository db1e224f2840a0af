"""ScaleVarianceTask: make the variance plane agree with the pixel noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..background import BackgroundModel
from ..errors import AlgorithmError
from ..image import MaskedImage
from ..math import robust_sigma
from ..task import Config, Task, TaskResult, config_field

__all__ = ["ScaleVarianceConfig", "ScaleVarianceResult", "ScaleVarianceTask"]


@dataclass(frozen=True)
class ScaleVarianceConfig(Config):
    """Configuration of :class:`ScaleVarianceTask` (LSST names in brackets)."""

    bad_planes: tuple[str, ...] = config_field(
        (
            "DETECTED",
            "DETECTED_NEGATIVE",
            "BAD",
            "SAT",
            "NO_DATA",
            "EDGE",
            "CR",
            "INTRP",
            "SUSPECT",
        ),
        doc="Pixels excluded from the measurement [maskPlanes].",
    )
    limit: float = config_field(
        10.0,
        doc="A pixel-based factor beyond [1/limit, limit] falls back to the "
        "image-based estimate [limit].",
    )
    background_bin_size: int = config_field(
        128, doc="Bin size of the background removed before measuring the noise."
    )

    def validate(self) -> None:
        self.check(self.limit > 1, "limit", "must be > 1")
        self.check(self.background_bin_size > 0, "background_bin_size", "must be > 0")


@dataclass(frozen=True)
class ScaleVarianceResult(TaskResult):
    """Result of :meth:`ScaleVarianceTask.run`.

    Attributes
    ----------
    factor : float
        Multiply the variance plane by this to match the pixel noise.
    method : str
        ``"pixel"`` or ``"image"`` (the fallback).
    masked_image : MaskedImage
        A copy with the variance plane scaled.
    """

    factor: float
    method: str
    masked_image: MaskedImage


class ScaleVarianceTask(Task):
    """Match the variance plane to the pixel noise (LSST ``ScaleVarianceTask``).

    The pixel-based factor is the squared IQR sigma of ``image / sqrt(variance)``
    over unmasked background pixels; it respects a variance that changes
    across the image. If it is not finite or lies beyond ``limit``, the
    image-based factor (squared IQR sigma of the image over the median
    variance) is used with a warning.
    """

    ConfigClass = ScaleVarianceConfig
    _DefaultName = "scale_variance"

    def measure(self, masked_image: MaskedImage) -> tuple[float, str]:
        """The scale factor and the method that gave it."""
        c = self.config
        bin_size = min(c.background_bin_size, masked_image.bbox.width, masked_image.bbox.height)
        background = BackgroundModel.measure(
            masked_image, bin_size=bin_size, bad_planes=c.bad_planes
        )
        step = 2 if masked_image.bbox.height > 512 else 1  # every other row is plenty
        image, variance = masked_image.image[::step], masked_image.variance[::step]
        mask = masked_image.mask.get(c.bad_planes, ignore_missing=True)[::step]
        residual = image - background.evaluate(masked_image.bbox)[::step]
        good = ~mask & np.isfinite(residual) & (variance > 0) & np.isfinite(variance)
        if good.sum() < 100:
            raise AlgorithmError(f"only {int(good.sum())} unmasked pixels to scale the variance")
        with np.errstate(invalid="ignore", divide="ignore"):
            normalized = residual / np.sqrt(variance)
        factor = float(robust_sigma(normalized, good=good)) ** 2
        if np.isfinite(factor) and 1.0 / c.limit <= factor <= c.limit:
            return factor, "pixel"
        image_factor = float(robust_sigma(residual, good=good)) ** 2 / float(
            np.median(variance[good])
        )
        self.log.warning(
            "pixel-based variance factor %.3g is beyond the limit %g; "
            "using the image-based factor %.3g",
            factor,
            c.limit,
            image_factor,
        )
        if not (np.isfinite(image_factor) and image_factor > 0):
            raise AlgorithmError(f"cannot scale the variance: factors {factor}, {image_factor}")
        return image_factor, "image"

    def run(self, masked_image: MaskedImage) -> ScaleVarianceResult:
        """Measure the factor and return a copy with the variance plane scaled by it."""
        metadata = self.new_metadata()
        with self.timer("measure", metadata):
            factor, method = self.measure(masked_image)
        scaled = masked_image.copy()
        scaled.variance *= np.float32(factor)
        metadata.add("variance_factor", factor)
        metadata.add("method", method)
        self.log.info("variance scaled by %.4f (%s-based)", factor, method)
        return ScaleVarianceResult(
            factor=factor, method=method, masked_image=scaled, metadata=metadata
        )
