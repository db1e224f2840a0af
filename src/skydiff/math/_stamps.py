"""Stamps: small cut-outs of many sources at once (array layer)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["StampSet", "cut_stamps"]


@dataclass(frozen=True)
class StampSet:
    """Pixels around many sources, ``(n, s, s)``, centred on their nearest pixel.

    Attributes
    ----------
    image, variance : numpy.ndarray
        Pixel values (0 outside the image).
    mask : numpy.ndarray
        Mask bits (0 outside the image).
    inside : numpy.ndarray
        True for pixels inside the image.
    x0, y0 : numpy.ndarray
        Array coordinates of each stamp's centre pixel.
    """

    image: np.ndarray
    variance: np.ndarray
    mask: np.ndarray
    inside: np.ndarray
    x0: np.ndarray
    y0: np.ndarray


def cut_stamps(
    image: np.ndarray,
    variance: np.ndarray,
    mask: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    size: int,
) -> StampSet:
    """Stamps of ``size`` (odd) pixels around array positions ``(x, y)`` by fancy indexing."""
    half = size // 2
    cx, cy = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
    offsets = np.arange(-half, half + 1)
    rows = cy[:, None, None] + offsets[None, :, None]
    cols = cx[:, None, None] + offsets[None, None, :]
    height, width = image.shape
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    r, c = np.clip(rows, 0, height - 1), np.clip(cols, 0, width - 1)
    return StampSet(
        image=np.where(inside, image[r, c], 0.0),
        variance=np.where(inside, variance[r, c], 0.0),
        mask=np.where(inside, mask[r, c], 0),
        inside=inside,
        x0=cx,
        y0=cy,
    )
