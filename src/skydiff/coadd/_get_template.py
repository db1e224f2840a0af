"""GetTemplateTask: a template for one science exposure cut from coadd patches (LSST name kept)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from astropy.wcs import WCS

from ..errors import NoWorkFound
from ..image import Box, Exposure, MaskedImage
from ..math import bin_image
from ..psf import CoaddPsf, CoaddPsfInput
from ..task import Config, Task, TaskResult, config_field
from ..warp import overlap_box, warp_exposure
from ._make_warp import WarperConfig

__all__ = [
    "CoaddHandle",
    "GetTemplateConfig",
    "GetTemplateResult",
    "GetTemplateTask",
    "OverlappingCoadds",
]

log = logging.getLogger(__name__)


class CoaddHandle(Protocol):
    """What GetTemplateTask needs of a coadd: its box and WCS, and a (sub-box) read."""

    bbox: Box
    wcs: WCS

    def get(self, bbox: Box | None = None) -> Exposure: ...


def _template_warper() -> WarperConfig:
    return WarperConfig(kernel="lanczos3")


@dataclass(frozen=True)
class GetTemplateConfig(Config):
    """Configuration of :class:`GetTemplateTask` (LSST names in brackets)."""

    template_border: int = config_field(
        20, doc="Pixels added around the science box for warping [templateBorderSize]."
    )
    warper: WarperConfig = config_field(
        doc="Resampling of the coadds [warp]. Lanczos-3 (LSST uses Lanczos-5 here): three "
        "times faster, and the PSF-matching kernel absorbs the slightly wider template PSF.",
        factory=_template_warper,
    )
    high_variance_threshold: float = config_field(
        4.0,
        doc="HIGH_VARIANCE where the smoothed variance exceeds this multiple of its median "
        "[highVarianceThreshold].",
    )
    high_variance_bin: int = config_field(
        16, doc="Side (pixels) of the bins whose median variance is compared in that test."
    )
    min_good_fraction: float = config_field(
        0.0, doc="Raise NoWorkFound when fewer template pixels than this fraction have data."
    )

    def validate(self) -> None:
        self.check(self.template_border >= 0, "template_border", "must be >= 0")
        self.check(self.high_variance_threshold > 1, "high_variance_threshold", "must be > 1")
        self.check(self.high_variance_bin >= 1, "high_variance_bin", "must be >= 1")
        self.check(0 <= self.min_good_fraction <= 1, "min_good_fraction", "must be in [0, 1]")


@dataclass(frozen=True)
class OverlappingCoadds:
    """Result of :meth:`GetTemplateTask.get_exposures`: handles and data IDs by tract."""

    coadd_handles: dict[int, list[CoaddHandle]]
    data_ids: dict[int, list[dict[str, Any]]]


@dataclass(frozen=True)
class GetTemplateResult(TaskResult):
    """Result of :meth:`GetTemplateTask.run`.

    Attributes
    ----------
    template : Exposure
        The coadds resampled onto the science WCS and box grown by
        ``template_border`` (nJy, a CoaddPsf of the coadds' PSFs) [template].
    """

    template: Exposure


class GetTemplateTask(Task):
    """Cut a template for one science exposure out of coadd patches of one or more tracts.

    The patches of each tract are merged on the tract grid (each pixel from
    the first patch that has data there) over just the region the science box
    needs, and warped once onto the science WCS. Where tracts overlap their
    warps are averaged with inverse-variance weights ``w_t = 1 / V_t``, and
    the variance planes are averaged **with the same weights** (``V = sum w_t
    V_t / sum w_t``), not added in quadrature: the tracts are built from the
    same exposures, so their noise is not independent (LSST's rule).
    """

    ConfigClass = GetTemplateConfig
    config: GetTemplateConfig

    def get_exposures(
        self,
        coadd_handles: Mapping[tuple[int, int], CoaddHandle],
        bbox: Box,
        skymap,
        wcs: WCS | None,
    ) -> OverlappingCoadds:
        """The coadds whose patch outer box overlaps the science box on the sky.

        Parameters
        ----------
        coadd_handles : mapping
            ``(tract, patch sequential index) -> handle`` of every candidate.
        bbox : Box
            Science box (grown by ``template_border`` here).
        skymap : SkyMap
            The coadds' sky map.
        wcs : astropy.wcs.WCS or None
            Science WCS.

        Raises
        ------
        NoWorkFound
            If ``wcs`` is None or no candidate overlaps.
        """
        if wcs is None:
            raise NoWorkFound("the science exposure has no WCS: no template can be made")
        wanted = bbox.grown(self.config.template_border)
        handles: dict[int, list[CoaddHandle]] = {}
        data_ids: dict[int, list[dict[str, Any]]] = {}
        for (tract_id, patch_id), handle in sorted(coadd_handles.items()):
            tract = skymap[tract_id]
            patch = tract.patch(patch_id)
            if overlap_box(patch.outer_bbox, tract.wcs, wcs, wanted).is_empty:
                continue
            log.info("using template input tract=%d patch=%d", tract_id, patch_id)
            handles.setdefault(tract_id, []).append(handle)
            data_ids.setdefault(tract_id, []).append({"tract": tract_id, "patch": patch_id})
        if not handles:
            raise NoWorkFound(f"no coadd patch overlaps the science box {bbox}")
        return OverlappingCoadds(handles, data_ids)

    def run(
        self,
        coadd_handles: Mapping[int, Sequence[CoaddHandle]],
        bbox: Box,
        wcs: WCS,
        data_ids: Mapping[int, Sequence[Mapping[str, Any]]],
        physical_filter: str = "",
    ) -> GetTemplateResult:
        """Warp the coadds of every tract onto ``bbox`` (grown by the border) of ``wcs``.

        Raises
        ------
        NoWorkFound
            If no coadd gives a valid pixel.
        """
        if wcs is None:
            raise NoWorkFound("the science exposure has no WCS: no template can be made")
        metadata = self.new_metadata()
        final_bbox = bbox.grown(self.config.template_border)
        warps, psf_inputs, first = [], [], None
        for tract_id, handles in sorted(coadd_handles.items()):
            ids = list(data_ids.get(tract_id, [{}] * len(handles)))
            with self.timer("read", metadata):
                merged, used = self._merged_tract(handles, ids, wcs, final_bbox)
            if merged is None:
                log.info("tract %d has no pixels under the science box; skipped", tract_id)
                continue
            first = merged if first is None else first
            with self.timer("warp", metadata):
                warped = warp_exposure(
                    merged,
                    wcs,
                    final_bbox,
                    kernel=self.config.warper.kernel,
                    interp_length=self.config.warper.interp_length,
                    grow_planes=self.config.warper.grow_mask_planes,
                )
            if np.isfinite(warped.image).any():
                warps.append(warped.masked_image)
                psf_inputs += used
        if not warps:
            raise NoWorkFound(f"no coadd pixel falls on the science box {final_bbox}")
        with self.timer("combine", metadata):
            masked = _combine(warps, final_bbox)
            self.check_high_variance(masked)
        good = float(np.mean(~masked.mask.get("NO_DATA")))
        metadata.add("n_tracts", len(warps))
        metadata.add("n_patches", len(psf_inputs))
        metadata.add("good_fraction", good)
        if good == 0 or good < self.config.min_good_fraction:
            raise NoWorkFound(f"the template has data on only {good:.1%} of {final_bbox}")
        template = Exposure(
            masked,
            wcs=wcs,
            psf=CoaddPsf(psf_inputs, wcs) if psf_inputs else None,
            units="nJy",
            band=first.band,
            physical_filter=physical_filter or first.physical_filter,
        )
        return GetTemplateResult(template=template, metadata=metadata)

    def run_on_coadds(
        self, coadd_handles: Sequence[CoaddHandle], bbox: Box, wcs: WCS, physical_filter: str = ""
    ) -> GetTemplateResult:
        """:meth:`run` on coadds without a sky map: tracts are told apart by their WCS.

        Coadds whose box does not reach the science box are skipped; any
        image with a WCS (a coadd, a warp, another exposure) can serve.

        Raises
        ------
        NoWorkFound
            If no coadd overlaps.
        """
        if wcs is None:
            raise NoWorkFound("the science exposure has no WCS: no template can be made")
        wanted = bbox.grown(self.config.template_border)
        by_tract: dict[str, list[CoaddHandle]] = {}
        for handle in coadd_handles:
            if not overlap_box(handle.bbox, handle.wcs, wcs, wanted).is_empty:
                by_tract.setdefault(handle.wcs.to_header_string(), []).append(handle)
        if not by_tract:
            raise NoWorkFound(
                f"none of {len(coadd_handles)} coadds overlaps the science box {bbox}"
            )
        handles = dict(enumerate(by_tract.values()))
        data_ids = {t: [{"tract": t}] * len(h) for t, h in handles.items()}
        return self.run(handles, bbox, wcs, data_ids, physical_filter)

    def _merged_tract(self, handles, ids, wcs: WCS, final_bbox: Box):
        """The tract's patches merged over the region needed, and their PSF records."""
        tract_wcs = handles[0].wcs
        needed = _needed_region(wcs, final_bbox, tract_wcs, self.config.warper.kernel)
        merged, used = None, []
        for handle, data_id in zip(handles, ids, strict=True):
            region = handle.bbox.intersection(needed)
            if region.is_empty:
                continue
            coadd = handle.get(bbox=region)
            if merged is None:
                merged = coadd.replace(masked_image=MaskedImage.no_data(needed))
            merged.masked_image.fill_no_data(coadd.masked_image)
            if coadd.psf is not None:
                used.append(CoaddPsfInput(coadd.psf, handle.wcs, handle.bbox, 1.0))
            log.debug("template input %s: %s", dict(data_id), region)
        return merged, used

    def check_high_variance(self, template: MaskedImage) -> None:
        """Set HIGH_VARIANCE where the local variance exceeds a multiple of its median.

        The statistic of each ``high_variance_bin``-pixel bin (good pixels
        only) is the median, compared with the median over the bins: a
        shallow region (few coadd inputs) covers whole bins and is flagged,
        while a star core -- high variance from its own photon noise, a few
        pixels of a bin -- is not, so bright stars stay usable as kernel
        stamps. Modifies ``template`` in place (LSST ``checkHighVariance``).
        """
        good = ~template.mask.get("NO_DATA") & np.isfinite(template.variance)
        if not good.any():
            return
        size = self.config.high_variance_bin
        binned = bin_image(template.variance, bin_size=size, good=good, statistic="median").values
        finite = np.isfinite(binned)
        high = np.zeros(binned.shape, bool)
        high[finite] = binned[finite] > self.config.high_variance_threshold * np.median(
            binned[finite]
        )
        height, width = template.variance.shape
        expanded = np.repeat(np.repeat(high, size, axis=0), size, axis=1)[:height, :width]
        template.mask.add_plane("HIGH_VARIANCE")
        template.mask.set("HIGH_VARIANCE", expanded & good)


def _needed_region(wcs: WCS, final_bbox: Box, tract_wcs: WCS, kernel: str) -> Box:
    """Tract-pixel box covering the science box, with the resampling kernel's margin."""
    margin = {"bilinear": 2, "lanczos3": 4, "lanczos4": 5, "lanczos5": 6}[kernel]
    big = Box(-(10**8), -(10**8), 2 * 10**8, 2 * 10**8)
    return overlap_box(final_bbox, wcs, tract_wcs, big).grown(margin)


def _combine(warps: list[MaskedImage], bbox: Box) -> MaskedImage:
    """Inverse-variance weighted mean of the tract warps; variances with the same weights."""
    if len(warps) == 1:
        return warps[0]
    result = MaskedImage.no_data(bbox)
    image = np.zeros(bbox.shape)
    variance = np.zeros(bbox.shape)
    total = np.zeros(bbox.shape)
    for warp in warps:
        for name in warp.mask.planes:
            result.mask.add_plane(name)
        good = ~warp.mask.get("NO_DATA") & np.isfinite(warp.image) & (warp.variance > 0)
        weight = np.where(good, 1.0 / np.where(good, warp.variance, 1.0), 0.0)
        image += weight * np.where(good, warp.image, 0.0)
        variance += weight * np.where(good, warp.variance, 0.0)
        total += weight
        result.mask.array[good] |= warp.mask.translated(result.mask.planes)[good]
    covered = total > 0
    result.image[covered] = (image[covered] / total[covered]).astype(np.float32)
    result.variance[covered] = (variance[covered] / total[covered]).astype(np.float32)
    no_data = result.mask.bitmask("NO_DATA")
    result.mask.array[covered] &= ~no_data
    return result
