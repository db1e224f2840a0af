"""The pipeline's steps: which quanta each needs (graph) and how a worker runs one.

Builders run in the driver and only query the registry; runners run in
workers, read their inputs, run one task and write (not register) outputs.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any

import numpy as np

from ..characterize import ScaleVarianceTask
from ..coadd import (
    AssembleCoaddTask,
    GetTemplateTask,
    MakeWarpTask,
    MatchBackgroundsTask,
)
from ..diffim import AlardLuptonSubtractTask, DetectAndMeasureTask
from ..errors import InvalidExposureError, InvalidParameterError, NoWorkFound
from ..skyframe import SkyCorrectionTask, SkyFrameBuilderTask
from ._config import PipelineConfig
from ._quantum import Quantum

__all__ = ["STEP_BUILDERS", "STEP_RUNNERS", "Roles", "visit_roles"]


class Roles:
    """Template and science visits, and the band of every visit."""

    def __init__(self, template: set[int], science: set[int], bands: dict[int, str]):
        self.template, self.science, self.bands = template, science, bands


def visit_roles(repo, config: PipelineConfig, where: dict[str, Any]) -> Roles:
    """Which visits make templates and which are differenced (see :class:`PipelineConfig`)."""
    records = repo.calexp_records(**where)
    mjd: dict[int, float] = {}
    bands: dict[int, str] = {}
    for record in records:
        mjd.setdefault(record["visit"], record.get("mjd") or 0.0)
        bands[record["visit"]] = record.get("band") or ""
    visits = sorted(mjd, key=lambda v: (mjd[v], v))
    template = set(config.template_visits) & set(visits)
    science = set(config.science_visits) & set(visits)
    if not config.template_visits and not config.science_visits:
        if config.template_selection == "best_seeing":
            seeing = _visit_seeing(repo, records)
            visits = sorted(visits, key=lambda v: (seeing[v], mjd[v], v))
        n = int(config.template_fraction * len(visits) + 1e-9)  # 1/3 of 6 is 2
        n = max(1, min(n, len(visits) - 1)) if len(visits) > 1 else len(visits)
        template, science = set(visits[:n]), set(visits[n:])
    elif not config.template_visits:
        template = set(visits) - science
    elif not config.science_visits:
        science = set(visits) - template
    return Roles(template, science, bands)


def _visit_seeing(repo, records: list[dict[str, Any]]) -> dict[int, float]:
    """Median PSF FWHM (arcsec) at the detector centres of each visit; inf without a PSF.

    Reads only each calexp's header and PSF, not its pixels.
    """
    per_visit: dict[int, list[float]] = defaultdict(list)
    for record in records:
        handle = repo.handle("calexp", {k: record[k] for k in ("instrument", "visit", "detector")})
        psf, wcs = handle.psf, handle.wcs
        if psf is None or wcs is None:
            per_visit[record["visit"]].append(np.inf)
            continue
        x, y = handle.bbox.center
        scale = float(np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix)))) * 3600.0
        per_visit[record["visit"]].append(psf.fwhm(x, y) * scale)
    return {visit: float(np.median(values)) for visit, values in per_visit.items()}


def _key(data_id: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(data_id.items()))


# -- builders (driver) -------------------------------------------------------------------------


def _with_backgrounds(repo, refs: list) -> list:
    """``refs`` followed by the ``calexp_background`` of each calexp that has one."""
    return [*refs, *(b for r in refs for b in repo.query("calexp_background", **r.data_id))]


def build_sky_frame(repo, config: PipelineConfig, roles: Roles) -> list[Quantum]:
    """One quantum per detector: its sky frame from the calexps of every visit."""
    groups: dict[tuple, list] = defaultdict(list)
    for ref in repo.query("calexp"):
        if ref.data_id["visit"] in roles.template | roles.science:
            groups[(ref.data_id["instrument"], ref.data_id["detector"])].append(ref)
    quanta = []
    for (instrument, detector), refs in sorted(groups.items()):
        data_id = _key({"instrument": instrument, "detector": detector})
        inputs = tuple(_with_backgrounds(repo, refs))
        quanta.append(Quantum("sky_frame", data_id, inputs, (("sky_frame", data_id),)))
    return quanta


def build_sky_correction(repo, config: PipelineConfig, roles: Roles) -> list[Quantum]:
    """One quantum per visit: all its calexps and their detectors' sky frames."""
    groups: dict[int, list] = defaultdict(list)
    for ref in repo.query("calexp"):
        if ref.data_id["visit"] in roles.template | roles.science:
            groups[ref.data_id["visit"]].append(ref)
    quanta = []
    for visit, refs in sorted(groups.items()):
        frames = [
            frame
            for ref in refs
            for frame in repo.query(
                "sky_frame", instrument=ref.data_id["instrument"], detector=ref.data_id["detector"]
            )
        ]
        outputs = tuple(
            ("sky_correction", _key({"visit": visit, "detector": ref.data_id["detector"]}))
            for ref in refs
        )
        inputs = (*_with_backgrounds(repo, refs), *frames)
        quanta.append(Quantum("sky_correction", _key({"visit": visit}), inputs, outputs))
    return quanta


def _sky_corrections(repo, config: PipelineConfig, visit: int, detectors) -> list:
    """The sky corrections of ``detectors`` of ``visit`` when the pipeline makes them."""
    if "sky_correction" not in config.steps:
        return []
    return [
        ref
        for detector in sorted(set(detectors))
        for ref in repo.query("sky_correction", visit=visit, detector=detector)
    ]


def build_warp(repo, config: PipelineConfig, roles: Roles) -> list[Quantum]:
    groups: dict[tuple, list] = defaultdict(list)
    for ref in repo.query("calexp"):
        visit, detector = ref.data_id["visit"], ref.data_id["detector"]
        if visit not in roles.template:
            continue
        for tract, patch in repo.patches_for(visit, detector):
            groups[(visit, tract, patch)].append(ref)
    quanta = []
    for (visit, tract, patch), refs in sorted(groups.items()):
        data_id = {"visit": visit, "tract": tract, "patch": patch}
        outputs = [("direct_warp", _key(data_id))]
        if config.make_warp.make_psf_matched:
            outputs.append(("psf_matched_warp", _key(data_id)))
        corrections = _sky_corrections(repo, config, visit, [r.data_id["detector"] for r in refs])
        quanta.append(Quantum("warp", _key(data_id), (*refs, *corrections), tuple(outputs)))
    return quanta


def build_match_backgrounds(repo, config: PipelineConfig, roles: Roles) -> list[Quantum]:
    groups: dict[tuple, list] = defaultdict(list)
    for ref in repo.query("direct_warp"):
        visit = ref.data_id["visit"]
        if visit in roles.template:
            groups[(ref.data_id["tract"], roles.bands[visit])].append(ref)
    quanta = []
    for (tract, band), refs in sorted(groups.items()):
        outputs = tuple(
            ("matched_warp", _key(r.data_id)) for r in sorted(refs, key=lambda r: _key(r.data_id))
        )
        quanta.append(
            Quantum("match_backgrounds", _key({"tract": tract, "band": band}), tuple(refs), outputs)
        )
    return quanta


def build_coadd(repo, config: PipelineConfig, roles: Roles) -> list[Quantum]:
    source = "matched_warp" if "match_backgrounds" in config.steps else "direct_warp"
    groups: dict[tuple, list] = defaultdict(list)
    for ref in repo.query(source):
        visit = ref.data_id["visit"]
        if visit in roles.template:
            key = (ref.data_id["tract"], ref.data_id["patch"], roles.bands[visit])
            groups[key].append(ref)
    quanta = []
    for (tract, patch, band), refs in sorted(groups.items()):
        data_id = {"tract": tract, "patch": patch, "band": band}
        quanta.append(Quantum("coadd", _key(data_id), tuple(refs), (("coadd", _key(data_id)),)))
    return quanta


def build_template(repo, config: PipelineConfig, roles: Roles) -> list[Quantum]:
    quanta = []
    for ref in repo.query("calexp"):
        visit, detector = ref.data_id["visit"], ref.data_id["detector"]
        if visit not in roles.science:
            continue
        band = roles.bands[visit]
        coadds = [
            c
            for tract, patch in repo.patches_for(visit, detector)
            for c in repo.query("coadd", tract=tract, patch=patch, band=band)
        ]
        data_id = {"visit": visit, "detector": detector}
        quanta.append(
            Quantum("template", _key(data_id), (ref, *coadds), (("template", _key(data_id)),))
        )
    return quanta


def build_subtract(repo, config: PipelineConfig, roles: Roles) -> list[Quantum]:
    quanta = []
    for ref in repo.query("calexp"):
        visit, detector = ref.data_id["visit"], ref.data_id["detector"]
        if visit not in roles.science:
            continue
        data_id = {"visit": visit, "detector": detector}
        templates = repo.query("template", visit=visit, detector=detector)
        corrections = _sky_corrections(repo, config, visit, [detector])
        outputs = tuple(
            (name, _key(data_id)) for name in ("difference", "matched_template", "dia_sources")
        )
        quanta.append(Quantum("subtract", _key(data_id), (ref, *templates, *corrections), outputs))
    return quanta


STEP_BUILDERS = {
    "sky_frame": build_sky_frame,
    "sky_correction": build_sky_correction,
    "warp": build_warp,
    "match_backgrounds": build_match_backgrounds,
    "coadd": build_coadd,
    "template": build_template,
    "subtract": build_subtract,
}


# -- runners (workers) ---------------------------------------------------------------------------


def _write(repo, dataset_type: str, data_id, obj):
    """Write an output file, replacing a file left unregistered by a killed run.

    The driver only schedules quanta whose outputs are not registered, so an
    existing file here is such a leftover.
    """
    return repo.write(dataset_type, data_id, obj, overwrite=True)


def _inputs(quantum: Quantum, dataset_type: str) -> list:
    return [ref for ref in quantum.inputs if ref.dataset_type == dataset_type]


def _backgrounds(repo, quantum: Quantum, refs: list) -> list | None:
    """The ``calexp_background`` of each calexp in ``refs`` (None where absent), or None."""
    found = {_key(b.data_id): b for b in _inputs(quantum, "calexp_background")}
    if not found:
        return None
    return [repo.get(found[_key(r.data_id)]) if _key(r.data_id) in found else None for r in refs]


def run_sky_frame(repo, quantum: Quantum, config: PipelineConfig):
    refs = _inputs(quantum, "calexp")
    if len(refs) < config.sky_frame.min_inputs:
        raise NoWorkFound(
            f"{quantum.label}: {len(refs)} calexps, fewer than sky_frame.min_inputs "
            f"({config.sky_frame.min_inputs})"
        )
    exposures = [repo.get(ref) for ref in refs]
    try:
        result = SkyFrameBuilderTask(config.sky_frame).run(
            exposures, backgrounds=_backgrounds(repo, quantum, refs)
        )
    except InvalidParameterError as error:
        if "levels" not in str(error):
            raise
        raise InvalidParameterError(
            f"{quantum.label}: a calexp has no positive sky level ({error}); sky frames are "
            "built from calexps that keep their sky, or whose subtracted background is in "
            "the repository (calexp_background)"
        ) from error
    written = [_write(repo, "sky_frame", quantum.id_dict(), result.exposure)]
    return written, result.metadata.to_dict()


def _focal_plane_origin(ref, calexp) -> tuple[float, float]:
    """Where the calexp's parent pixel (0, 0) sits on the focal plane (FPX0/FPY0 keywords)."""
    meta = calexp.metadata
    if "FPX0" not in meta or "FPY0" not in meta:
        raise InvalidExposureError(
            f"calexp {ref.path} has no FPX0/FPY0 header keywords (focal-plane pixel position "
            "of its parent pixel 0,0): sky correction fits the background across the focal "
            "plane and needs every detector's place on it"
        )
    return float(meta["FPX0"]), float(meta["FPY0"])


def run_sky_correction(repo, quantum: Quantum, config: PipelineConfig):
    refs = _inputs(quantum, "calexp")
    calexps = [repo.get(ref) for ref in refs]
    origins = {
        ref.data_id["detector"]: _focal_plane_origin(ref, calexp)
        for ref, calexp in zip(refs, calexps, strict=True)
    }
    frames = {ref.data_id["detector"]: repo.get(ref) for ref in _inputs(quantum, "sky_frame")}
    if frames and set(frames) != set(origins):
        raise NoWorkFound(
            f"{quantum.label}: sky frames for detectors {sorted(frames)} only, not for all of "
            f"{sorted(origins)}"
        )
    result = SkyCorrectionTask(config.sky_correction).run(
        calexps, origins, sky_frames=frames or None, backgrounds=_backgrounds(repo, quantum, refs)
    )
    written = [
        _write(
            repo,
            "sky_correction",
            {"visit": ref.data_id["visit"], "detector": ref.data_id["detector"]},
            correction,
        )
        for ref, correction in zip(refs, result.sky_corrections, strict=True)
    ]
    metadata = result.metadata.to_dict()
    metadata["values"]["sky_frame_scale"] = result.scale
    return written, metadata


def _sky_corrected(calexp, correction):
    """``calexp`` minus its sky correction (a copy), or ``calexp`` itself without one."""
    if correction is None:
        return calexp
    masked = calexp.masked_image.copy()
    masked.image -= correction.evaluate(calexp.bbox)
    return calexp.replace(masked_image=masked)


def run_warp(repo, quantum: Quantum, config: PipelineConfig):
    data_id = quantum.id_dict()
    tract = repo.skymap[data_id["tract"]]
    patch = tract.patch(data_id["patch"])
    refs = _inputs(quantum, "calexp")
    calexps = [repo.get(ref) for ref in refs]  # by ref: no registry query
    task_config, kwargs = config.make_warp, {}
    corrections = {r.data_id["detector"]: r for r in _inputs(quantum, "sky_correction")}
    if corrections:
        task_config = dataclasses.replace(task_config, apply_sky_corr=True)
        kwargs["sky_corrections"] = [
            repo.get(corrections[r.data_id["detector"]])
            if r.data_id["detector"] in corrections
            else None
            for r in refs
        ]
    result = MakeWarpTask(task_config).run_on_patch(calexps, tract, patch, **kwargs)
    if result.direct is None:
        raise NoWorkFound(f"no pixel of visit {data_id['visit']} falls on {quantum.label}")
    written = [_write(repo, "direct_warp", data_id, result.direct)]
    if result.psf_matched is not None:
        written.append(_write(repo, "psf_matched_warp", data_id, result.psf_matched))
    return written, result.metadata.to_dict()


def run_match_backgrounds(repo, quantum: Quantum, config: PipelineConfig):
    handles = [repo.handle(ref) for ref in quantum.inputs]
    result = MatchBackgroundsTask(config.match_backgrounds).run(handles, repo.skymap)
    written = []
    for ref, warp in zip(quantum.inputs, result.matched_warps, strict=True):
        written.append(_write(repo, "matched_warp", ref.data_id, warp))
    return written, result.metadata.to_dict()


def run_coadd(repo, quantum: Quantum, config: PipelineConfig):
    handles = [repo.handle(ref) for ref in quantum.inputs]
    result = AssembleCoaddTask(config.assemble_coadd).run(handles)
    return [_write(repo, "coadd", quantum.id_dict(), result.coadd)], result.metadata.to_dict()


def run_template(repo, quantum: Quantum, config: PipelineConfig):
    calexp = repo.handle(_inputs(quantum, "calexp")[0])
    coadds = {
        (ref.data_id["tract"], ref.data_id["patch"]): repo.handle(ref)
        for ref in _inputs(quantum, "coadd")
    }
    task = GetTemplateTask(config.get_template)
    found = task.get_exposures(coadds, calexp.bbox, repo.skymap, calexp.wcs)
    result = task.run(
        found.coadd_handles, calexp.bbox, calexp.wcs, found.data_ids, calexp.physical_filter
    )
    written = [_write(repo, "template", quantum.id_dict(), result.template)]
    return written, result.metadata.to_dict()


def run_subtract(repo, quantum: Quantum, config: PipelineConfig):
    data_id = quantum.id_dict()
    templates = _inputs(quantum, "template")
    if not templates:
        raise NoWorkFound(f"no template for {quantum.label}")
    corrections = _inputs(quantum, "sky_correction")
    science = _sky_corrected(
        repo.get(_inputs(quantum, "calexp")[0]), repo.get(corrections[0]) if corrections else None
    )
    template = repo.get(templates[0])
    if config.scale_template_variance:
        # two resamplings correlate the template noise: its variance plane no longer
        # describes the pixel scatter (LSST scales the variance before subtracting too)
        scaled = ScaleVarianceTask(config.scale_variance).run(template.masked_image)
        template = template.replace(masked_image=scaled.masked_image)
    result = AlardLuptonSubtractTask(config.subtract).run(template, science)
    difference = result.difference
    variance_factor = 1.0
    if config.scale_difference_variance:
        # the template's resampled noise is correlated: convolving it adds more noise
        # than its variance plane says, so the difference's plane is matched to its pixels
        scaled = ScaleVarianceTask(config.scale_variance).run(difference.masked_image)
        difference = difference.replace(masked_image=scaled.masked_image)
        variance_factor = scaled.factor
    if science.units != difference.units:
        science = science.calibrated()
    found = DetectAndMeasureTask(config.detect).run(
        difference, science=science, matched_template=result.matched_template
    )
    written = [
        _write(repo, "difference", data_id, difference),
        _write(repo, "matched_template", data_id, result.matched_template),
        _write(repo, "dia_sources", data_id, found.dia_sources),
    ]
    metadata = result.metadata.to_dict()
    metadata["values"]["difference_variance_factor"] = variance_factor
    metadata["children"]["detect"] = found.metadata.to_dict()
    return written, metadata


STEP_RUNNERS = {
    "sky_frame": run_sky_frame,
    "sky_correction": run_sky_correction,
    "warp": run_warp,
    "match_backgrounds": run_match_backgrounds,
    "coadd": run_coadd,
    "template": run_template,
    "subtract": run_subtract,
}
