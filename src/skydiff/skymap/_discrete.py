"""Tracts at chosen sky positions (LSST ``DiscreteSkyMap``)."""

from __future__ import annotations

import dataclasses
from functools import cached_property

import numpy as np

from ._config import DiscreteSkyMapConfig, SkyMapConfig
from ._layout import TractLayouts, grown_boundaries, layout_tracts, make_tract
from ._region import SkyCircle
from ._skymap import SkyMap
from ._sphere import angular_separation, as_sky_points
from ._tract import TractInfo

__all__ = ["DiscreteSkyMap"]


class DiscreteSkyMap(SkyMap, kind="discrete"):
    """One square tract per listed sky position (LSST ``DiscreteSkyMap``).

    Tract ``i`` is centred on ``(ra[i], dec[i])``; its box holds the square of
    half-size ``radius[i] + tract_overlap``, grown to whole patches. Its inner
    region is the circle of ``radius[i]``.

    Parameters
    ----------
    config : DiscreteSkyMapConfig
        Tract centres and radii, pixel and patch geometry.
    """

    config_class = DiscreteSkyMapConfig
    config: DiscreteSkyMapConfig

    @classmethod
    def from_centers(cls, ra, dec, radius, *, config: SkyMapConfig | None = None) -> DiscreteSkyMap:
        """A discrete sky map with tracts at ``(ra, dec)`` of radius ``radius`` (degrees).

        ``radius`` may be one value for all tracts; pixel and patch geometry
        come from ``config`` (defaults of :class:`SkyMapConfig` if omitted).
        """
        ra, dec = np.atleast_1d(ra).astype(float), np.atleast_1d(dec).astype(float)
        radius = np.broadcast_to(np.asarray(radius, dtype=float), ra.shape)
        base = SkyMapConfig() if config is None else config
        shared = {f.name: getattr(base, f.name) for f in dataclasses.fields(SkyMapConfig)}
        return cls(
            DiscreteSkyMapConfig(
                **shared,
                ra=tuple(ra.tolist()),
                dec=tuple(dec.tolist()),
                radius=tuple(radius.tolist()),
            )
        )

    def __len__(self) -> int:
        return len(self.config.ra)

    @cached_property
    def _centers(self) -> tuple[np.ndarray, np.ndarray]:
        return np.mod(np.array(self.config.ra, dtype=float), 360.0), np.array(self.config.dec)

    def _region(self, tract_id: int) -> SkyCircle:
        ra, dec = self._centers
        return SkyCircle(float(ra[tract_id]), float(dec[tract_id]), self.config.radius[tract_id])

    @cached_property
    def _layouts(self) -> TractLayouts:
        regions = [self._region(i) for i in range(len(self))]
        b_ra, b_dec = grown_boundaries(regions, 0.5 * self.config.tract_overlap)
        radius = np.array(self.config.radius, dtype=float)
        return layout_tracts(*self._centers, b_ra, b_dec, radius, self.config)

    def _make_tract(self, tract_id: int) -> TractInfo:
        ra, dec = self._centers
        center = (ra[tract_id], dec[tract_id])
        return make_tract(
            tract_id, center, self._region(tract_id), self._layouts, tract_id, self.config
        )

    def find_tract_ids(self, ra, dec) -> np.ndarray:
        """Among the tracts whose box holds each point, the one with the nearest centre.

        ``-1`` where no tract holds the point.
        """
        ra, dec = as_sky_points(ra, dec)
        best = np.full(ra.shape, -1, dtype=np.int64)
        best_distance = np.full(ra.shape, np.inf)
        for tract in self:
            distance = angular_separation(*tract.center, ra, dec)
            better = np.asarray(tract.contains(ra, dec)) & (distance < best_distance)
            best = np.where(better, tract.tract_id, best)
            best_distance = np.where(better, distance, best_distance)
        return best

    def _candidate_tract_ids(self, ra: float, dec: float, radius: float) -> np.ndarray:
        if len(self) == 0:
            return np.zeros(0, dtype=np.int64)
        distance = angular_separation(ra, dec, *self._centers)
        return np.flatnonzero(distance <= radius + self._layouts.circumradius + 1e-9)
