"""Detector effects: photon and read noise, saturation with bleed trails, bad columns."""

from __future__ import annotations

import numpy as np

from ._camera import Camera
from ._visits import STREAM_DETECTOR, rng_for

__all__ = ["add_noise", "bad_columns", "saturate"]

#: Below this many expected electrons a pixel gets an exact Poisson draw plus
#: Gaussian read noise; above, one normal draw with the skewness of the Poisson
#: term (mean and variance exact, third cumulant to O(1), fourth off by
#: 1/lambda), several times faster for statistically the same image.
POISSON_EXACT_BELOW = 500.0
_ROWS_PER_BLOCK = 256


def _electrons(rng: np.random.Generator, expected: np.ndarray, read_noise: float) -> np.ndarray:
    """Photo-electrons (Poisson of mean ``expected``, float32 >= 0) plus read noise."""
    z = rng.standard_normal(expected.shape, dtype=np.float32)
    variance = expected + np.float32(read_noise**2)
    skew = expected / (np.float32(6.0) * variance)
    electrons = np.sqrt(variance)
    electrons *= z
    electrons += expected
    z *= z
    z -= np.float32(1.0)
    z *= skew
    electrons += z
    low = expected < POISSON_EXACT_BELOW
    if low.any():
        photons = rng.poisson(expected[low].astype(np.float64))
        electrons[low] = photons + read_noise * rng.standard_normal(photons.size)
    return electrons


def add_noise(
    rng: np.random.Generator, model: np.ndarray, gain: float, read_noise: float
) -> np.ndarray:
    """A noisy realisation (counts, float32) of the expected image ``model`` (counts).

    Photon noise is drawn in electrons (``model * gain``) with Gaussian read
    noise of ``read_noise`` electrons, and divided by the gain; rows are
    processed in blocks to bound memory.
    """
    out = np.empty(model.shape, np.float32)
    gain32 = np.float32(gain)
    for start in range(0, model.shape[0], _ROWS_PER_BLOCK):
        rows = slice(start, start + _ROWS_PER_BLOCK)
        expected = np.maximum(model[rows] * gain32, np.float32(0.0), dtype=np.float32)
        out[rows] = _electrons(rng, expected, read_noise) / gain32
    return out


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of each run of True in a 1-d boolean array."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def _bleed(column: np.ndarray, rows: np.ndarray, charge: float, level: np.float32) -> None:
    """Spread ``charge`` (counts) into ``rows`` of ``column`` in turn, filling each to ``level``."""
    if charge <= 0 or rows.size == 0:
        return
    room = np.maximum(level - column[rows].astype(np.float64), 0.0)
    filled = np.cumsum(room)
    n_full = int(np.searchsorted(filled, charge, side="right"))
    column[rows[:n_full]] = level
    if n_full < rows.size:
        column[rows[n_full]] += charge - (filled[n_full - 1] if n_full else 0.0)


def saturate(image: np.ndarray, level: float) -> np.ndarray:
    """Clip pixels at ``level`` and bleed their excess charge along the columns.

    The excess of each saturated run of a column flows half up and half down,
    filling pixels to ``level`` one after another (a bleed trail); charge
    reaching the detector edge is lost. Returns the boolean SAT map.
    """
    level32 = np.float32(level)
    saturated = image >= level32
    for col in np.flatnonzero(saturated.any(axis=0)):
        column = image[:, col]
        for start, stop in _runs(saturated[:, col]):
            excess = float(np.sum(column[start:stop].astype(np.float64) - float(level32)))
            column[start:stop] = level32
            _bleed(column, np.arange(stop, image.shape[0]), 0.5 * excess, level32)
            _bleed(column, np.arange(start - 1, -1, -1), 0.5 * excess, level32)
    return image >= level32


def bad_columns(seed: int, camera: Camera, detector: int) -> list[tuple[int, int]]:
    """``(column, first_row)`` of each bad column of a detector (array coordinates).

    Fixed for a camera and seed (the same in every visit); half of them span
    the whole detector, the others start part way up, like a charge trap.
    """
    if camera.bad_columns == 0:
        return []
    rng = rng_for(seed, STREAM_DETECTOR, detector)
    columns = rng.choice(np.arange(2, camera.width - 2), camera.bad_columns, replace=False)
    partial = rng.uniform(0.0, 1.0, camera.bad_columns) < 0.5
    starts = np.where(partial, rng.integers(0, camera.height // 2, camera.bad_columns), 0)
    return [(int(c), int(s)) for c, s in zip(columns, starts, strict=True)]
