"""Checks and grouping of the warps given to MatchBackgroundsTask."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidExposureError
from ..image import Box, grid_offset, pixel_to_sky
from ._matched_warp import _describe

#: Warps whose WCS moves a tract pixel by more than this (pixels) are on another grid.
_GRID_TOLERANCE = 1e-3


def _check_warps(handles: list, skymap: Any) -> tuple[Box, int | None]:
    """The region the warps cover and the tract id; raise naming the first bad warp."""
    first = handles[0]
    for handle in handles:
        name = _describe(handle)
        if handle.units != "nJy":
            raise InvalidExposureError(
                f"warp {name} is in {handle.units!r}, not nJy: match calibrated warps"
            )
        if handle.wcs is None:
            raise InvalidExposureError(f"warp {name} has no WCS")
        if handle.visit_info is None or handle.visit_info.visit is None:
            raise InvalidExposureError(f"warp {name} has no visit id (visit_info.visit)")
        if handle.band != first.band:
            raise InvalidExposureError(
                f"warp {name} has band {handle.band!r} but warp {_describe(first)} has "
                f"{first.band!r}: backgrounds are matched within one band"
            )
    region = _union(h.bbox for h in handles)
    for handle in handles[1:]:
        offset = grid_offset(first.wcs, handle.wcs, region)
        if not offset <= _GRID_TOLERANCE:
            raise InvalidExposureError(
                f"warp {_describe(handle)} is not on the pixel grid of warp {_describe(first)} "
                f"(its WCS moves tract pixels by up to {offset:.3g} pixels): backgrounds are "
                "matched between warps of one tract"
            )
    if skymap is None:
        return region, None
    tract = _find_tract(skymap, first, region)
    for handle in handles:
        if not tract.bbox.contains(handle.bbox):
            raise InvalidExposureError(
                f"warp {_describe(handle)} ({handle.bbox}) extends beyond the box {tract.bbox} "
                f"of tract {tract.tract_id}"
            )
    return region, tract.tract_id


def _find_tract(skymap: Any, handle: Any, region: Box) -> Any:
    """The tract of ``skymap`` whose pixel grid is the warps'."""
    ra, dec = (float(v) for v in pixel_to_sky(handle.wcs, *region.center))
    for entry in skymap.find_tract_patch_list(ra, dec):
        if grid_offset(entry.tract.wcs, handle.wcs, region) <= _GRID_TOLERANCE:
            return entry.tract
    raise InvalidExposureError(
        f"warp {_describe(handle)} is not on the pixel grid of any tract of the sky map "
        f"holding (ra, dec) = ({ra:.6f}, {dec:.6f})"
    )


def _union(boxes) -> Box:
    result = Box(0, 0, 0, 0)
    for box in boxes:
        result = result.union(box)
    return result


def _group_by_visit(handles: list) -> dict[int, list[int]]:
    """Visit id -> indices of its warps, visits in increasing order."""
    groups: dict[int, list[int]] = {}
    for index, handle in enumerate(handles):
        groups.setdefault(int(handle.visit_info.visit), []).append(index)
    return dict(sorted(groups.items()))
