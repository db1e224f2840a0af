"""SubtractBackgroundTask: measure and remove a smooth sky background."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..image import Exposure
from ..task import Config, Task, TaskResult, config_field
from ._model import DEFAULT_BACKGROUND_BAD_PLANES, BackgroundList, BackgroundModel

__all__ = ["SubtractBackgroundConfig", "SubtractBackgroundResult", "SubtractBackgroundTask"]


@dataclass(frozen=True)
class SubtractBackgroundConfig(Config):
    """Configuration of :class:`SubtractBackgroundTask` (LSST names in brackets)."""

    bin_size: int = config_field(128, doc="Bin size in pixels, both axes [binSize].")
    statistic: Literal["meanclip", "median", "mean"] = config_field(
        "meanclip", doc="Per-bin statistic [statisticsProperty]."
    )
    nsigma: float = config_field(3.0, doc="Clipping threshold for meanclip.")
    max_iter: int = config_field(3, doc="Clipping passes for meanclip.")
    bad_planes: tuple[str, ...] = config_field(
        DEFAULT_BACKGROUND_BAD_PLANES,
        doc="Mask planes excluded from the statistics [ignoredPixelMask].",
    )
    min_fraction: float = config_field(
        0.1,
        doc="Minimum fraction of good pixels for a bin to be used; others are filled "
        "from their neighbours.",
    )
    interpolation: Literal["akima", "natural", "linear", "constant"] = config_field(
        "akima", doc="Interpolation between bins [algorithm]."
    )
    approximation_order: int | None = config_field(
        None,
        doc="Chebyshev order to approximate the bins with instead of interpolating "
        "[approxOrderX, useApprox].",
    )

    def validate(self) -> None:
        self.check(self.bin_size > 0, "bin_size", "must be > 0")
        self.check(self.nsigma > 0, "nsigma", "must be > 0")
        self.check(self.max_iter >= 1, "max_iter", "must be >= 1")
        self.check(0 <= self.min_fraction <= 1, "min_fraction", "must be in [0, 1]")
        self.check(
            self.approximation_order is None or 0 <= self.approximation_order <= 10,
            "approximation_order",
            "must be None or in 0..10",
        )


@dataclass(frozen=True)
class SubtractBackgroundResult(TaskResult):
    """Result of :meth:`SubtractBackgroundTask.run`.

    Attributes
    ----------
    exposure : Exposure
        A copy of the input with the background subtracted.
    background : BackgroundList
        The input's background list with the new model appended.
    """

    exposure: Exposure
    background: BackgroundList


class SubtractBackgroundTask(Task):
    """Fit a binned background to an exposure and subtract it (LSST ``SubtractBackgroundTask``)."""

    ConfigClass = SubtractBackgroundConfig
    _DefaultName = "subtract_background"

    def measure(self, exposure: Exposure) -> BackgroundModel:
        """The background model of ``exposure``'s good pixels."""
        c = self.config
        return BackgroundModel.measure(
            exposure.masked_image,
            bin_size=c.bin_size,
            statistic=c.statistic,
            bad_planes=c.bad_planes,
            nsigma=c.nsigma,
            max_iter=c.max_iter,
            min_fraction=c.min_fraction,
            interpolation=c.interpolation,
            approximation_order=c.approximation_order,
        )

    def run(
        self, exposure: Exposure, background: BackgroundList | None = None
    ) -> SubtractBackgroundResult:
        """Measure the background and return a subtracted copy and the updated list."""
        metadata = self.new_metadata()
        with self.timer("measure", metadata):
            model = self.measure(exposure)
        with self.timer("subtract", metadata):
            image = model.evaluate(exposure.bbox)
            result = exposure.copy()
            result.image[...] -= image
        metadata.add("background_mean", float(image.mean()))
        metadata.add("background_range", float(image.max() - image.min()))
        metadata.add("n_empty_bins", int((~(model.counts > 0)).sum()))
        self.log.info(
            "subtracted background of mean %.4g from %s", float(image.mean()), exposure.describe()
        )
        return SubtractBackgroundResult(
            exposure=result,
            background=(background or BackgroundList()).appended(model),
            metadata=metadata,
        )
