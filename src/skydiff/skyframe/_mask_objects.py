"""MaskObjectsTask: iterative detection to mask objects before measuring the sky."""

from __future__ import annotations

from dataclasses import dataclass

from ..background import DEFAULT_BACKGROUND_BAD_PLANES, BackgroundModel
from ..detection import SourceDetectionConfig, SourceDetectionTask
from ..image import Exposure, Mask, MaskedImage
from ..task import Config, Task, TaskResult, config_field

__all__ = ["MaskObjectsConfig", "MaskObjectsResult", "MaskObjectsTask"]


def _default_detection() -> SourceDetectionConfig:
    return SourceDetectionConfig(threshold=4.0, default_fwhm=4.0)


@dataclass(frozen=True)
class MaskObjectsConfig(Config):
    """Configuration of :class:`MaskObjectsTask` (LSST names in brackets)."""

    n_iter: int = config_field(3, doc="Background-and-detection passes [nIter].")
    bin_size: int = config_field(
        64,
        doc="Bin size of the background removed before each detection "
        "[subtractBackground.binSize]; small enough to follow the sky frame's structure.",
    )
    detection: SourceDetectionConfig = config_field(
        doc="Detection; the image is smoothed with a Gaussian of FWHM "
        "``detection.default_fwhm`` pixels whatever its PSF [detectSigma, detection].",
        factory=_default_detection,
    )

    def validate(self) -> None:
        self.check(self.n_iter >= 1, "n_iter", "must be >= 1")
        self.check(self.bin_size >= 1, "bin_size", "must be >= 1")


@dataclass(frozen=True)
class MaskObjectsResult(TaskResult):
    """Result of :meth:`MaskObjectsTask.run`.

    Attributes
    ----------
    mask : Mask
        A copy of the input mask with ``DETECTED`` (and ``DETECTED_NEGATIVE``
        if asked for) set on the objects found.
    detected_fraction : float
        Fraction of the pixels now ``DETECTED``.
    """

    mask: Mask
    detected_fraction: float


class MaskObjectsTask(Task):
    """Find objects by alternating background subtraction and detection (LSST ``MaskObjectsTask``).

    Each pass fits a binned background to the pixels not yet detected,
    subtracts it from a copy of the image and detects on that copy with a
    fixed Gaussian smoothing (not the PSF, to catch the faint wings of
    objects). The input is not modified; the grown mask is returned.
    """

    ConfigClass = MaskObjectsConfig
    _DefaultName = "mask_objects"
    config: MaskObjectsConfig

    def __init__(self, config: MaskObjectsConfig | None = None, **kwargs):
        super().__init__(config, **kwargs)
        self.make_subtask("detection", SourceDetectionTask, self.config.detection)

    def run(self, image: MaskedImage | Exposure) -> MaskObjectsResult:
        """The mask of ``image`` with its objects marked ``DETECTED``."""
        masked = image.masked_image if isinstance(image, Exposure) else image
        metadata = self.new_metadata()
        mask = masked.mask.copy()
        bbox = masked.bbox
        bin_size = (min(self.config.bin_size, bbox.width), min(self.config.bin_size, bbox.height))
        for _ in range(self.config.n_iter):
            with self.timer("background", metadata):
                current = MaskedImage(masked.image, mask, masked.variance, bbox=bbox)
                background = BackgroundModel.measure(
                    current, bin_size=bin_size, bad_planes=DEFAULT_BACKGROUND_BAD_PLANES
                )
                residual = MaskedImage(
                    masked.image - background.evaluate(bbox), mask, masked.variance, bbox=bbox
                )
            with self.timer("detection", metadata):
                found = self.detection.run(Exposure(residual))
            found.set_mask_planes(mask)
        fraction = float(mask.get("DETECTED").mean())
        metadata.add("detected_fraction", fraction)
        self.log.debug("masked %.1f%% of %s as DETECTED", 100 * fraction, bbox)
        return MaskObjectsResult(mask=mask, detected_fraction=fraction, metadata=metadata)
