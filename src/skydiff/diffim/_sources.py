"""Choosing the stars whose stamps constrain the PSF-matching kernel."""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from ..background import SubtractBackgroundTask
from ..characterize import StarSelectorTask
from ..detection import SourceDetectionTask, SourceMeasurementTask
from ..errors import InsufficientSourcesError, InvalidExposureError
from ..image import Exposure
from ._config import AlardLuptonSubtractConfig

__all__ = ["detect_kernel_sources", "kernel_stamp_centers"]


def detect_kernel_sources(science: Exposure, config: AlardLuptonSubtractConfig) -> Table:
    """Detect and measure sources on a background-subtracted copy of ``science``."""
    if science.psf is None:
        raise InvalidExposureError(
            f"science exposure {science.describe()} has no PSF: characterize it first "
            "(skydiff characterize) or pass sources"
        )
    work = SubtractBackgroundTask().run(science).exposure
    detections = SourceDetectionTask(config.detection).run(work)
    return SourceMeasurementTask().run(work, detections).catalog


def kernel_stamp_centers(
    sources: Table,
    science: Exposure,
    template: Exposure,
    config: AlardLuptonSubtractConfig,
    *,
    half_size: int,
    kernel_radius: int,
    fwhm: float,
) -> tuple[np.ndarray, Table]:
    """Array positions of usable kernel stamps, brightest first, and their catalogue rows.

    A stamp is usable when its science region (``2 half_size + 1`` pixels)
    grown by the kernel radius lies on the image and neither image has a
    ``kernel.bad_planes`` pixel there.

    Raises
    ------
    InsufficientSourcesError
        If fewer than ``min_stamps`` stamps are usable.
    """
    if len(sources) == 0:
        raise InsufficientSourcesError("no sources to build PSF-matching kernel stamps from")
    if "snr" in sources.colnames and "flag_edge" in sources.colnames:
        try:
            chosen = StarSelectorTask(config.star_selector).run(sources, science.bbox, fwhm=fwhm)
            sources = sources[chosen.selected]
        except InsufficientSourcesError as error:
            raise InsufficientSourcesError(
                f"too few kernel candidates: {error}", error.metadata
            ) from error
    bbox = science.bbox
    margin = half_size + kernel_radius
    cx = np.rint(np.asarray(sources["x"], float) - bbox.x0).astype(np.int64)
    cy = np.rint(np.asarray(sources["y"], float) - bbox.y0).astype(np.int64)
    inside = (cx >= margin) & (cx < bbox.width - margin) & (cy >= margin)
    inside &= cy < bbox.height - margin
    bits_s = science.mask.bitmask(config.kernel.bad_planes, ignore_missing=True)
    bits_t = template.mask.bitmask(config.kernel.bad_planes, ignore_missing=True)
    usable = inside.copy()
    for k in np.flatnonzero(inside):
        inner = (
            slice(cy[k] - half_size, cy[k] + half_size + 1),
            slice(cx[k] - half_size, cx[k] + half_size + 1),
        )
        outer = (
            slice(cy[k] - margin, cy[k] + margin + 1),
            slice(cx[k] - margin, cx[k] + margin + 1),
        )
        usable[k] = not (
            np.any(science.mask.array[inner] & bits_s)
            or np.any(template.mask.array[outer] & bits_t)
        )
    order = (
        np.argsort(-np.asarray(sources["snr"], float))
        if "snr" in sources.colnames
        else np.arange(len(sources))
    )
    order = order[usable[order]][: config.max_stamps]
    if order.size < config.min_stamps:
        raise InsufficientSourcesError(
            f"only {order.size} usable kernel stamps (of {len(sources)} candidate sources: "
            f"{int(np.sum(~inside))} too close to the edge, {int(np.sum(inside & ~usable))} on "
            f"masked pixels); {config.min_stamps} needed",
            {"n_candidates": len(sources), "n_usable": int(order.size)},
        )
    return np.column_stack([cx[order], cy[order]]), sources[order]
