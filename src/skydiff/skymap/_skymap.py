"""The sky map base class: tract access, sky searches and persistence (LSST ``BaseSkyMap``)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
from astropy.wcs import WCS

from ..errors import InvalidParameterError
from ..image import Box, pixel_to_sky, validate_celestial_wcs
from ._config import SkyMapConfig
from ._json_file import read_json, write_json_atomically
from ._registry import NAMED_SKYMAPS, named_skymaps
from ._sphere import as_sky_points, bounding_cap
from ._tract import PatchInfo, TractInfo

__all__ = ["SkyMap", "TractPatches", "load_skymap"]

FORMAT = "skydiff.skymap"
FORMAT_VERSION = 1
#: Largest radius (degrees) of a sky polygon searched in one call.
MAX_POLYGON_RADIUS = 30.0
_TRACT_CACHE_SIZE = 2048


class TractPatches(NamedTuple):
    """A tract and the patches of it that a sky region overlaps."""

    tract: TractInfo
    patches: list[PatchInfo]


class SkyMap:
    """Tracts covering all or part of the sky, each cut into patches.

    Subclasses define a kind of sky map (:class:`RingsSkyMap`,
    :class:`DiscreteSkyMap`). Tracts are built on first use and cached, so a
    whole-sky map costs nothing until it is searched. Two sky maps are equal
    when their kind and configuration are; they pickle and round-trip through
    :meth:`to_dict` and JSON files.

    Parameters
    ----------
    config : SkyMapConfig, optional
        The subclass's configuration; its defaults if omitted.
    """

    kind: ClassVar[str]
    config_class: ClassVar[type[SkyMapConfig]] = SkyMapConfig
    _kinds: ClassVar[dict[str, type[SkyMap]]] = {}

    def __init_subclass__(cls, *, kind: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.kind = kind
        SkyMap._kinds[kind] = cls

    def __init__(self, config: SkyMapConfig | None = None):
        if type(self) is SkyMap:
            raise TypeError(
                "SkyMap is abstract: use RingsSkyMap, DiscreteSkyMap or SkyMap.from_name"
            )
        config = self.config_class() if config is None else config
        if type(config) is not self.config_class:
            raise InvalidParameterError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        self._config = config
        self._tracts: dict[int, TractInfo] = {}

    @property
    def config(self) -> SkyMapConfig:
        """The (frozen) configuration."""
        return self._config

    # -- tracts ---------------------------------------------------------------------------

    def __len__(self) -> int:
        raise NotImplementedError

    def _make_tract(self, tract_id: int) -> TractInfo:
        raise NotImplementedError

    def __getitem__(self, tract_id: int) -> TractInfo:
        """The tract with identifier ``tract_id`` (``0 <= tract_id < len(self)``)."""
        if isinstance(tract_id, bool) or not isinstance(tract_id, int | np.integer):
            raise InvalidParameterError(f"tract_id must be an integer, got {tract_id!r}")
        tract_id = int(tract_id)
        if not 0 <= tract_id < len(self):
            raise InvalidParameterError(
                f"tract_id must be in [0, {len(self)}) for this sky map, got {tract_id}"
            )
        tract = self._tracts.get(tract_id)
        if tract is None:
            if len(self._tracts) >= _TRACT_CACHE_SIZE:
                del self._tracts[next(iter(self._tracts))]
            tract = self._tracts[tract_id] = self._make_tract(tract_id)
        return tract

    def __iter__(self) -> Iterator[TractInfo]:
        return (self[i] for i in range(len(self)))

    # -- searches -------------------------------------------------------------------------

    def find_tract_ids(self, ra, dec) -> np.ndarray:
        """Tract identifier of each sky point, ``-1`` where no tract holds it.

        Parameters
        ----------
        ra, dec : array_like
            Sky positions, degrees.

        Returns
        -------
        numpy.ndarray
            Integer array of the shape of ``ra``.
        """
        raise NotImplementedError

    def find_tract(self, ra: float, dec: float) -> TractInfo:
        """The tract responsible for the sky point ``(ra, dec)`` (LSST ``findTract``).

        Raises
        ------
        InvalidParameterError
            If no tract of the sky map holds the point.
        """
        tract_id = self.find_tract_ids(ra, dec)
        if tract_id.ndim != 0:
            raise InvalidParameterError(
                f"find_tract takes one point, got ra of shape {tract_id.shape}; "
                "use find_tract_ids for many"
            )
        if tract_id < 0:
            raise InvalidParameterError(
                f"(ra, dec) = ({float(ra)}, {float(dec)}) lies in no tract of this sky map"
            )
        return self[int(tract_id)]

    def _candidate_tract_ids(self, ra: float, dec: float, radius: float) -> np.ndarray:
        """Tracts whose box may come within ``radius`` degrees of ``(ra, dec)``."""
        raise NotImplementedError

    def find_tract_patch_list(self, ra, dec) -> list[TractPatches]:
        """Tracts and patches a sky polygon overlaps (LSST ``findTractPatchList``).

        Parameters
        ----------
        ra, dec : array_like
            Vertices of a polygon with great-circle edges (or a single point),
            degrees; at most 30 degrees from their mean direction.

        Returns
        -------
        list of TractPatches
            ``(tract, patches)`` pairs in tract order, for every tract whose box
            the polygon overlaps, with the patches whose outer box it overlaps.
        """
        ra, dec = as_sky_points(np.atleast_1d(ra), np.atleast_1d(dec))
        ra_c, dec_c, radius = bounding_cap(ra.ravel(), dec.ravel())
        if radius > MAX_POLYGON_RADIUS:
            raise InvalidParameterError(
                f"sky polygon reaches {radius:.1f} deg from its centre; search regions "
                f"of at most {MAX_POLYGON_RADIUS} deg radius"
            )
        found = []
        for tract_id in self._candidate_tract_ids(ra_c, dec_c, radius):
            tract = self[int(tract_id)]
            patches = tract.find_patches(ra, dec)
            if patches:
                found.append(TractPatches(tract, patches))
        return found

    def find_overlapping_exposure(
        self, wcs: WCS, bbox: Box, *, points_per_edge: int = 4
    ) -> list[TractPatches]:
        """Tracts and patches an exposure overlaps, from its WCS and pixel box.

        The polygon is the box's outer edge, ``points_per_edge`` points per side,
        mapped through ``wcs`` (distortions included).

        Returns
        -------
        list of TractPatches
            As :meth:`find_tract_patch_list`.
        """
        validate_celestial_wcs(wcs, "find_overlapping_exposure")
        if not isinstance(bbox, Box) or bbox.is_empty:
            raise InvalidParameterError(f"bbox must be a non-empty Box, got {bbox!r}")
        corners = np.array(bbox.corners())
        t = np.linspace(0.0, 1.0, max(int(points_per_edge), 1), endpoint=False)[:, None]
        edges = [
            a + t * (b - a) for a, b in zip(corners, np.roll(corners, -1, axis=0), strict=True)
        ]
        x, y = np.concatenate(edges).T
        ra, dec = pixel_to_sky(wcs, x, y)
        return self.find_tract_patch_list(ra, dec)

    # -- persistence ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able description: format, version, kind and configuration."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "kind": self.kind,
            "config": self.config.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SkyMap:
        """Rebuild a sky map from :meth:`to_dict` output (any kind).

        Raises
        ------
        InvalidParameterError
            If the kind is unknown or the configuration invalid.
        """
        if not isinstance(data, Mapping) or "kind" not in data:
            raise InvalidParameterError(f"sky map description needs a 'kind', got {data!r}")
        if data.get("format", FORMAT) != FORMAT:
            raise InvalidParameterError(f"not a {FORMAT} description: format {data['format']!r}")
        kind_class = SkyMap._kinds.get(data["kind"])
        if kind_class is None:
            raise InvalidParameterError(
                f"unknown sky map kind {data['kind']!r}; known kinds: {sorted(SkyMap._kinds)}"
            )
        config = data.get("config", {})
        if not isinstance(config, Mapping):
            raise InvalidParameterError(f"sky map 'config' must be a mapping, got {config!r}")
        return kind_class(kind_class.config_class.from_dict(config))

    @classmethod
    def from_name(cls, name: str) -> SkyMap:
        """A built-in sky map by name (see :func:`named_skymaps`).

        Raises
        ------
        InvalidParameterError
            If the name is not known; the message lists the known names.
        """
        spec = NAMED_SKYMAPS.get(name)
        if spec is None:
            raise InvalidParameterError(
                f"unknown sky map name {name!r}; known names: {sorted(named_skymaps())}"
            )
        return SkyMap.from_dict(spec)

    def write(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write :meth:`to_dict` as JSON, atomically (temporary file, then rename).

        Raises
        ------
        FileExistsError
            If ``path`` exists and ``overwrite`` is false.
        """
        return write_json_atomically(self.to_dict(), path, overwrite=overwrite)

    @classmethod
    def read(cls, path: str | os.PathLike) -> SkyMap:
        """Read a sky map written by :meth:`write`.

        Raises
        ------
        InvalidParameterError
            Naming the path, if the file is missing, not JSON or not a sky map.
        """
        data = read_json(path, "sky map")
        try:
            return SkyMap.from_dict(data)
        except InvalidParameterError as error:
            raise InvalidParameterError(f"{path}: {error}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SkyMap):
            return NotImplemented
        return self.kind == other.kind and self.config == other.config

    def __hash__(self) -> int:
        return hash((self.kind, self.config))

    def __reduce__(self) -> tuple[Any, ...]:
        return (SkyMap.from_dict, (self.to_dict(),))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


def load_skymap(name_or_path: str | os.PathLike | SkyMap) -> SkyMap:
    """A sky map from a built-in name, a JSON file written by :meth:`SkyMap.write`, or as is.

    Raises
    ------
    InvalidParameterError
        If the argument is neither a known name nor a readable sky map file.
    """
    if isinstance(name_or_path, SkyMap):
        return name_or_path
    if isinstance(name_or_path, str) and name_or_path in NAMED_SKYMAPS:
        return SkyMap.from_name(name_or_path)
    if not isinstance(name_or_path, str | os.PathLike):
        raise InvalidParameterError(
            f"name_or_path must be a sky map name or a file path, got {name_or_path!r}"
        )
    if not Path(name_or_path).exists():
        raise InvalidParameterError(
            f"{os.fspath(name_or_path)!r} is neither a known sky map name "
            f"({', '.join(sorted(NAMED_SKYMAPS))}) nor an existing file"
        )
    return SkyMap.read(name_or_path)
