"""Diagnostics of MatchBackgroundsTask: matched differences, the table and the metadata."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from astropy.table import Table

from ..background import BackgroundModel
from ..image import Box
from ..task import TaskMetadata

#: Strips in which the diagnostic rows of a warp are sampled.
_DIAGNOSTIC_STRIPS = 8

#: Columns of the diagnostics table and their types.
_COLUMNS = {
    "visit": np.int64,
    "is_reference": bool,
    "n_warps": np.int64,
    "coverage": np.float64,
    "mean_variance": np.float64,
    "own_fit_rms": np.float64,
    "cost": np.float64,
    "n_bins": np.int64,
    "approx_order": np.int64,
    "fit_rms": np.float64,
    "matched_mse": np.float64,
    "diff_image_var": np.float64,
    "mean_difference": np.float64,
}


def _diagnose(
    warps: list,
    references: list,
    model: BackgroundModel,
    *,
    bad_mask_planes: tuple[str, ...],
    diagnostic_rows: int,
) -> dict:
    """Matched mean-square difference with the reference on sampled rows of each warp."""
    totals = np.zeros(4)
    for warp in warps:
        partners = [r for r in references if r.bbox == warp.bbox] or [
            r for r in references if r.bbox.overlaps(warp.bbox)
        ]
        for reference in partners:
            overlap = warp.bbox.intersection(reference.bbox)
            boxes = _sample_boxes(overlap, diagnostic_rows)
            rows = np.concatenate([np.arange(b.y0, b.y_end) for b in boxes])
            columns = np.arange(overlap.x0, overlap.x_end)
            background = model.evaluate_at(x=columns.astype(float), y=rows.astype(float))
            start = 0
            for box in boxes:
                block = background[start : start + box.height]
                totals += _compare(warp, reference, box, block, bad_mask_planes)
                start += box.height
    n = totals[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "mean_difference": totals[1] / n,
            "matched_mse": totals[2] / n,
            "diff_image_var": totals[3] / n,
        }


def _compare(warp: Any, reference: Any, box: Box, background: np.ndarray, planes) -> np.ndarray:
    """``[n, sum d, sum d^2, sum var]`` of ``d = reference - matched warp`` on ``box``."""
    science, ref = warp.get(box), reference.get(box)
    difference = ref.image - (science.image + background)
    variance = ref.variance.astype(np.float64) + science.variance
    good = (
        ~science.mask.get(planes, ignore_missing=True)
        & ~ref.mask.get(planes, ignore_missing=True)
        & np.isfinite(difference)
        & np.isfinite(variance)
    )
    d = difference[good].astype(np.float64)
    return np.array([d.size, d.sum(), np.dot(d, d), variance[good].sum()])


def _sample_boxes(region: Box, n_rows: int) -> list[Box]:
    """The region, or evenly spaced strips of ``n_rows`` rows in all."""
    if region.is_empty:
        return []
    if region.height <= n_rows:
        return [region]
    strips = min(_DIAGNOSTIC_STRIPS, n_rows)
    height = n_rows // strips
    step = (region.height - height) / (strips - 1) if strips > 1 else 0.0
    return [
        Box(region.x0, region.y0 + round(k * step), region.width, height) for k in range(strips)
    ]


def _diagnostics_table(rows: dict, reference: int, visits: dict) -> Table:
    """One row per visit, columns :data:`_COLUMNS` (NaN or -1 where not measured)."""
    defaults = {"approx_order": -1, "matched_mse": math.nan}
    defaults.update(diff_image_var=math.nan, mean_difference=math.nan)
    records = []
    for visit, row in rows.items():
        record = {**defaults, **row, "visit": visit, "is_reference": visit == reference}
        record["n_warps"] = len(visits[visit])
        records.append([record[name] for name in _COLUMNS])
    return Table(rows=records, names=list(_COLUMNS), dtype=list(_COLUMNS.values()))


def _add_metadata(metadata: TaskMetadata, table: Table, reference, tract_id, grid, n_warps):
    """The run's figures and, per visit, its cost and fit figures, into ``metadata``."""
    metadata.add("reference_visit", int(reference))
    metadata.add("tract", tract_id)
    metadata.add("n_visits", len(table))
    metadata.add("n_warps", n_warps)
    metadata.add("n_bins_y", grid.shape[0])
    metadata.add("n_bins_x", grid.shape[1])
    for row in table:
        visit = int(row["visit"])
        metadata.add(f"visit_{visit}_cost", float(row["cost"]))
        if row["is_reference"]:
            continue
        for key in ("fit_rms", "matched_mse", "diff_image_var", "n_bins"):
            metadata.add(f"visit_{visit}_{key}", row[key])
    metadata.add("diagnostics", json.dumps(_json_rows(table)))


def _json_rows(table: Table) -> list[dict]:
    """The diagnostics as JSON-ready dictionaries (NaN as null)."""
    rows = []
    for row in table:
        item = {}
        for name in table.colnames:
            value = row[name].item()
            item[name] = None if isinstance(value, float) and not math.isfinite(value) else value
        rows.append(item)
    return rows
