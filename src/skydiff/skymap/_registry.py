"""Built-in named sky maps (the analogue of LSST's registered sky map names)."""

from __future__ import annotations

from typing import Any

__all__ = ["NAMED_SKYMAPS", "named_skymaps"]

NAMED_SKYMAPS: dict[str, dict[str, Any]] = {
    "rings_120": {
        "kind": "rings",
        "config": {},
        "description": (
            "Whole sky, 120 declination rings, 18938 tracts; 0.2 arcsec TAN pixels, tracts "
            "overlapping by 1 arcmin, 3000-pixel patches with a 200-pixel border. The tract "
            "ids and pixel grids of LSST's lsst_cells_v1 (whose cell-based patches differ "
            "only in leaving outer boxes unclipped at tract edges)."
        ),
    },
    "hsc_rings_120": {
        "kind": "rings",
        "config": {
            "pixel_scale": 0.168,
            "patch_inner_dimensions": [4000, 4000],
            "patch_border": 100,
        },
        "description": (
            "Whole sky, 120 declination rings, 18938 tracts; 0.168 arcsec TAN pixels, "
            "4000-pixel patches with a 100-pixel border: the geometry of HSC's hsc_rings_v1."
        ),
    },
}


def named_skymaps() -> dict[str, str]:
    """``{name: description}`` of the built-in sky maps accepted by ``SkyMap.from_name``."""
    return {name: spec["description"] for name, spec in NAMED_SKYMAPS.items()}
