"""Configurations of the sky maps (LSST ``BaseSkyMapConfig`` and its subclasses)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..task import Config, config_field

__all__ = ["DiscreteSkyMapConfig", "RingsSkyMapConfig", "SkyMapConfig"]

#: Largest discrete tract radius (degrees): keeps every tract well inside a TAN hemisphere.
MAX_TRACT_RADIUS = 10.0
#: Largest tract overlap (degrees).
MAX_TRACT_OVERLAP = 5.0


@dataclass(frozen=True)
class SkyMapConfig(Config):
    """Pixel grid shared by every kind of sky map: projection, pixel scale, patches.

    The defaults are the tract and patch geometry of LSST's production sky map
    (``lsst_cells_v1``): 0.2 arcsec pixels, TAN projection, tracts overlapping by
    one arcminute, patches of 3000 x 3000 pixels with a 200-pixel border.
    """

    pixel_scale: float = config_field(
        0.2, doc="Pixel scale at the tract centre, arcsec per pixel [pixelScale]."
    )
    projection: Literal["TAN", "STG"] = config_field(
        "TAN", doc="FITS projection code of the tract WCS: TAN or STG [projection]."
    )
    patch_inner_dimensions: tuple[int, ...] = config_field(
        (3000, 3000), doc="(x, y) size of a patch's inner region, pixels [patchInnerDimensions]."
    )
    patch_border: int = config_field(
        200, doc="Pixels by which a patch's outer box extends its inner box [patchBorder]."
    )
    tract_overlap: float = config_field(
        1.0 / 60.0, doc="Minimum overlap of adjacent tracts on the sky, degrees [tractOverlap]."
    )

    def validate(self) -> None:
        super().validate()
        self.check(self.pixel_scale > 0, "pixel_scale", "must be > 0 arcsec")
        dims = self.patch_inner_dimensions
        self.check(
            len(dims) == 2 and min(dims) >= 1,
            "patch_inner_dimensions",
            "must be two positive pixel counts (x, y)",
        )
        self.check(self.patch_border >= 0, "patch_border", "must be >= 0 pixels")
        self.check(
            0 <= self.tract_overlap <= MAX_TRACT_OVERLAP,
            "tract_overlap",
            f"must be in [0, {MAX_TRACT_OVERLAP}] degrees",
        )


@dataclass(frozen=True)
class RingsSkyMapConfig(SkyMapConfig):
    """Whole-sky map of declination rings (LSST ``RingsSkyMapConfig``).

    The sphere is cut into ``num_rings`` rings of declination plus two polar
    caps; each ring is divided in RA into equal tracts starting at ``ra_start``.
    """

    num_rings: int = config_field(120, doc="Number of declination rings [numRings].")
    ra_start: float = config_field(
        0.0, doc="RA of the first tract centre of every ring, degrees [raStart]."
    )

    def validate(self) -> None:
        super().validate()
        self.check(self.num_rings >= 1, "num_rings", "must be >= 1")
        self.check(0.0 <= self.ra_start < 360.0, "ra_start", "must be in [0, 360) degrees")


@dataclass(frozen=True)
class DiscreteSkyMapConfig(SkyMapConfig):
    """Tracts at a list of sky positions (LSST ``DiscreteSkyMapConfig``).

    Tract ``i`` is a square centred on ``(ra[i], dec[i])`` whose half-size is
    ``radius[i]`` plus the tract overlap.
    """

    ra: tuple[float, ...] = config_field((), doc="Tract centre RAs, degrees [raList].")
    dec: tuple[float, ...] = config_field((), doc="Tract centre Decs, degrees [decList].")
    radius: tuple[float, ...] = config_field((), doc="Tract radii, degrees [radiusList].")

    def validate(self) -> None:
        super().validate()
        self.check(
            len(self.dec) == len(self.ra), "dec", f"must have one value per ra ({len(self.ra)})"
        )
        self.check(
            len(self.radius) == len(self.ra),
            "radius",
            f"must have one value per ra ({len(self.ra)})",
        )
        self.check(all(-90 <= d <= 90 for d in self.dec), "dec", "must lie in [-90, 90] degrees")
        self.check(
            all(0 <= r <= MAX_TRACT_RADIUS for r in self.radius),
            "radius",
            f"must lie in [0, {MAX_TRACT_RADIUS}] degrees",
        )
