"""Handles of warps for MatchBackgroundsTask: its inputs, and its matched warps read lazily."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from ..background import BackgroundModel
from ..errors import InvalidParameterError
from ..image import Box, Exposure, Mask, MaskedImage
from ..io import InMemoryHandle

__all__ = ["MatchedWarpHandle"]


class MatchedWarpHandle:
    """A warp with its difference background added, computed on each :meth:`get`.

    Has the handle interface of :class:`~skydiff.io.ExposureHandle` (``bbox``,
    ``wcs``, ``psf``, ``band``, ``units``, ``visit_info``, ``mask_planes``,
    ``get(bbox, out=)``), so matched warps can be coadded or written one at a
    time without holding them all in memory. The input is never modified:
    :meth:`get` reads a private copy of the pixels (or into ``out``).

    Parameters
    ----------
    handle : handle
        The input warp.
    background : BackgroundModel
        Its visit's difference background (nJy), evaluated on the box read.
    reference_visit : int
        The visit matched to; recorded in the metadata of what :meth:`get` returns.
    """

    def __init__(self, handle: Any, background: BackgroundModel, *, reference_visit: int):
        self.handle = handle
        self.background = background
        self.reference_visit = int(reference_visit)

    @property
    def is_reference(self) -> bool:
        """Whether this warp belongs to the reference visit (its background is zero)."""
        return self.handle.visit_info.visit == self.reference_visit

    bbox = property(lambda self: self.handle.bbox, doc="The warp's box.")
    wcs = property(lambda self: self.handle.wcs, doc="The tract WCS.")
    psf = property(lambda self: getattr(self.handle, "psf", None), doc="The warp's PSF.")
    band = property(lambda self: self.handle.band, doc="The band.")
    units = property(lambda self: self.handle.units, doc="Pixel units (nJy).")
    visit_info = property(lambda self: self.handle.visit_info, doc="The visit.")
    physical_filter = property(lambda self: getattr(self.handle, "physical_filter", ""))
    mask_planes = property(lambda self: getattr(self.handle, "mask_planes", None))

    def describe(self) -> str:
        return f"background-matched {_describe(self.handle)}"

    def get(self, bbox: Box | None = None, *, out: MaskedImage | None = None) -> Exposure:
        """The matched warp on ``bbox`` (default: all of it), optionally read into ``out``."""
        bbox = self.bbox if bbox is None else bbox
        exposure = _private_copy(self.handle, bbox, out)
        if not self.is_reference:
            image = exposure.image
            image += self.background.evaluate(bbox)
        metadata = {**exposure.metadata, "bg_match_reference_visit": self.reference_visit}
        return exposure.replace(metadata=metadata)

    def __repr__(self) -> str:
        return f"MatchedWarpHandle({self.handle!r}, reference_visit={self.reference_visit})"


def _private_copy(handle: Any, bbox: Box, out: MaskedImage | None) -> Exposure:
    """``handle.get(bbox)`` in pixels of our own (or ``out``), never a view of the input."""
    accepts_out = _accepts_out(handle)
    if out is None:
        if not accepts_out:
            return handle.get(bbox).copy()
        planes = getattr(handle, "mask_planes", None)
        out = MaskedImage(
            np.empty(bbox.shape, np.float32),
            Mask(np.zeros(bbox.shape, np.int32), bbox=bbox, planes=planes),
            np.empty(bbox.shape, np.float32),
            bbox=bbox,
        )
    if accepts_out:
        return handle.get(bbox, out=out)
    exposure = handle.get(bbox)
    out.assign(exposure.masked_image)
    return exposure.replace(masked_image=out)


def _as_handle(warp: Any) -> Any:
    """``warp`` as a handle: Exposures wrapped in an InMemoryHandle, handles checked."""
    if isinstance(warp, Exposure):
        return InMemoryHandle(warp)
    missing = [
        n for n in ("bbox", "wcs", "band", "units", "visit_info", "get") if not hasattr(warp, n)
    ]
    if missing:
        raise InvalidParameterError(
            f"a warp must be an Exposure or a handle; {type(warp).__name__} lacks {missing}"
        )
    return warp


def _describe(handle: Any) -> str:
    """The handle's own description (a file name), or its repr."""
    describe = getattr(handle, "describe", None)
    return describe() if callable(describe) else repr(handle)


def _accepts_out(handle: Any) -> bool:
    """Whether ``handle.get`` can read into a given ``out``."""
    return "out" in inspect.signature(handle.get).parameters
