"""A background binned on the focal plane across all detectors (LSST ``FocalPlaneBackground``).

Detectors are placed on the focal plane by translation only: each has the
focal-plane pixel position of its parent pixel ``(0, 0)`` (its *origin*;
:meth:`skydiff.sim.Camera.detector_origin` for simulated cameras). Bins are
laid on the focal plane, so a bin straddling a chip gap collects pixels of
the detectors on both sides and the model is continuous across the gaps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from ..background import BackgroundModel
from ..errors import AlgorithmError, InvalidExposureError, InvalidParameterError
from ..image import Box, Exposure, MaskedImage
from ..math import bin_image
from ..task import Config, config_field

__all__ = [
    "DetectorLayout",
    "FocalPlaneBackground",
    "FocalPlaneBackgroundConfig",
    "detector_offsets",
]

#: Bins kept on each side of a detector when the model is cut to it: Akima
#: interpolation between two bins depends on the two bins beyond each, so a
#: margin of 3 reproduces the focal-plane model exactly on the detector.
_DETECTOR_MARGIN = 3


@runtime_checkable
class DetectorLayout(Protocol):
    """Anything that places detectors on the focal plane, such as :class:`skydiff.sim.Camera`.

    The camera gives the position of a detector's first pixel; it serves as
    the origin of calexps whose box starts at ``(0, 0)`` (skydiff.sim's
    default). For other boxes pass a mapping with the origin of parent
    pixel ``(0, 0)``.
    """

    def detector_origin(self, detector: int) -> tuple[float, float]:
        """Focal-plane pixel position of the detector's parent pixel ``(0, 0)``."""
        ...


Origins = Mapping[int, tuple[float, float]] | DetectorLayout


@dataclass(frozen=True)
class FocalPlaneBackgroundConfig(Config):
    """Configuration of a :class:`FocalPlaneBackground` (LSST names in brackets)."""

    bin_size_x: int = config_field(256, doc="Bin width in focal-plane pixels [xSize].")
    bin_size_y: int = config_field(256, doc="Bin height in focal-plane pixels [ySize].")
    min_fraction: float = config_field(
        0.1, doc="Minimum fraction of a bin's area with good pixels for it to be used [minFrac]."
    )
    statistic: Literal["meanclip", "median", "mean"] = config_field(
        "meanclip", doc="Statistic of a detector's pixels in a bin."
    )
    nsigma: float = config_field(3.0, doc="Clipping threshold of meanclip.")
    max_iter: int = config_field(3, doc="Clipping passes of meanclip.")
    bad_planes: tuple[str, ...] = config_field(
        ("BAD", "SAT", "INTRP", "DETECTED", "DETECTED_NEGATIVE", "EDGE", "NO_DATA"),
        doc="Mask planes ignored [mask].",
    )
    interpolation: Literal["akima", "natural", "linear", "constant"] = config_field(
        "akima", doc="Interpolation between bins [interpolation]."
    )

    def validate(self) -> None:
        self.check(self.bin_size_x >= 1, "bin_size_x", "must be >= 1")
        self.check(self.bin_size_y >= 1, "bin_size_y", "must be >= 1")
        self.check(0 < self.min_fraction <= 1, "min_fraction", "must be in (0, 1]")
        self.check(self.nsigma > 0, "nsigma", "must be > 0")
        self.check(self.max_iter >= 1, "max_iter", "must be >= 1")


def _origin_of(origins: Origins, detector: int) -> tuple[float, float]:
    if isinstance(origins, Mapping):
        if detector not in origins:
            raise InvalidParameterError(
                f"origins has no entry for detector {detector} (known: {sorted(origins)})"
            )
        return origins[detector]
    if isinstance(origins, DetectorLayout):
        return origins.detector_origin(detector)
    raise InvalidParameterError(
        "origins must map detector -> (x0, y0) or have a detector_origin(detector) method, "
        f"got {type(origins).__name__}"
    )


def _as_offset(origin: tuple[float, float], detector: int) -> tuple[int, int]:
    try:
        x0, y0 = (float(v) for v in origin)
    except (TypeError, ValueError) as error:
        raise InvalidParameterError(
            f"origins[{detector}] must be an (x0, y0) pair, got {origin!r}"
        ) from error
    if not (np.isfinite(x0) and np.isfinite(y0)):
        raise InvalidParameterError(f"origins[{detector}] must be finite, got {origin!r}")
    return round(x0), round(y0)


def detector_offsets(
    exposures: Sequence[Exposure], origins: Origins | None
) -> list[tuple[int, int]]:
    """Focal-plane offset ``(dx, dy)`` of each exposure: focal plane = parent pixel + offset.

    Looked up by ``exposure.visit_info.detector`` and rounded to whole
    pixels (bins are hundreds of pixels wide). ``origins=None`` is allowed
    for a single exposure, whose parent frame then is the focal plane.

    Raises
    ------
    InvalidParameterError
        If an origin is missing or malformed, or a detector appears twice.
    InvalidExposureError
        If an exposure has no detector identifier.
    """
    if origins is None:
        if len(exposures) > 1:
            raise InvalidParameterError(
                f"origins is required to place {len(exposures)} detectors on the focal plane"
            )
        return [(0, 0)] * len(exposures)
    offsets, seen = [], set()
    for exposure in exposures:
        detector = exposure.visit_info.detector
        if detector is None:
            raise InvalidExposureError(
                f"exposure {exposure.describe()} has no detector in its visit_info: "
                "its focal-plane origin cannot be looked up"
            )
        if detector in seen:
            raise InvalidParameterError(f"calexps holds detector {detector} more than once")
        seen.add(detector)
        offsets.append(_as_offset(_origin_of(origins, detector), detector))
    return offsets


@dataclass
class _BinSums:
    """Running sums over the focal-plane grid, detector by detector."""

    weighted: np.ndarray
    counts: np.ndarray
    variance: np.ndarray
    x_moment: np.ndarray
    y_moment: np.ndarray

    @classmethod
    def zeros(cls, shape: tuple[int, int]) -> _BinSums:
        return cls(*(np.zeros(shape) for _ in range(5)))


@dataclass(frozen=True)
class _Grid:
    """Bins of ``size`` pixels laid over the focal plane, centred on it."""

    x0: int
    y0: int
    nx: int
    ny: int
    size: tuple[int, int]

    @classmethod
    def centred(cls, box: Box, size: tuple[int, int]) -> _Grid:
        """Fewest bins covering ``box``, the spare width split evenly between both edges.

        Centring keeps the outer bins well filled, so they are measured
        rather than extrapolated.
        """
        nx, ny = -(-box.width // size[0]), -(-box.height // size[1])
        x0 = box.x0 - (nx * size[0] - box.width) // 2
        y0 = box.y0 - (ny * size[1] - box.height) // 2
        return cls(x0, y0, nx, ny, size)

    def bin_centers(self, axis: int) -> np.ndarray:
        """Geometric centres of the bin columns (``axis=0``) or rows (``axis=1``)."""
        start, n, size = (
            (self.x0, self.nx, self.size[0]) if axis == 0 else (self.y0, self.ny, self.size[1])
        )
        return start + np.arange(n) * size + 0.5 * (size - 1)


def _bin_range(start: int, end: int, origin: int, size: int) -> tuple[int, int]:
    """First and one-past-last bin index of focal-plane pixels ``start .. end - 1``."""
    return (start - origin) // size, -(-(end - origin) // size)


def _add_detector(
    sums: _BinSums,
    image: MaskedImage,
    offset: tuple[int, int],
    grid: _Grid,
    config: FocalPlaneBackgroundConfig,
) -> None:
    """Bin one detector on the focal-plane grid and add it to ``sums``."""
    bx, by = grid.size
    box = image.bbox.shifted(*offset)
    i0, i1 = _bin_range(box.x0, box.x_end, grid.x0, bx)
    j0, j1 = _bin_range(box.y0, box.y_end, grid.y0, by)
    pad_x, pad_y = box.x0 - grid.x0 - i0 * bx, box.y0 - grid.y0 - j0 * by
    inside = (slice(pad_y, pad_y + box.height), slice(pad_x, pad_x + box.width))
    padded = np.full(((j1 - j0) * by, (i1 - i0) * bx), np.nan, np.float32)
    padded[inside] = image.image
    good = np.zeros(padded.shape, bool)
    good[inside] = ~image.mask.get(config.bad_planes, ignore_missing=True)
    binned = bin_image(
        padded,
        bin_size=(bx, by),
        good=good,
        statistic=config.statistic,
        nsigma=config.nsigma,
        max_iter=config.max_iter,
        min_fraction=0.0,
    )
    n = binned.counts.astype(np.float64)
    used = n > 0
    cells = (slice(j0, j1), slice(i0, i1))
    sums.weighted[cells] += np.where(used, binned.values * n, 0.0)
    sums.counts[cells] += n
    sums.variance[cells] += np.where(used, binned.variances * n * n, 0.0)
    sums.x_moment[cells] += n * (binned.x_centers + grid.x0 + i0 * bx)[None, :]
    sums.y_moment[cells] += n * (binned.y_centers + grid.y0 + j0 * by)[:, None]


def _centers(moment: np.ndarray, counts: np.ndarray, geometric: np.ndarray) -> np.ndarray:
    """Count-weighted pixel centroid of each bin column (or row); geometric where empty."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, moment / np.maximum(counts, 1), geometric)


def _occupied(used: np.ndarray, axis: int) -> slice:
    """Rows (``axis=1``) or columns (``axis=0``) from the first to the last with a used bin."""
    indices = np.flatnonzero(used.any(axis=axis))
    return slice(int(indices[0]), int(indices[-1]) + 1)


def _model_from_sums(
    sums: _BinSums, grid: _Grid, focal_plane: Box, config: FocalPlaneBackgroundConfig
) -> BackgroundModel:
    """Bin values from the sums; outer rows and columns without a used bin are dropped."""
    bx, by = grid.size
    used = sums.counts >= config.min_fraction * bx * by
    if not used.any():
        raise AlgorithmError(
            f"no focal-plane background bin has {config.min_fraction:.0%} of its "
            f"{bx} x {by} pixels good: lower min_fraction or bin more coarsely",
            {"n_bins": int(used.size), "max_counts": float(sums.counts.max())},
        )
    rows, columns = _occupied(used, 1), _occupied(used, 0)
    cells = (rows, columns)
    used = used[cells]
    n = np.where(used, sums.counts[cells], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(used, sums.weighted[cells] / n, np.nan)
        variances = np.where(used, sums.variance[cells] / n**2, np.nan)
    x_centers = _centers(
        (sums.x_moment[cells] * used).sum(0), n.sum(0), grid.bin_centers(0)[columns]
    )
    y_centers = _centers((sums.y_moment[cells] * used).sum(1), n.sum(1), grid.bin_centers(1)[rows])
    return BackgroundModel(
        bbox=focal_plane,
        bin_size=(bx, by),
        values=values,
        variances=variances,
        counts=n.astype(np.int64),
        x_centers=x_centers,
        y_centers=y_centers,
        interpolation=config.interpolation,
    )


@dataclass(frozen=True)
class FocalPlaneBackground:
    """A background binned in focal-plane pixels across detectors (LSST ``FocalPlaneBackground``).

    Each detector's good pixels in a bin give a clipped mean; the bin's value
    is the mean of those, weighted by their pixel counts (LSST ``addCcd`` and
    ``merge``). Bins with fewer good pixels than ``min_fraction`` of their
    area — those inside chip gaps or covered by a large object — are filled
    from their neighbours by harmonic interpolation. The bin grid is centred
    on the focal plane and outer rows and columns without a usable bin are
    dropped, so the edges of the camera are extrapolated smoothly rather
    than held flat. Bin centres are the pixel centroids of each bin column
    and row, so bins cut by a gap are placed where their pixels are.

    Attributes
    ----------
    model : BackgroundModel
        The focal-plane model: its box, bins and centres are in focal-plane
        pixels; empty bins are NaN.
    """

    model: BackgroundModel

    @classmethod
    def measure(
        cls,
        images: Sequence[MaskedImage | Exposure],
        offsets: Sequence[tuple[int, int]],
        *,
        config: FocalPlaneBackgroundConfig | None = None,
    ) -> FocalPlaneBackground:
        """Bin every detector's good pixels on one focal-plane grid.

        Parameters
        ----------
        images : sequence of MaskedImage or Exposure
            One image per detector, with the sky still in it.
        offsets : sequence of (int, int)
            Per image, ``(dx, dy)`` with focal-plane pixel = parent pixel + offset
            (see :func:`detector_offsets`).
        config : FocalPlaneBackgroundConfig, optional
            Binning.

        Raises
        ------
        InvalidParameterError
            If ``images`` is empty or ``offsets`` differs in length.
        AlgorithmError
            If no bin has enough good pixels.
        """
        config = FocalPlaneBackgroundConfig() if config is None else config
        images = [i.masked_image if isinstance(i, Exposure) else i for i in images]
        if not images:
            raise InvalidParameterError("images is empty: a focal-plane background needs one")
        if len(offsets) != len(images):
            raise InvalidParameterError(
                f"offsets has {len(offsets)} entries for {len(images)} images"
            )
        boxes = [image.bbox.shifted(*offset) for image, offset in zip(images, offsets, strict=True)]
        focal_plane = boxes[0]
        for box in boxes[1:]:
            focal_plane = focal_plane.union(box)
        grid = _Grid.centred(focal_plane, (config.bin_size_x, config.bin_size_y))
        sums = _BinSums.zeros((grid.ny, grid.nx))
        for image, offset in zip(images, offsets, strict=True):
            _add_detector(sums, image, offset, grid, config)
        return cls(_model_from_sums(sums, grid, focal_plane, config))

    @property
    def n_empty_bins(self) -> int:
        """Bins without enough good pixels (filled from their neighbours)."""
        return int((~np.isfinite(self.model.values)).sum())

    def to_detector(self, bbox: Box, offset: tuple[int, int]) -> BackgroundModel:
        """The model on one detector, as a model in its parent frame (LSST ``toCcdBackground``).

        The result keeps the focal-plane bins around the detector (three on
        each side, empty ones filled), shifted into the detector's frame, so
        that its :meth:`~BackgroundModel.evaluate` equals the focal-plane
        model on the detector's pixels and joins its neighbours' seamlessly
        (exactly for Akima, linear and constant interpolation; to rounding
        for natural splines, which are not local).
        """
        model = self.model
        dx, dy = int(offset[0]), int(offset[1])
        box = bbox.shifted(dx, dy)
        columns = _crop(model.x_centers, box.x0, box.x_end - 1)
        rows = _crop(model.y_centers, box.y0, box.y_end - 1)
        cells = (rows, columns)
        return BackgroundModel(
            bbox=bbox,
            bin_size=tuple(model.bin_size),
            values=model.filled_values()[cells],
            variances=model.variances[cells],
            counts=model.counts[cells],
            x_centers=model.x_centers[columns] - dx,
            y_centers=model.y_centers[rows] - dy,
            interpolation=model.interpolation,
        )

    def evaluate(self, bbox: Box, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
        """The focal-plane model over a detector's ``bbox`` (parent frame, at ``offset``)."""
        return self.model.evaluate(bbox.shifted(int(offset[0]), int(offset[1])))


def _crop(centers: np.ndarray, first: int, last: int) -> slice:
    """Bins needed to interpolate pixels ``first .. last``, with the margin, within the grid."""
    low = max(int(np.searchsorted(centers, first, side="right")) - 1, 0)
    high = min(int(np.searchsorted(centers, last, side="left")), centers.size - 1)
    return slice(max(low - _DETECTOR_MARGIN, 0), min(high + _DETECTOR_MARGIN + 1, centers.size))
