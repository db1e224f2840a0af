"""The simulated camera: a grid of identical detectors on one focal plane."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InvalidParameterError
from ..image import Box
from ..task import Config

__all__ = ["Camera"]


@dataclass(frozen=True)
class Camera(Config):
    """A mosaic camera of ``n_x`` by ``n_y`` identical detectors.

    Focal-plane pixel coordinates have their origin at the first pixel of
    detector 0 (lower left); detectors are numbered row by row,
    ``detector = j * n_x + i`` for column ``i`` and row ``j`` of the grid, and
    separated by ``gap`` pixels. The boresight (optical axis) sits at the
    centre of the focal plane.

    Parameters
    ----------
    n_x, n_y : int
        Detectors per row and per column.
    width, height : int
        Detector size in pixels.
    gap : int
        Pixels between neighbouring detectors.
    pixel_scale : float
        Arcseconds per pixel.
    read_noise : float
        Read noise in electrons.
    gain : float
        Electrons per count.
    saturation : float
        Saturation level in counts (the bleed threshold).
    bad_columns : int
        Bad columns per detector, the same in every visit.
    name : str
        Instrument name written in each exposure's ``VisitInfo``.
    """

    n_x: int = 2
    n_y: int = 2
    width: int = 256
    height: int = 256
    gap: int = 20
    pixel_scale: float = 0.2
    read_noise: float = 5.0
    gain: float = 1.5
    saturation: float = 60000.0
    bad_columns: int = 2
    name: str = "SkydiffSim"

    def validate(self) -> None:
        for name in ("n_x", "n_y", "width", "height"):
            self.check(getattr(self, name) >= 1, name, "must be >= 1")
        for name in ("gap", "bad_columns"):
            self.check(getattr(self, name) >= 0, name, "must be >= 0")
        for name in ("pixel_scale", "gain", "saturation"):
            self.check(getattr(self, name) > 0, name, "must be > 0")
        self.check(self.read_noise >= 0, "read_noise", "must be >= 0")
        limit = min(self.width // 4, max(self.width - 4, 0))
        self.check(
            self.bad_columns <= limit, "bad_columns", f"must be <= {limit} for width {self.width}"
        )

    @classmethod
    def small(cls, **changes) -> Camera:
        """2 x 2 detectors of 256 x 256 pixels, for unit tests."""
        return cls(**changes)

    @classmethod
    def single(cls, size: int = 4096, **changes) -> Camera:
        """One detector of ``size`` x ``size`` pixels, for benchmarks of one exposure."""
        return cls(**{"n_x": 1, "n_y": 1, "width": size, "height": size, **changes})

    @classmethod
    def large(cls, **changes) -> Camera:
        """3 x 3 detectors of 4096 x 4096 pixels, a realistic mosaic for benchmarks."""
        return cls(
            **{
                "n_x": 3,
                "n_y": 3,
                "width": 4096,
                "height": 4096,
                "gap": 100,
                "bad_columns": 5,
                **changes,
            }
        )

    @property
    def n_detectors(self) -> int:
        """Number of detectors."""
        return self.n_x * self.n_y

    def detector_ids(self) -> tuple[int, ...]:
        """Detector identifiers, ``0 .. n_detectors - 1``."""
        return tuple(range(self.n_detectors))

    def check_detector(self, detector: int) -> int:
        """``detector`` as an int, or :class:`InvalidParameterError` if not in this camera."""
        if int(detector) != detector or not 0 <= detector < self.n_detectors:
            raise InvalidParameterError(
                f"detector {detector!r} is not in the camera (0 .. {self.n_detectors - 1})"
            )
        return int(detector)

    def detector_origin(self, detector: int) -> tuple[int, int]:
        """Focal-plane pixel coordinates of the detector's first pixel."""
        detector = self.check_detector(detector)
        i, j = detector % self.n_x, detector // self.n_x
        return (i * (self.width + self.gap), j * (self.height + self.gap))

    def detector_bbox(self, origin: tuple[int, int] = (0, 0)) -> Box:
        """The box of a detector image whose first pixel is at ``origin``."""
        return Box(origin[0], origin[1], self.width, self.height)

    @property
    def focal_plane_center(self) -> tuple[float, float]:
        """Focal-plane pixel coordinates of the boresight."""
        total_x = self.n_x * self.width + (self.n_x - 1) * self.gap
        total_y = self.n_y * self.height + (self.n_y - 1) * self.gap
        return ((total_x - 1) / 2.0, (total_y - 1) / 2.0)

    @property
    def focal_plane_radius(self) -> float:
        """Distance in pixels from the boresight to the farthest detector corner."""
        cx, cy = self.focal_plane_center
        return math.hypot(cx + 0.5, cy + 0.5)

    def focal_plane_position(
        self, detector: int, x: float, y: float, origin: tuple[int, int] = (0, 0)
    ) -> tuple[float, float]:
        """Focal-plane coordinates, relative to the boresight, of detector pixel ``(x, y)``.

        ``origin`` is the parent-frame position of the detector's first pixel;
        works element-wise on arrays.
        """
        ox, oy = self.detector_origin(detector)
        cx, cy = self.focal_plane_center
        return (x - origin[0] + ox - cx, y - origin[1] + oy - cy)
