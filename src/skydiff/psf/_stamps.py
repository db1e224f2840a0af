"""Many PSF images at once: one per source, each at its sub-pixel position."""

from __future__ import annotations

import math

import numpy as np
from scipy import fft

from ._base import Psf

__all__ = ["psf_stamps", "resize_kernel", "shift_stamps"]


def shift_stamps(stamps: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Each stamp of a ``(n, s, s)`` stack moved by its own ``(dx, dy)`` (FFT phase ramps).

    Stamps are zero-padded first so nothing wraps around; shifts should be
    at most a pixel or two.
    """
    _, ny, nx = stamps.shape
    pad = 2 + math.ceil(max(np.max(np.abs(dx), initial=0), np.max(np.abs(dy), initial=0)))
    fy_len, fx_len = (
        fft.next_fast_len(ny + 2 * pad, real=True),
        fft.next_fast_len(nx + 2 * pad, real=True),
    )
    padded = np.pad(stamps, ((0, 0), (pad, fy_len - ny - pad), (pad, fx_len - nx - pad)))
    fy, fx = fft.fftfreq(fy_len), fft.rfftfreq(fx_len)
    spectrum = fft.rfft2(padded, axes=(1, 2), workers=-1)
    spectrum *= np.exp(-2j * np.pi * np.asarray(dy)[:, None, None] * fy[None, :, None])
    spectrum *= np.exp(-2j * np.pi * np.asarray(dx)[:, None, None] * fx[None, None, :])
    shifted = fft.irfft2(spectrum, s=padded.shape[1:], axes=(1, 2), workers=-1)
    return shifted[:, pad : pad + ny, pad : pad + nx]


def resize_kernel(kernel: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop or zero-pad an odd kernel to ``size``."""
    current = kernel.shape[0]
    if current >= size:
        start = (current - size) // 2
        return kernel[start : start + size, start : start + size]
    pad = (size - current) // 2
    return np.pad(kernel, pad)


def psf_stamps(
    psf: Psf,
    x: np.ndarray,
    y: np.ndarray,
    *,
    size: int | None = None,
    grid_spacing: float = 1024.0,
) -> np.ndarray:
    """PSF images ``(n, size, size)`` for sources at parent positions ``(x, y)``.

    Stamp ``k`` is centred on pixel ``(round(x[k]), round(y[k]))`` with the
    source at its sub-pixel offset. Stamps smaller than the PSF's kernel hold
    the fraction of the unit-sum PSF that falls in them, so that a PSF fit on
    a small stamp still measures the total flux. The PSF is evaluated on a grid of nodes
    about ``grid_spacing`` pixels apart over the sources' extent and
    interpolated quadratically between nodes (a PSF whose width is quadratic
    in position is reproduced exactly; bilinear interpolation would leave
    width errors of ~0.5%, hence flux errors as large), then moved to each
    source's offset by an FFT phase ramp, all vectorised.
    """
    x, y = np.atleast_1d(np.asarray(x, np.float64)), np.atleast_1d(np.asarray(y, np.float64))
    size = psf.kernel_size if size is None else int(size)
    if x.size == 0:
        return np.zeros((0, size, size))
    gx, gy = _grid(x, grid_spacing), _grid(y, grid_spacing)
    kernels = np.array([[resize_kernel(psf.kernel_image(a, b), size) for a in gx] for b in gy])
    ix, wx = _quadratic_weights(gx, x)
    iy, wy = _quadratic_weights(gy, y)
    weights = (wy[:, :, None] * wx[:, None, :]).reshape(x.size, 9)
    stamps = np.empty((x.size, size * size))
    cell = iy * gx.size + ix
    for node in np.unique(cell):
        members = np.flatnonzero(cell == node)
        j, i = divmod(int(node), gx.size)
        neighbours = kernels[j - 1 : j + 2, i - 1 : i + 2].reshape(9, size * size)
        stamps[members] = weights[members] @ neighbours  # one matrix product per grid cell
    stamps = stamps.reshape(x.size, size, size)
    contained = stamps.sum(axis=(1, 2), keepdims=True)
    stamps = shift_stamps(stamps, x - np.rint(x), y - np.rint(y))
    return stamps * (contained / stamps.sum(axis=(1, 2), keepdims=True))


def _grid(values: np.ndarray, spacing: float) -> np.ndarray:
    """At least three evenly spaced nodes spanning ``values``."""
    low, high = float(values.min()), float(values.max())
    if high - low < 1.0:
        low, high = low - 1.0, high + 1.0
    n = max(3, math.ceil((high - low) / spacing) + 1)
    return np.linspace(low, high, n)


def _quadratic_weights(nodes: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central node index and Lagrange weights ``(n, 3)`` on nodes ``index - 1 .. index + 1``."""
    step = nodes[1] - nodes[0]
    index = np.clip(np.rint((values - nodes[0]) / step).astype(int), 1, nodes.size - 2)
    t = (values - nodes[index]) / step
    weights = np.stack([0.5 * t * (t - 1.0), 1.0 - t * t, 0.5 * t * (t + 1.0)], axis=-1)
    return index, weights
