"""Sky maps: tracts and patches tiling the sky (LSST ``lsst.skymap``).

A sky map is a set of tracts, each a TAN (or STG) pixel grid about a sky
position, cut into patches with overlapping borders. Warps, coadds and
templates live on patches. Two kinds: :class:`RingsSkyMap` covers the whole
sky with declination rings of tracts (LSST's production layout; built-in as
``SkyMap.from_name("rings_120")``), :class:`DiscreteSkyMap` puts tracts at
chosen positions.
"""

from ._config import DiscreteSkyMapConfig, RingsSkyMapConfig, SkyMapConfig
from ._discrete import DiscreteSkyMap
from ._region import RaDecBox, SkyCircle
from ._registry import named_skymaps
from ._rings import RingsSkyMap
from ._skymap import SkyMap, TractPatches, load_skymap
from ._tract import PatchIndex, PatchInfo, TractInfo

__all__ = [
    "DiscreteSkyMap",
    "DiscreteSkyMapConfig",
    "PatchIndex",
    "PatchInfo",
    "RaDecBox",
    "RingsSkyMap",
    "RingsSkyMapConfig",
    "SkyCircle",
    "SkyMap",
    "SkyMapConfig",
    "TractInfo",
    "TractPatches",
    "load_skymap",
    "named_skymaps",
]
