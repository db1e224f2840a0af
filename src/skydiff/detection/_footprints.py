"""Thresholding a PSF-smoothed image into footprints and peaks (array layer)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ..math import box_dilate, find_peaks

__all__ = ["Footprints", "detect_footprints"]


@dataclass(frozen=True)
class Footprints:
    """Detections of one polarity.

    Attributes
    ----------
    labels : numpy.ndarray
        int32 image, footprint number (1, 2, ...) of each pixel after
        growing, 0 outside footprints.
    n_footprints : int
        Number of footprints.
    peak_x, peak_y : numpy.ndarray
        Array coordinates of the peaks kept (brightest first within a footprint).
    peak_footprint : numpy.ndarray
        Footprint number of each peak.
    peak_significance : numpy.ndarray
        Smoothed significance at each peak (positive for both polarities).
    """

    labels: np.ndarray
    n_footprints: int
    peak_x: np.ndarray
    peak_y: np.ndarray
    peak_footprint: np.ndarray
    peak_significance: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """Boolean image of the (grown) footprints."""
        return self.labels > 0

    def n_peaks_per_footprint(self) -> np.ndarray:
        """Number of kept peaks of each footprint, indexed by footprint number."""
        return np.bincount(self.peak_footprint, minlength=self.n_footprints + 1)


def label_row_bands(
    mask: np.ndarray, *, structure: np.ndarray | None = None
) -> tuple[np.ndarray, int]:
    """``scipy.ndimage.label`` (int32), run only on the bands of rows that hold any pixel.

    A connected region cannot cross an empty row, so each band is labelled on
    its own and the numbers offset: the result equals labelling the whole
    image, but a sparse mask (a difference image's few detections) costs a
    fraction of it.
    """
    labels = np.zeros(mask.shape, np.int32)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return labels, 0
    breaks = np.flatnonzero(np.diff(rows) > 1)
    starts = np.r_[rows[0], rows[breaks + 1]]
    stops = np.r_[rows[breaks], rows[-1]] + 1
    total = 0
    for start, stop in zip(starts, stops, strict=True):
        band = labels[start:stop]
        found = ndimage.label(mask[start:stop], structure=structure, output=band)
        if total and found:
            band[band > 0] += total
        total += found
    return labels, total


def detect_footprints(
    significance: np.ndarray,
    *,
    threshold: float,
    grow: int,
    min_pixels: int = 1,
    min_peak_separation: float = 0.0,
    single_peak: np.ndarray | None = None,
) -> Footprints:
    """Footprints where ``significance > threshold``, grown by ``grow`` pixels, with peaks.

    For negative detections pass ``-significance``. Peaks are local maxima
    of the significance above the threshold; of two peaks closer than
    ``min_peak_separation`` only the brighter is kept, so noise on the wings
    of a bright source does not split it. Regions with fewer than
    ``min_pixels`` pixels above threshold are dropped before growing.
    Footprints touching a True pixel of ``single_peak`` (saturated cores,
    whose masked pixels break the smoothed profile into many false maxima)
    keep only their brightest peak.
    """
    above = significance > threshold
    if min_pixels > 1:
        labels, n = label_row_bands(above)
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        above &= (sizes >= min_pixels)[labels] & (labels > 0)
    grown = box_dilate(above, grow)
    labels, n = label_row_bands(grown, structure=np.ones((3, 3), bool))
    py, px = find_peaks(significance, above)
    values = significance[py, px]
    order = np.argsort(-values, kind="stable")
    px, py, values = px[order], py[order], values[order]
    keep = _separated(px, py, min_peak_separation)
    if single_peak is not None and single_peak.any():
        flagged = np.zeros(n + 1, bool)
        flagged[np.unique(labels[single_peak & grown])] = True
        footprint = labels[py, px]
        _, first = np.unique(footprint, return_index=True)
        brightest = np.zeros(px.size, bool)
        brightest[first] = True  # peaks are sorted brightest first
        keep &= ~flagged[footprint] | brightest
    px, py, values = px[keep], py[keep], values[keep]
    return Footprints(
        labels=labels,
        n_footprints=int(n),
        peak_x=px,
        peak_y=py,
        peak_footprint=labels[py, px],
        peak_significance=values,
    )


def _separated(x: np.ndarray, y: np.ndarray, distance: float) -> np.ndarray:
    """Keep mask dropping any peak within ``distance`` of a brighter kept one.

    Peaks are ordered brightest first.
    """
    keep = np.ones(x.size, bool)
    if distance <= 0 or x.size < 2:
        return keep
    pairs = cKDTree(np.column_stack([x, y])).query_pairs(distance, output_type="ndarray")
    if pairs.size == 0:
        return keep
    pairs.sort(axis=1)  # (brighter, fainter) since indices follow brightness
    for bright, faint in pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]:
        if keep[bright]:
            keep[faint] = False
    return keep
