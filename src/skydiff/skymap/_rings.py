"""The whole-sky rings sky map (LSST ``RingsSkyMap``).

Geometry, as in LSST: the sphere is cut into ``num_rings`` rings of
declination of height ``180 / (num_rings + 1)`` degrees, plus two polar caps
of half that radius. Ring ``i`` is centred on declination
``ring_size * (i + 1) - 90`` and divided in RA into
``floor(360 cos(d) / ring_size) + 1`` equal tracts, ``d`` being the edge of the
ring nearer the equator, so tracts are never narrower on the sky than they are
tall there. Tract 0 is the south cap, then rings from south to north with
tracts in increasing RA from ``ra_start``, and the north cap last. Every tract
is a square of half-size ``ring_size / 2 + tract_overlap`` about its centre
(grown to whole patches). The tract holding a point, the tract whose RA/Dec
box holds it, follows from declination and RA arithmetic, so no tract is built
until asked for.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from ..errors import InvalidParameterError
from ._config import RingsSkyMapConfig
from ._layout import TractLayouts, grown_boundaries, layout_tracts, make_tract
from ._region import RaDecBox
from ._skymap import SkyMap
from ._sphere import angular_separation, as_sky_points
from ._tract import TractInfo

__all__ = ["RingsSkyMap"]


class RingsSkyMap(SkyMap, kind="rings"):
    """Whole-sky map of declination rings of tracts (LSST ``RingsSkyMap``, version 1 numbering).

    Parameters
    ----------
    config : RingsSkyMapConfig, optional
        Number of rings, RA of the first tract, pixel and patch geometry.
    """

    config_class = RingsSkyMapConfig
    config: RingsSkyMapConfig

    def __init__(self, config: RingsSkyMapConfig | None = None):
        super().__init__(config)
        n_rings = self.config.num_rings
        size = np.pi / (n_rings + 1)  # radians, the arithmetic of LSST's RingsSkyMap
        start = size * (np.arange(n_rings) + 0.5) - 0.5 * np.pi
        edge = np.minimum(np.abs(start), np.abs(start + size))
        self._ring_size_rad = float(size)
        self._ring_size = float(np.rad2deg(size))
        self._first_start = float(np.rad2deg(size * 0.5 - 0.5 * np.pi))
        self._ring_tracts = (2.0 * np.pi * np.cos(edge) / size).astype(np.int64) + 1
        # first tract id of each ring; entry num_rings is the north cap
        self._ring_offsets = np.concatenate([[1], 1 + np.cumsum(self._ring_tracts)])

    def __len__(self) -> int:
        return int(self._ring_offsets[-1]) + 1

    @property
    def ring_size(self) -> float:
        """Height of a ring in declination, degrees."""
        return self._ring_size

    @property
    def ring_tract_counts(self) -> np.ndarray:
        """Number of tracts in each ring, south to north (caps excluded)."""
        return self._ring_tracts.copy()

    # -- ring arithmetic ------------------------------------------------------------------

    def ring_indices(self, tract_id) -> tuple[np.ndarray, np.ndarray]:
        """``(ring, index in ring)`` of tracts; ring -1 is the south cap, ``num_rings`` north.

        Raises
        ------
        InvalidParameterError
            If a tract id is outside ``[0, len(self))``.
        """
        ids = np.asarray(tract_id, dtype=np.int64)
        if np.any((ids < 0) | (ids >= len(self))):
            raise InvalidParameterError(f"tract_id must be in [0, {len(self)}), got {tract_id}")
        ring = np.searchsorted(self._ring_offsets, ids, side="right") - 1
        first = np.where(ring >= 0, self._ring_offsets[np.maximum(ring, 0)], 0)
        return ring, ids - first

    def _ring_edges(self, ring) -> tuple[np.ndarray, np.ndarray]:
        """Declination interval ``[low, high)`` of rings (caps included), degrees."""
        ring = np.asarray(ring)
        low = np.where(ring < 0, -90.0, self._first_start + self._ring_size * ring)
        high = np.where(
            ring >= self.config.num_rings, 90.0, self._first_start + self._ring_size * (ring + 1)
        )
        return low, high

    def _centers(self, tract_id) -> tuple[np.ndarray, np.ndarray]:
        """``(ra, dec)`` of tract centres, degrees."""
        ring, index = self.ring_indices(tract_id)
        n_rings = self.config.num_rings
        inner = np.clip(ring, 0, n_rings - 1)
        dec = np.rad2deg(self._ring_size_rad * (inner + 1) - 0.5 * np.pi)
        dec = np.where(ring < 0, -90.0, np.where(ring >= n_rings, 90.0, dec))
        width = 360.0 / self._ring_tracts[inner]
        ra = np.mod(self.config.ra_start + width * index, 360.0)
        return np.where((ring < 0) | (ring >= n_rings), 0.0, ra), dec

    def _inner_region(self, tract_id: int) -> RaDecBox:
        ring, _ = self.ring_indices(tract_id)
        low, high = self._ring_edges(ring)
        ra, _ = self._centers(tract_id)
        if ring < 0 or ring >= self.config.num_rings:
            return RaDecBox(0.0, 180.0, float(low), float(high))
        return RaDecBox(float(ra), 180.0 / int(self._ring_tracts[ring]), float(low), float(high))

    # -- tracts ---------------------------------------------------------------------------

    @cached_property
    def _layouts(self) -> TractLayouts:
        """Pixel layout of one tract per ring (south cap, rings, north cap): RA-invariant."""
        n_rings = self.config.num_rings
        firsts = self._ring_offsets[np.arange(-1, n_rings + 1).clip(0)].copy()
        firsts[0] = 0
        regions = [self._inner_region(int(t)) for t in firsts]
        b_ra, b_dec = grown_boundaries(regions, 0.5 * self.config.tract_overlap)
        ra, dec = self._centers(firsts)
        radius = np.full(len(firsts), 0.5 * self._ring_size)
        return layout_tracts(ra, dec, b_ra, b_dec, radius, self.config)

    def _make_tract(self, tract_id: int) -> TractInfo:
        ring, _ = self.ring_indices(tract_id)
        ra, dec = self._centers(tract_id)
        region = self._inner_region(tract_id)
        return make_tract(tract_id, (ra, dec), region, self._layouts, int(ring) + 1, self.config)

    # -- searches -------------------------------------------------------------------------

    def find_tract_ids(self, ra, dec) -> np.ndarray:
        """Tract whose RA/Dec box holds each sky point (LSST ``findTractIdArray``).

        The boxes tile the sphere, so every point has a tract.
        """
        ra, dec = as_sky_points(ra, dec)
        n_rings = self.config.num_rings
        ring = np.floor((dec - self._first_start) / self._ring_size).astype(np.int64)
        ring = np.clip(ring, -1, n_rings)
        inner = np.clip(ring, 0, n_rings - 1)
        count = self._ring_tracts[inner]
        offset = np.mod(ra - self.config.ra_start, 360.0) / (360.0 / count)
        index = np.floor(offset + 0.5).astype(np.int64) % count
        ids = self._ring_offsets[inner] + index
        return np.where(ring < 0, 0, np.where(ring >= n_rings, len(self) - 1, ids))

    def _candidate_tract_ids(self, ra: float, dec: float, radius: float) -> np.ndarray:
        circumradius = self._layouts.circumradius
        reach = radius + float(circumradius.max())
        rings = np.floor(
            (np.array([dec - reach, dec + reach]) - self._first_start) / self._ring_size
        )
        low, high = np.clip(rings.astype(np.int64), -1, self.config.num_rings)
        ids = np.arange(
            0 if low < 0 else self._ring_offsets[low],
            len(self) if high >= self.config.num_rings else self._ring_offsets[high + 1],
        )
        c_ra, c_dec = self._centers(ids)
        ring, _ = self.ring_indices(ids)
        near = angular_separation(ra, dec, c_ra, c_dec) <= radius + circumradius[ring + 1] + 1e-9
        return ids[near]
