"""SkyMeasurementTask: creating, persisting and using sky frames (LSST ``SkyMeasurementTask``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..background import BackgroundList, BackgroundModel
from ..errors import InvalidParameterError
from ..image import Exposure, MaskedImage, VisitInfo
from ..math import clipped_stats
from ..task import Config, Task, config_field
from ._persist import background_to_exposure, exposure_to_background
from ._scale import ScaleFit, ScaleSamples, sample_grid, solve_scale

__all__ = [
    "SkyBackgroundConfig",
    "SkyMeasurementConfig",
    "SkyMeasurementTask",
    "SkyStatsConfig",
]

_Statistic = Literal["meanclip", "median", "mean"]
_Interpolation = Literal["akima", "natural", "linear", "constant"]


@dataclass(frozen=True)
class SkyBackgroundConfig(Config):
    """How a sky frame is binned (LSST ``BackgroundConfig``; its names in brackets)."""

    bin_size_x: int = config_field(32, doc="Bin width in pixels [xBinSize].")
    bin_size_y: int = config_field(32, doc="Bin height in pixels [yBinSize].")
    statistic: _Statistic = config_field("meanclip", doc="Per-bin statistic [statistic].")
    nsigma: float = config_field(3.0, doc="Clipping threshold of meanclip.")
    max_iter: int = config_field(3, doc="Clipping passes of meanclip.")
    min_fraction: float = config_field(
        0.1, doc="Minimum fraction of good pixels for a bin to be measured."
    )
    interpolation: _Interpolation = config_field(
        "natural", doc="Interpolation between bins [algorithm]."
    )
    bad_planes: tuple[str, ...] = config_field(
        ("SAT", "BAD", "EDGE", "DETECTED", "DETECTED_NEGATIVE", "NO_DATA"),
        doc="Mask planes ignored in the bins [mask].",
    )

    def validate(self) -> None:
        self.check(self.bin_size_x >= 1, "bin_size_x", "must be >= 1")
        self.check(self.bin_size_y >= 1, "bin_size_y", "must be >= 1")
        self.check(self.nsigma > 0, "nsigma", "must be > 0")
        self.check(self.max_iter >= 1, "max_iter", "must be >= 1")
        self.check(0 <= self.min_fraction <= 1, "min_fraction", "must be in [0, 1]")


@dataclass(frozen=True)
class SkyStatsConfig(Config):
    """Statistics of the scale samples (LSST ``SkyStatsConfig``)."""

    statistic: _Statistic = config_field("meanclip", doc="Statistic of a sample [statistic].")
    clip: float = config_field(3.0, doc="Clipping threshold [clip].")
    n_iter: int = config_field(3, doc="Clipping passes [nIter].")
    min_fraction: float = config_field(
        0.1, doc="Minimum fraction of good pixels for a sample to be used."
    )
    bad_planes: tuple[str, ...] = config_field(
        ("SAT", "DETECTED", "DETECTED_NEGATIVE", "BAD", "NO_DATA"),
        doc="Mask planes excluded from the samples [mask].",
    )

    def validate(self) -> None:
        self.check(self.clip > 0, "clip", "must be > 0")
        self.check(self.n_iter >= 1, "n_iter", "must be >= 1")
        self.check(0 <= self.min_fraction <= 1, "min_fraction", "must be in [0, 1]")


@dataclass(frozen=True)
class SkyMeasurementConfig(Config):
    """Configuration of :class:`SkyMeasurementTask` (LSST names in brackets)."""

    background: SkyBackgroundConfig = config_field(
        doc="Binning of sky frames [background].", factory=SkyBackgroundConfig
    )
    sky_iter: int = config_field(3, doc="Rejection passes of the scale fit [skyIter].")
    sky_rej: float = config_field(3.0, doc="Rejection threshold of the scale fit [skyRej].")
    x_num_samples: int = config_field(4, doc="Scale samples per detector in x [xNumSamples].")
    y_num_samples: int = config_field(4, doc="Scale samples per detector in y [yNumSamples].")
    stats: SkyStatsConfig = config_field(
        doc="Statistics of the scale samples [stats].", factory=SkyStatsConfig
    )
    combine_nsigma: float = config_field(
        3.0, doc="Clipping threshold when averaging binned models (MEANCLIP stack)."
    )
    combine_max_iter: int = config_field(3, doc="Clipping passes when averaging binned models.")

    def validate(self) -> None:
        self.check(self.sky_iter >= 0, "sky_iter", "must be >= 0")
        self.check(self.sky_rej > 0, "sky_rej", "must be > 0")
        self.check(self.x_num_samples >= 1, "x_num_samples", "must be >= 1")
        self.check(self.y_num_samples >= 1, "y_num_samples", "must be >= 1")
        self.check(self.combine_nsigma > 0, "combine_nsigma", "must be > 0")
        self.check(self.combine_max_iter >= 1, "combine_max_iter", "must be >= 1")


def _masked_image(image: MaskedImage | Exposure) -> MaskedImage:
    return image.masked_image if isinstance(image, Exposure) else image


def _check_compatible(models: Sequence[BackgroundModel]) -> None:
    """Raise unless every model has the first one's box, bin size and bin grid."""
    first = models[0]
    for i, model in enumerate(models[1:], start=1):
        if (model.bbox, tuple(model.bin_size), model.values.shape) != (
            first.bbox,
            tuple(first.bin_size),
            first.values.shape,
        ):
            raise InvalidParameterError(
                f"bg_list[{i}] has box {model.bbox}, bins {model.bin_size} and grid "
                f"{model.values.shape}, but bg_list[0] has {first.bbox}, {first.bin_size} "
                f"and {first.values.shape}: only models of one detector binned alike can be "
                "averaged"
            )


def _stack_variance(variances: np.ndarray, std: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Variance of a stacked mean: the empirical one, or the propagated one below 2 inputs."""
    finite = np.isfinite(variances)
    k = finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        propagated = np.where(finite, variances, 0.0).sum(axis=0) / k.astype(np.float64) ** 2
        empirical = np.asarray(std, np.float64) ** 2 / n
    return np.where(n >= 2, empirical, np.where(k > 0, propagated, np.nan))


class SkyMeasurementTask(Task):
    """Create, persist and use sky frames (LSST ``SkyMeasurementTask``).

    A sky frame is like a fringe frame — the average of many exposures of the
    night sky with astrophysical objects rejected — but its structure is on
    larger scales, so the exposures are binned and the frame is a
    :class:`~skydiff.background.BackgroundModel`. It represents the
    camera's response to the sky: scaled to a visit by
    :meth:`measure_scale` and :meth:`solve_scales`, it is subtracted with
    :meth:`subtract_sky_frame_in_place`.
    """

    ConfigClass = SkyMeasurementConfig
    _DefaultName = "sky"
    config: SkyMeasurementConfig

    # -- building ---------------------------------------------------------------------------

    def measure_background(self, image: MaskedImage | Exposure) -> BackgroundModel:
        """Binned background of ``image``, no approximation (LSST ``measureBackground``).

        Only the bins matter: they are averaged over many exposures by
        :meth:`average_backgrounds`.
        """
        c = self.config.background
        return BackgroundModel.measure(
            _masked_image(image),
            bin_size=(c.bin_size_x, c.bin_size_y),
            statistic=c.statistic,
            bad_planes=c.bad_planes,
            nsigma=c.nsigma,
            max_iter=c.max_iter,
            min_fraction=c.min_fraction,
            interpolation=c.interpolation,
        )

    def average_backgrounds(self, bg_list: Sequence[BackgroundModel]) -> BackgroundModel:
        """Clipped mean, bin by bin, of models of one detector (LSST ``averageBackgrounds``).

        Empty (NaN) bins of an input are left out of that bin's average; a
        bin empty in every input stays NaN (filled from its neighbours when
        the model is evaluated). Values and variances are rounded to
        float32, so that the frame survives :meth:`background_to_exposure`
        exactly.

        Returns
        -------
        BackgroundModel
            ``values``: the clipped means; ``variances``: their empirical
            variance (propagated from the inputs where fewer than two inputs
            remain); ``counts``: pixels used over all inputs; bin centres:
            the mean of the inputs'.

        Raises
        ------
        InvalidParameterError
            If ``bg_list`` is empty or its models differ in box or binning.
        """
        models = list(bg_list)
        if not models:
            raise InvalidParameterError("bg_list is empty: nothing to average")
        _check_compatible(models)
        c = self.config
        values = np.stack([m.values for m in models])
        stats = clipped_stats(values, nsigma=c.combine_nsigma, max_iter=c.combine_max_iter, axis=0)
        n = np.asarray(stats.n)
        variances = _stack_variance(np.stack([m.variances for m in models]), stats.stddev, n)
        first = models[0]
        return BackgroundModel(
            bbox=first.bbox,
            bin_size=tuple(first.bin_size),
            values=np.asarray(stats.mean, np.float32).astype(np.float64),
            variances=variances.astype(np.float32).astype(np.float64),
            counts=np.sum([m.counts for m in models], axis=0).astype(np.int64),
            x_centers=np.mean([m.x_centers for m in models], axis=0),
            y_centers=np.mean([m.y_centers for m in models], axis=0),
            interpolation=first.interpolation,
        )

    # -- persistence -------------------------------------------------------------------------

    def background_to_exposure(
        self,
        model: BackgroundModel,
        *,
        visit_info: VisitInfo | None = None,
        band: str = "",
        physical_filter: str = "",
    ) -> Exposure:
        """The sky frame as an Exposure (LSST ``backgroundToExposure``).

        See :func:`skydiff.skyframe.background_to_exposure`.
        """
        return background_to_exposure(
            model, visit_info=visit_info, band=band, physical_filter=physical_filter
        )

    @staticmethod
    def exposure_to_background(exposure: Exposure) -> BackgroundModel:
        """The sky frame stored in ``exposure`` (LSST ``exposureToBackground``)."""
        return exposure_to_background(exposure)

    # -- using -------------------------------------------------------------------------------

    def measure_scale(
        self, image: MaskedImage | Exposure, sky_background: BackgroundModel
    ) -> ScaleSamples:
        """Samples of ``image`` and of the sky frame on a grid of cells (LSST ``measureScale``).

        The image must still contain its sky (its subtracted background
        added back). Pixels of the ``stats.bad_planes`` are excluded from
        both samples. :attr:`ScaleSamples.scale` gives this detector's own
        scale; :meth:`solve_scales` combines the samples of all detectors of
        a visit into one.

        Raises
        ------
        InvalidParameterError
            If the sky frame does not cover the image's box.
        """
        masked = _masked_image(image)
        _check_covers(sky_background, masked)
        c = self.config
        good = ~masked.mask.get(c.stats.bad_planes, ignore_missing=True)
        return sample_grid(
            masked.image,
            sky_background.evaluate(masked.bbox),
            good=good,
            n_x=c.x_num_samples,
            n_y=c.y_num_samples,
            statistic=c.stats.statistic,
            nsigma=c.stats.clip,
            max_iter=c.stats.n_iter,
            min_fraction=c.stats.min_fraction,
        )

    def fit_scales(self, scales: Sequence[ScaleSamples]) -> ScaleFit:
        """:meth:`solve_scales` with the fit's sample counts and residual scatter."""
        scales = list(scales)
        if not scales:
            raise InvalidParameterError("scales is empty: measure_scale on at least one detector")
        image = np.concatenate([s.image_samples for s in scales])
        sky = np.concatenate([s.sky_samples for s in scales])
        return solve_scale(image, sky, n_iter=self.config.sky_iter, rejection=self.config.sky_rej)

    def solve_scales(self, scales: Sequence[ScaleSamples]) -> float:
        """One scale factor from the samples of all detectors (LSST ``solveScales``).

        Least squares of ``image = scale * sky`` over every sample pair, with
        ``sky_iter`` passes rejecting pairs beyond ``sky_rej`` IQR-sigmas.
        """
        return self.fit_scales(scales).scale

    def subtract_sky_frame_in_place(
        self,
        image: MaskedImage | Exposure,
        sky_background: BackgroundModel,
        scale: float,
        bg_list: BackgroundList | None = None,
    ) -> BackgroundList:
        """Subtract ``scale`` times the sky frame from ``image``'s pixels, in place.

        LSST ``subtractSkyFrame``. Only the image plane changes (the frame is
        noiseless).

        Returns
        -------
        BackgroundList
            ``bg_list`` (or an empty list) with the scaled sky frame
            appended: exactly what was subtracted.
        """
        masked = _masked_image(image)
        _check_covers(sky_background, masked)
        if not np.isfinite(scale):
            raise InvalidParameterError(f"scale must be finite, got {scale!r}")
        scaled = sky_background.scaled(float(scale))
        masked.image -= scaled.evaluate(masked.bbox)
        return (bg_list if bg_list is not None else BackgroundList()).appended(scaled)


def _check_covers(sky_background: BackgroundModel, image: MaskedImage) -> None:
    if not isinstance(sky_background, BackgroundModel):
        raise InvalidParameterError(
            f"sky_background must be a BackgroundModel, got {type(sky_background).__name__}"
        )
    if not sky_background.bbox.contains(image.bbox):
        raise InvalidParameterError(
            f"sky_background covers {sky_background.bbox}, which does not contain the "
            f"image's {image.bbox}: is it the sky frame of another detector?"
        )
