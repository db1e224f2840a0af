"""Warping masked images and exposures onto another WCS and box (data-model layer)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
from astropy.wcs import WCS

from ..errors import InvalidExposureError, InvalidParameterError
from ..image import Box, Exposure, Mask, MaskedImage
from ._core import as_int32, warp_arrays
from ._lanczos import kernel_half_width
from ._transform import check_grid_options, make_coordinate_grid

__all__ = ["overlap_box", "warp_exposure", "warp_masked_image"]

log = logging.getLogger(__name__)

#: Points per side of the source box projected to find the overlap.
_EDGE_SAMPLES = 64


def overlap_box(src_bbox: Box, src_wcs: WCS, dst_wcs: WCS, dst_bbox: Box) -> Box:
    """The part of ``dst_bbox`` that can receive data from a source on ``src_bbox``.

    The outline of the source box (its outer pixel edges, sampled densely) is
    projected into destination pixels; the result is its bounding box, grown
    by one pixel and clipped to ``dst_bbox``. Cheap (a few hundred WCS
    evaluations), and conservative: every destination pixel outside it is
    NO_DATA in a warp, though pixels inside it may be too.

    Returns
    -------
    Box
        Possibly empty (no overlap: the source misses the destination box, or
        lies on the far side of the destination projection). If only part of
        the outline has a valid destination position, all of ``dst_bbox``.
    """
    if src_bbox.is_empty or dst_bbox.is_empty:
        return Box(dst_bbox.x0, dst_bbox.y0, 0, 0)
    xa, ya, xb, yb = (
        src_bbox.x0 - 0.5,
        src_bbox.y0 - 0.5,
        src_bbox.x_end - 0.5,
        src_bbox.y_end - 0.5,
    )
    t = np.linspace(0.0, 1.0, _EDGE_SAMPLES, endpoint=False)
    x = np.concatenate(
        [xa + (xb - xa) * t, np.full_like(t, xb), xb - (xb - xa) * t, np.full_like(t, xa)]
    )
    y = np.concatenate(
        [np.full_like(t, ya), ya + (yb - ya) * t, np.full_like(t, yb), yb - (yb - ya) * t]
    )
    ra, dec = src_wcs.all_pix2world(x, y, 0)
    xd, yd = dst_wcs.all_world2pix(ra, dec, 0, tolerance=1e-10, maxiter=50, quiet=True)
    valid = np.isfinite(xd) & np.isfinite(yd)
    if not valid.any():
        return Box(dst_bbox.x0, dst_bbox.y0, 0, 0)
    if not valid.all():
        return dst_bbox
    outline = Box.from_corners(
        int(np.floor(xd.min())) - 1,
        int(np.floor(yd.min())) - 1,
        int(np.ceil(xd.max())) + 1,
        int(np.ceil(yd.max())) + 1,
    )
    return outline.intersection(dst_bbox)


def _output_mask_planes(mask: Mask) -> dict[str, int]:
    planes = Mask(np.zeros((1, 1), np.int32), planes=mask.planes)
    planes.add_plane("NO_DATA")
    return planes.planes


def warp_masked_image(
    masked_image: MaskedImage,
    src_wcs: WCS,
    dst_wcs: WCS,
    bbox: Box,
    *,
    kernel: str = "lanczos3",
    interp_length: int = 10,
    grid_interpolation: str = "linear",
    max_interp_error: float | None = 1e-3,
    conserve_flux: bool = True,
    grow_planes: str | Iterable[str] = ("EDGE",),
) -> MaskedImage:
    """Resample a masked image from ``src_wcs`` onto ``bbox`` of ``dst_wcs``.

    Each destination pixel takes the value at the source position that sees
    the same point of the sky (LSST afw ``warpImage``):

    - **image** ``sum(w I) / sum(w)``, **variance** ``sum(w^2 V) / sum(w)^2``,
      with ``w`` the separable ``2n x 2n`` kernel taps (``n = 3`` for
      Lanczos-3, 1 for bilinear) at source pixels ``floor(xs) - n + 1 ..
      floor(xs) + n`` (and the same in y) — the *kernel footprint*. The
      variance plane is that of each pixel alone; warped pixels are
      correlated with their neighbours.
    - **conserve_flux** (default): the image is per source pixel, so it is
      multiplied by the Jacobian ``J = |det d(src)/d(dst)|`` (destination
      pixel area in source pixels) and the variance by ``J^2``: the sum of
      the pixels over a source is preserved when the pixel scales differ.
      With False, pixel values (surface brightness) are kept.
    - **NO_DATA** (image NaN, variance +inf) wherever the destination pixel
      lacks full input coverage: the kernel footprint is not wholly inside
      the source box, or holds a source pixel with NO_DATA or a non-finite
      image or variance (even one of zero weight), or no source position
      exists. Pixels whose footprint leaves the source carry only the
      NO_DATA bit (LSST's pad value); the others keep their mask bits too.
    - **mask**: the OR of the source bits over the *bilinear footprint* (the
      up to 2 x 2 pixels ``floor(xs) .. floor(xs) + 1`` with non-zero
      bilinear weight), plus the ``grow_planes`` (EDGE by default, LSST's
      ``growFullMask``) ORed over the whole kernel footprint.

    Source positions come from the exact WCS transform on a grid of nodes
    every ``interp_length`` destination pixels, interpolated in between
    (:func:`make_coordinate_grid`).

    Parameters
    ----------
    masked_image : MaskedImage
        Source pixels, in the parent frame of ``src_wcs``.
    src_wcs, dst_wcs : astropy.wcs.WCS
        Source and destination WCS.
    bbox : Box
        Destination box in the parent frame of ``dst_wcs``.
    kernel : {"lanczos3", "lanczos4", "lanczos5", "bilinear"}
        Warping kernel.
    interp_length : int
        Node spacing of the transform grid, destination pixels (LSST ``interpLength``).
    grid_interpolation : {"linear", "cubic"}
        Interpolation of the transform between nodes.
    max_interp_error : float or None
        Largest tolerated interpolation error of the transform (source
        pixels): when exceeded, ``interp_length`` is halved until it is met.
        None skips the check.
    conserve_flux : bool
        Scale by the Jacobian (see above).
    grow_planes : str or iterable of str
        Mask planes grown over the full kernel footprint (at most 7); planes
        the source mask does not define are ignored.

    Returns
    -------
    MaskedImage
        The warp on ``bbox``; its mask has the source's planes plus NO_DATA.
    """
    if not isinstance(masked_image, MaskedImage):
        raise InvalidParameterError(
            f"masked_image must be a MaskedImage, got {type(masked_image).__name__}"
        )
    _check_options(kernel, interp_length, grid_interpolation, max_interp_error, bbox)
    _check_wcs(src_wcs, "src_wcs")
    _check_wcs(dst_wcs, "dst_wcs")
    planes = _output_mask_planes(masked_image.mask)
    work = overlap_box(masked_image.bbox, src_wcs, dst_wcs, bbox)
    if work.is_empty:
        log.debug("warp: source %s does not overlap %s", masked_image.bbox, bbox)
        return MaskedImage.no_data(bbox, planes=planes)
    grid = make_coordinate_grid(
        src_wcs,
        dst_wcs,
        work,
        interp_length=interp_length,
        interpolation=grid_interpolation,
        max_error=max_interp_error,
    )
    log.debug(
        "warp: %s onto %s, interp_length %d, interpolation error %.2g px",
        masked_image.bbox,
        work,
        grid.interp_length,
        grid.max_error,
    )
    no_data = 1 << planes["NO_DATA"]
    if isinstance(grow_planes, str):
        grow_planes = (grow_planes,)
    grow = masked_image.mask.bitmask(tuple(grow_planes), ignore_missing=True)
    out = (
        np.empty(bbox.shape, np.float32),
        np.empty(bbox.shape, np.float32),
        np.empty(bbox.shape, np.int32),
    )
    if work != bbox:
        out[0].fill(np.nan)
        out[1].fill(np.inf)
        out[2].fill(as_int32(no_data))
    warp_arrays(
        masked_image.image,
        masked_image.variance,
        masked_image.mask.array,
        grid,
        src_origin=(masked_image.bbox.x0, masked_image.bbox.y0),
        kernel=kernel,
        conserve_flux=conserve_flux,
        no_data_bit=no_data,
        grow_bits=int(grow),
        out=out,
        out_origin=(bbox.x0, bbox.y0),
    )
    return MaskedImage(out[0], Mask(out[2], bbox=bbox, planes=planes), out[1], bbox=bbox)


def warp_exposure(
    exposure: Exposure,
    wcs: WCS,
    bbox: Box,
    *,
    kernel: str = "lanczos3",
    interp_length: int = 10,
    grid_interpolation: str = "linear",
    max_interp_error: float | None = 1e-3,
    conserve_flux: bool = True,
    grow_planes: str | Iterable[str] = ("EDGE",),
) -> Exposure:
    """Warp an exposure onto ``bbox`` of the destination ``wcs`` (LSST ``warpExposure``).

    The pixels are resampled by :func:`warp_masked_image` (see there for the
    kernel, flux, NO_DATA and mask rules). The result has the destination
    WCS and box, the source's units, photometric calibration, band, filter,
    visit info and metadata unchanged (calibrating is the caller's job), and
    **no PSF** (``psf=None``): the PSF of a warp is built by the caller, for
    example as a ``CoaddPsf``.

    If the destination box does not overlap the source at all
    (:func:`overlap_box` is empty) the result is returned quickly with every
    pixel NO_DATA; the caller decides whether that is an error (for example
    by raising :class:`~skydiff.errors.NoWorkFound`).

    Parameters
    ----------
    exposure : Exposure
        Source exposure with a WCS.
    wcs : astropy.wcs.WCS
        Destination WCS (parent frame of ``bbox``), for example a patch's.
    bbox : Box
        Destination box.
    kernel, interp_length, grid_interpolation, max_interp_error, conserve_flux, grow_planes
        As for :func:`warp_masked_image`.

    Returns
    -------
    Exposure
        The warped exposure.

    Raises
    ------
    InvalidExposureError
        If ``exposure`` has no WCS.
    InvalidParameterError
        For an unknown kernel, a non-positive ``interp_length``, a ``wcs``
        that is not a celestial astropy WCS, or a ``bbox`` that is not a
        non-empty :class:`Box`.
    """
    if not isinstance(exposure, Exposure):
        raise InvalidParameterError(f"exposure must be an Exposure, got {type(exposure).__name__}")
    if exposure.wcs is None:
        raise InvalidExposureError(f"exposure {exposure.describe()} has no WCS; cannot warp it")
    _check_wcs(wcs, "wcs")
    masked_image = warp_masked_image(
        exposure.masked_image,
        exposure.wcs,
        wcs,
        bbox,
        kernel=kernel,
        interp_length=interp_length,
        grid_interpolation=grid_interpolation,
        max_interp_error=max_interp_error,
        conserve_flux=conserve_flux,
        grow_planes=grow_planes,
    )
    return exposure.replace(masked_image=masked_image, wcs=wcs, psf=None)


def _check_wcs(wcs: object, name: str) -> None:
    if not isinstance(wcs, WCS):
        raise InvalidParameterError(f"{name} must be an astropy.wcs.WCS, got {type(wcs).__name__}")
    if wcs.naxis != 2 or not wcs.has_celestial:
        raise InvalidParameterError(
            f"{name} must be a 2-d celestial WCS, got CTYPE {list(wcs.wcs.ctype)}"
        )


def _check_options(
    kernel: str,
    interp_length: int,
    grid_interpolation: str,
    max_interp_error: float | None,
    bbox: Box,
) -> None:
    kernel_half_width(kernel)
    check_grid_options(interp_length, grid_interpolation)
    if max_interp_error is not None and not max_interp_error > 0:
        raise InvalidParameterError(
            f"max_interp_error must be positive or None, got {max_interp_error!r}"
        )
    if not isinstance(bbox, Box):
        raise InvalidParameterError(f"bbox must be a Box, got {type(bbox).__name__}")
    if bbox.is_empty:
        raise InvalidParameterError(f"bbox must not be empty, got {bbox}")
