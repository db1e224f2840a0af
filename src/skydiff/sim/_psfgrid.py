"""PSF kernels on a coarse grid of an image, interpolated and shifted in Fourier space.

The true PSF changes by a few per cent across a detector, so accurate
kernels are integrated only at the nodes of a coarse grid and interpolated
quadratically between them: the interpolation error is third order in the
change across a cell, ~1e-4 of the peak. Kernels are moved to a
source's sub-pixel position by a phase ramp on their Fourier transform. A
pixel-integrated PSF narrower than ~4 px is not band-limited at the pixel
scale, so such kernels are shifted on a 2x finer grid and binned back.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import fft

from ..image import Box
from ..psf import MoffatPsf, VaryingAnalyticPsf
from ._moffat import moffat_stamp

__all__ = ["PsfGrid"]

#: Largest relative change of FWHM (or absolute change of shear) across one cell.
_CELL_TOLERANCE = 0.01
_MAX_CELLS = 32
#: Zero padding (pixels) around kernels before the Fourier shift (no wrap-around).
FOURIER_PAD = 2
#: Minor-axis FWHM (pixels) below which kernels are shifted on a finer grid.
_OVERSAMPLE_BELOW_FWHM = 4.0
_OVERSAMPLE = 2


class PsfGrid:
    """Accurate kernels of a :class:`VaryingAnalyticPsf` at grid nodes, computed on first use.

    Parameters
    ----------
    psf : VaryingAnalyticPsf
        The exposure's true (Moffat) PSF.
    bbox : Box
        The image's box; the grid has ``n_cells`` cells a side, fine enough
        that the PSF changes by less than ``_CELL_TOLERANCE`` across one.
    """

    def __init__(self, psf: VaryingAnalyticPsf, bbox: Box):
        self.psf, self.bbox = psf, bbox
        self.size = psf.kernel_size
        x, y = np.meshgrid(
            np.linspace(bbox.x0, bbox.x_end - 1, 7), np.linspace(bbox.y0, bbox.y_end - 1, 7)
        )
        params = np.array([psf.parameters(a, b) for a, b in zip(x.ravel(), y.ravel(), strict=True)])
        spread = np.ptp(params, axis=0) / np.array([params[:, 0].min(), 1.0, 1.0])
        self.n_cells = int(np.clip(np.ceil(spread.max() / _CELL_TOLERANCE), 2, _MAX_CELLS))
        shear = np.hypot(params[:, 1], params[:, 2]).max()
        minor_fwhm = params[:, 0].min() * math.sqrt((1.0 - shear) / (1.0 + shear))
        self.oversample = _OVERSAMPLE if minor_fwhm < _OVERSAMPLE_BELOW_FWHM else 1
        self._kernels: dict[int, np.ndarray] = {}
        self._spectra: dict[int, np.ndarray] = {}

    def node_position(self, node: int) -> tuple[float, float]:
        """Parent position of a grid node (nodes are numbered row by row)."""
        j, i = divmod(node, self.n_cells + 1)
        step_x, step_y = self.bbox.width / self.n_cells, self.bbox.height / self.n_cells
        return (self.bbox.x0 - 0.5 + i * step_x, self.bbox.y0 - 0.5 + j * step_y)

    def local_psf(self, x: float, y: float) -> MoffatPsf:
        """The exact constant PSF at ``(x, y)``."""
        return self.psf.local_psf(x, y)

    def _node_kernel(self, node: int) -> np.ndarray:
        if node not in self._kernels:
            self._kernels[node] = moffat_stamp(self.local_psf(*self.node_position(node)), self.size)
        return self._kernels[node]

    def _node_spectrum(self, node: int) -> np.ndarray:
        if node not in self._spectra:
            factor = self.oversample
            if factor == 1:
                fine = self._node_kernel(node)
            else:
                local = self.local_psf(*self.node_position(node))
                fine = moffat_stamp(local, self.size, oversample=factor)
            self._spectra[node] = fft.rfft2(np.pad(fine, FOURIER_PAD * factor))
        return self._spectra[node]

    def locate(self, x, y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Group, nodes ``(n, 9)`` and weights ``(n, 9)`` of quadratic interpolation at ``(x, y)``.

        Each position is interpolated from the 3 x 3 nodes around the node
        nearest to it (Lagrange weights); positions of one group share nodes.
        """
        n = self.n_cells
        u = (np.asarray(x, float) - self.bbox.x0 + 0.5) * n / self.bbox.width
        v = (np.asarray(y, float) - self.bbox.y0 + 0.5) * n / self.bbox.height
        i = np.clip(np.rint(u), 1, n - 1).astype(int)
        j = np.clip(np.rint(v), 1, n - 1).astype(int)
        wu, wv = _lagrange3(np.clip(u - i, -1.0, 1.0)), _lagrange3(np.clip(v - j, -1.0, 1.0))
        offsets = np.array([dj * (n + 1) + di for dj in (-1, 0, 1) for di in (-1, 0, 1)])
        group = j * (n + 1) + i
        nodes = group[:, None] + offsets[None, :]
        weights = (wv[:, :, None] * wu[:, None, :]).reshape(len(group), 9)
        return group, nodes, weights

    def kernel_at(self, x: float, y: float) -> np.ndarray:
        """Centred, unit-sum kernel at ``(x, y)``, interpolated between the nodes."""
        _, nodes, weights = self.locate([x], [y])
        return sum(w * self._node_kernel(int(k)) for k, w in zip(nodes[0], weights[0], strict=True))

    def shifted(self, nodes: np.ndarray, weights: np.ndarray, dx, dy) -> np.ndarray:
        """Kernels moved by ``(dx, dy)``: ``(n, size + 2 pad, size + 2 pad)``.

        All sources must share the nine ``nodes`` (one group of
        :meth:`locate`); ``weights`` is ``(n, 9)``.
        """
        spectra = np.stack([self._node_spectrum(int(k)) for k in nodes])
        spectrum = np.tensordot(weights, spectra, axes=(1, 0))
        factor = self.oversample
        fine = spectrum.shape[1]
        phase_y = np.exp(-2j * np.pi * np.outer(np.asarray(dy) * factor, fft.fftfreq(fine)))
        phase_x = np.exp(-2j * np.pi * np.outer(np.asarray(dx) * factor, fft.rfftfreq(fine)))
        spectrum *= phase_y[:, :, None]
        spectrum *= phase_x[:, None, :]
        stamps = fft.irfft2(spectrum, s=(fine, fine), axes=(1, 2))
        if factor == 1:
            return stamps
        n = fine // factor
        return stamps.reshape(len(stamps), n, factor, n, factor).sum(axis=(2, 4))


def _lagrange3(t: np.ndarray) -> np.ndarray:
    """Weights ``(n, 3)`` of quadratic interpolation at ``t`` from nodes at -1, 0, 1."""
    return np.stack([0.5 * t * (t - 1.0), 1.0 - t * t, 0.5 * t * (t + 1.0)], axis=-1)
