"""What, when and where an exposure was taken."""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass

from ..errors import InvalidParameterError

__all__ = ["VisitInfo"]


@dataclass(frozen=True, slots=True, eq=False)
class VisitInfo:
    """Observation facts of one exposure (LSST ``VisitInfo`` plus the detector).

    Parameters
    ----------
    visit : int or None
        Visit (exposure) identifier.
    detector : int or None
        Detector identifier within the camera.
    mjd : float
        Modified Julian Date (TAI) of the exposure mid-point; NaN if unknown.
    exposure_time : float
        Exposure time in seconds; NaN if unknown.
    airmass : float
        Airmass at mid-exposure; NaN if unknown.
    boresight_ra, boresight_dec : float
        Telescope pointing in degrees; NaN if unknown.
    boresight_rotation : float
        Rotation angle of the focal plane on the sky in degrees; NaN if unknown.
    instrument : str
        Instrument name.
    """

    visit: int | None = None
    detector: int | None = None
    mjd: float = math.nan
    exposure_time: float = math.nan
    airmass: float = math.nan
    boresight_ra: float = math.nan
    boresight_dec: float = math.nan
    boresight_rotation: float = math.nan
    instrument: str = ""

    def __post_init__(self) -> None:
        for name in ("visit", "detector"):
            value = getattr(self, name)
            if value is not None:
                if int(value) != value:
                    raise InvalidParameterError(
                        f"VisitInfo.{name} must be an integer, got {value!r}"
                    )
                object.__setattr__(self, name, int(value))
        for name in (
            "mjd",
            "exposure_time",
            "airmass",
            "boresight_ra",
            "boresight_dec",
            "boresight_rotation",
        ):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.exposure_time < 0:
            raise InvalidParameterError(
                f"VisitInfo.exposure_time must be >= 0, got {self.exposure_time}"
            )

    def __eq__(self, other: object) -> bool:
        """Field-wise equality, unknown (NaN) values equal to each other."""
        if not isinstance(other, VisitInfo):
            return NotImplemented
        return all(
            a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)
            for a, b in zip(astuple(self), astuple(other), strict=True)
        )

    def __hash__(self) -> int:
        return hash((self.visit, self.detector, self.instrument))
