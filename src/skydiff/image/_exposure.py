"""A masked image with everything needed to interpret it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.wcs import WCS

from ..errors import InvalidExposureError, InvalidParameterError
from ._box import Box
from ._mask import Mask
from ._masked_image import MaskedImage
from ._photo_calib import PhotoCalib
from ._visit_info import VisitInfo
from ._wcs import pixel_to_sky, sky_to_pixel

if TYPE_CHECKING:
    from ..psf import Psf

__all__ = ["Exposure"]


class Exposure:
    """A :class:`MaskedImage` with its PSF, WCS, calibration and observation facts.

    The WCS and the PSF are both expressed in the parent frame of the image's
    box, so a cut-out (``exposure[box]``) shares them unchanged and stays
    correct.

    Parameters
    ----------
    masked_image : MaskedImage
        The pixels.
    wcs : astropy.wcs.WCS, optional
        Parent pixel -> sky transform.
    psf : Psf, optional
        Point-spread function model, evaluated at parent pixel positions.
    photo_calib : PhotoCalib, optional
        Counts -> nJy; None for images already in nJy (warps, coadds).
    band : str
        Abstract band ("r").
    physical_filter : str
        Instrument filter ("HSC-R2").
    visit_info : VisitInfo, optional
        Visit, detector, time, pointing.
    metadata : dict, optional
        Free scalar metadata (str, int, float, bool); stored in FITS.
    units : str
        Pixel units: ``"count"`` for calibrated exposures in instrumental
        units, ``"nJy"`` for warps, coadds, templates and differences.
    """

    __slots__ = (
        "band",
        "masked_image",
        "metadata",
        "photo_calib",
        "physical_filter",
        "psf",
        "units",
        "visit_info",
        "wcs",
    )

    def __init__(
        self,
        masked_image: MaskedImage,
        *,
        wcs: WCS | None = None,
        psf: Psf | None = None,
        photo_calib: PhotoCalib | None = None,
        band: str = "",
        physical_filter: str = "",
        visit_info: VisitInfo | None = None,
        metadata: dict[str, Any] | None = None,
        units: str = "count",
    ):
        if not isinstance(masked_image, MaskedImage):
            raise InvalidParameterError(
                f"Exposure needs a MaskedImage, got {type(masked_image).__name__}"
            )
        if wcs is not None and not isinstance(wcs, WCS):
            raise InvalidParameterError(f"wcs must be an astropy.wcs.WCS, got {type(wcs)}")
        if units not in ("count", "nJy"):
            raise InvalidParameterError(f"units must be 'count' or 'nJy', got {units!r}")
        self.masked_image = masked_image
        self.wcs = wcs
        self.psf = psf
        self.photo_calib = photo_calib
        self.band = band
        self.physical_filter = physical_filter
        self.visit_info = VisitInfo() if visit_info is None else visit_info
        self.metadata = {} if metadata is None else dict(metadata)
        self.units = units

    # -- pixel access ---------------------------------------------------------------------

    @property
    def image(self) -> np.ndarray:
        """The image array (float32, view)."""
        return self.masked_image.image

    @property
    def mask(self) -> Mask:
        """The :class:`Mask`."""
        return self.masked_image.mask

    @property
    def variance(self) -> np.ndarray:
        """The variance array (float32, view)."""
        return self.masked_image.variance

    @property
    def bbox(self) -> Box:
        """The image's box in its parent frame."""
        return self.masked_image.bbox

    def __getitem__(self, bbox: Box) -> Exposure:
        """Cut-out sharing pixels, WCS and PSF with this exposure."""
        return self.replace(masked_image=self.masked_image[bbox])

    def cutout(self, bbox: Box) -> Exposure:
        """Same as ``self[bbox]``."""
        return self[bbox]

    def copy(self) -> Exposure:
        """Copy with its own pixels (WCS, PSF and calibration are shared, being immutable)."""
        return self.replace(masked_image=self.masked_image.copy())

    def replace(self, **changes: Any) -> Exposure:
        """Copy with some attributes changed (pixels shared unless ``masked_image`` is given)."""
        kwargs = {name: getattr(self, name) for name in self.__slots__}
        kwargs.update(changes)
        return Exposure(kwargs.pop("masked_image"), **kwargs)

    # -- sky ------------------------------------------------------------------------------

    def _require_wcs(self) -> WCS:
        if self.wcs is None:
            raise InvalidExposureError(f"exposure {self.describe()} has no WCS")
        return self.wcs

    def pixel_to_sky(self, x: np.ndarray | float, y: np.ndarray | float) -> tuple:
        """``(ra, dec)`` in degrees of parent pixel coordinates."""
        return pixel_to_sky(self._require_wcs(), x, y)

    def sky_to_pixel(self, ra: np.ndarray | float, dec: np.ndarray | float) -> tuple:
        """Parent pixel coordinates of sky positions in degrees."""
        return sky_to_pixel(self._require_wcs(), ra, dec)

    def sky_polygon(self) -> np.ndarray:
        """``(4, 2)`` array of the box's outer corners as ``(ra, dec)`` degrees."""
        x, y = np.array(self.bbox.corners()).T
        return np.column_stack(self.pixel_to_sky(x, y))

    # -- calibration ----------------------------------------------------------------------

    def calibrated(self) -> Exposure:
        """A copy in nJy (image times the calibration, variance times its square).

        Raises
        ------
        InvalidExposureError
            If the exposure is in counts and has no :class:`PhotoCalib`.
        """
        if self.units == "nJy":
            return self.copy()
        if self.photo_calib is None:
            raise InvalidExposureError(
                f"exposure {self.describe()} is in counts and has no PhotoCalib"
            )
        masked_image = self.masked_image * self.photo_calib.calibration_mean
        return self.replace(masked_image=masked_image, photo_calib=None, units="nJy")

    def describe(self) -> str:
        """Short human identification: visit, detector, band and box."""
        info = self.visit_info
        parts = [
            f"visit={info.visit}" if info.visit is not None else None,
            f"detector={info.detector}" if info.detector is not None else None,
            f"band={self.band}" if self.band else None,
            str(self.bbox),
        ]
        return " ".join(p for p in parts if p)

    def __getstate__(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def __repr__(self) -> str:
        return f"Exposure({self.describe()}, units={self.units})"
