"""Star stamps for PSF fitting: cut out, cleaned of local sky and centred (array layer).

Stars are cut out as odd stamps with one fancy-indexing gather, their local
sky (the median of the stamp's outer ring) removed, centroided with a
Gaussian window and moved onto the centre of their central pixel by one
batched Fourier phase shift. Pure numpy/scipy: no configuration, no logging.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..math import adaptive_moments, masked_median, windowed_centroids
from ..math import cut_stamps as _cut
from ._base import SIGMA_TO_FWHM
from ._stamps import shift_stamps

__all__ = [
    "CentredStamps",
    "centre_stamps",
    "cut_stamps",
    "local_backgrounds",
]

#: Fewest pixels cut beyond each side of a stamp, so that the Fourier shift's wrap-around is
#: cropped; more are added to reach a stamp width whose FFT is fast (factors 3, 5, 7).
_SHIFT_MARGIN = 3
#: Width in pixels of the outer ring of a stamp that gives its local background.
_RING_WIDTH = 2
_CENTROID_ITERATIONS = 12


def cut_stamps(
    image: np.ndarray,
    variance: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    size: int,
    mask: np.ndarray | None = None,
    bad_bits: int = 0,
    x0: int = 0,
    y0: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stamps ``size`` pixels wide (odd) centred on the pixels nearest to ``(x, y)``.

    ``image``, ``variance`` and ``mask`` have their first pixel at parent
    position ``(x0, y0)``.

    Returns
    -------
    data, var : numpy.ndarray
        ``(n, size, size)`` float64 stamps (0 and 1 where not ``ok``).
    ok : numpy.ndarray
        True for stamps inside the image whose pixels are finite, have a
        positive variance and none of ``bad_bits`` set in ``mask``.
    """
    x = np.nan_to_num(np.asarray(x, np.float64) - x0, nan=-1e9)
    y = np.nan_to_num(np.asarray(y, np.float64) - y0, nan=-1e9)
    mask = np.zeros(image.shape, np.int32) if mask is None else mask
    stamps = _cut(image, variance, mask, x, y, size)
    data = stamps.image.astype(np.float64)
    var = stamps.variance.astype(np.float64)
    ok = stamps.inside.all(axis=(1, 2)) & np.isfinite(data).all(axis=(1, 2))
    ok &= (np.isfinite(var) & (var > 0)).all(axis=(1, 2))
    if bad_bits:
        ok &= ~((stamps.mask & bad_bits) != 0).any(axis=(1, 2))
    data[~ok] = 0.0
    var[~ok] = 1.0
    return data, var, ok


def _inside(shape, x, y, size, x0, y0) -> np.ndarray:
    half = size // 2
    with np.errstate(invalid="ignore"):
        ix = np.rint(np.asarray(x, np.float64)) - x0
        iy = np.rint(np.asarray(y, np.float64)) - y0
        return (ix >= half) & (ix < shape[1] - half) & (iy >= half) & (iy < shape[0] - half)


def local_backgrounds(
    data: np.ndarray, *, good: np.ndarray | None = None, width: int = _RING_WIDTH
) -> np.ndarray:
    """Median of the outer ``width`` pixels of each stamp (``good`` ones only; 0 if none)."""
    edge = np.minimum(np.arange(data.shape[1]), np.arange(data.shape[1])[::-1])
    ring = np.minimum(edge[:, None], edge[None, :]) < width
    if good is None:
        return np.median(data[:, ring], axis=1)
    return np.nan_to_num(masked_median(data[:, ring], good=good[:, ring], axis=1))


@dataclass(frozen=True)
class CentredStamps:
    """Background-free stamps of the usable stars, each star on its central pixel's centre.

    Attributes
    ----------
    data, variance : numpy.ndarray
        ``(n, size, size)`` stamps.
    x, y : numpy.ndarray
        Windowed centroids in the parent frame.
    index : numpy.ndarray
        Rows of these stars in the input arrays.
    fwhm : float
        Rough FWHM of the stars (from the median stamp), pixels.
    n_off_image, n_bad_pixels, n_bad_centroid : int
        Input stars dropped: stamp off the image; a masked, non-finite or
        zero-variance pixel; centroid undefined or more than ``max_offset`` away.
    """

    data: np.ndarray
    variance: np.ndarray
    x: np.ndarray
    y: np.ndarray
    index: np.ndarray
    fwhm: float
    n_off_image: int
    n_bad_pixels: int
    n_bad_centroid: int


def _window_sigma(data: np.ndarray) -> float:
    """Gaussian sigma of the median sum-normalised stamp: a rough PSF width."""
    total = data.sum(axis=(1, 2))
    if not (total > 0).any():
        return 1.5
    median = np.median(data[total > 0] / total[total > 0, None, None], axis=0)
    ixx, iyy, ixy = adaptive_moments(median)[2:]
    determinant = ixx * iyy - ixy * ixy
    return float(np.clip(determinant**0.25, 0.5, data.shape[1] / 6.0)) if determinant > 0 else 1.5


def centre_stamps(
    image: np.ndarray,
    variance: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    size: int,
    mask: np.ndarray | None = None,
    bad_bits: int = 0,
    x0: int = 0,
    y0: int = 0,
    local_background: bool = True,
    max_offset: float = 2.0,
) -> CentredStamps:
    """Cut, centroid, recentre and clean the stamps of the stars at ``(x, y)``.

    Stamps are cut with a margin, centroided (:func:`windowed_centroids`,
    after removing their ring median), cut again around the centroid,
    shifted by the sub-pixel remainder (:func:`shift_stamps`; the variance
    too, floored at its stamp minimum) and cropped to ``size``. The image
    must be background-subtracted; with ``local_background`` the median of
    each final stamp's outer two-pixel ring is subtracted as well, a constant
    per star that removes what a smooth background model leaves. Stars whose
    centroid lies more than ``max_offset`` pixels from ``(x, y)`` are dropped.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    wide = _fast_odd_size(size + 2 * _SHIFT_MARGIN)
    cut = dict(size=wide, mask=mask, bad_bits=bad_bits, x0=x0, y0=y0)
    data, _, ok = cut_stamps(image, variance, x, y, **cut)
    data -= local_backgrounds(data)[:, None, None]
    sigma = _window_sigma(data[ok])
    dx, dy = windowed_centroids(data, sigma=sigma, max_iter=_CENTROID_ITERATIONS)
    xc, yc = np.rint(x) + dx, np.rint(y) + dy
    keep = ok & (np.hypot(xc - x, yc - y) <= max_offset) & (data.sum(axis=(1, 2)) > 0)
    data, var, ok_again = cut_stamps(image, variance, xc, yc, **cut)
    keep &= ok_again
    data, var = _recentre(data[keep], var[keep], xc[keep], yc[keep], (wide - size) // 2)
    if local_background:
        data -= local_backgrounds(data)[:, None, None]
    n_off = int(np.count_nonzero(~_inside(image.shape, x, y, wide, x0, y0)))
    return CentredStamps(
        data=data,
        variance=var,
        x=xc[keep],
        y=yc[keep],
        index=np.flatnonzero(keep),
        fwhm=SIGMA_TO_FWHM * sigma,
        n_off_image=n_off,
        n_bad_pixels=int(np.count_nonzero(~ok)) - n_off,
        n_bad_centroid=int(np.count_nonzero(ok & ~keep)),
    )


def _fast_odd_size(size: int) -> int:
    """Smallest odd width from ``size`` whose only prime factors are 3, 5 and 7."""
    while True:
        rest = size
        for factor in (3, 5, 7):
            while rest % factor == 0:
                rest //= factor
        if rest == 1:
            return size
        size += 2


def _recentre(data, var, x, y, margin: int) -> tuple[np.ndarray, np.ndarray]:
    """Stamps with a margin shifted to put ``(x, y)`` on their central pixel, margin cropped."""
    floor = var.min(axis=(1, 2))[:, None, None]
    dx, dy = np.rint(x) - x, np.rint(y) - y
    shifted = shift_stamps(np.concatenate([data, var]), np.tile(dx, 2), np.tile(dy, 2))
    data, var = np.split(shifted[:, margin:-margin, margin:-margin], 2)
    return data, np.maximum(var, floor)
