"""A binned background model as an Exposure, the form in which sky frames are stored.

The exposure's pixels are the bins (image: values, variance: their
variances, ``NO_DATA``: empty bins); its metadata holds the geometry needed
to turn them back into a model: the measured box (LSST's ``BOX.MINX`` ...
cards, inclusive maxima), the bin size, the interpolation (LSST's
``ALGORITHM`` names) and the bin centres. Writing the exposure with
:func:`skydiff.io.write_exposure` and reading it back is exact.
"""

from __future__ import annotations

import json

import numpy as np

from ..background import BackgroundModel
from ..errors import InvalidExposureError
from ..image import Box, Exposure, Mask, MaskedImage, VisitInfo

__all__ = ["background_to_exposure", "exposure_to_background"]

#: skydiff interpolation name -> LSST ``afw::math::Interpolate`` style name.
_LSST_INTERPOLATION = {
    "akima": "AKIMA_SPLINE",
    "natural": "NATURAL_SPLINE",
    "linear": "LINEAR",
    "constant": "CONSTANT",
}
_FROM_LSST = {lsst: ours for ours, lsst in _LSST_INTERPOLATION.items()}
_REQUIRED = ("BOX.MINX", "BOX.MINY", "BOX.MAXX", "BOX.MAXY", "ALGORITHM", "BIN.X", "BIN.Y")


def _geometry_metadata(model: BackgroundModel) -> dict:
    box = model.bbox
    metadata = {
        "BOX.MINX": box.x0,
        "BOX.MINY": box.y0,
        "BOX.MAXX": box.x_end - 1,
        "BOX.MAXY": box.y_end - 1,
        "ALGORITHM": _LSST_INTERPOLATION[model.interpolation],
        "BIN.X": int(model.bin_size[0]),
        "BIN.Y": int(model.bin_size[1]),
        "BIN.XCENTERS": json.dumps([float(x) for x in model.x_centers]),
        "BIN.YCENTERS": json.dumps([float(y) for y in model.y_centers]),
    }
    if model.approximation_order is not None:
        metadata["APPROX.ORDER"] = int(model.approximation_order)
    return metadata


def background_to_exposure(
    model: BackgroundModel,
    *,
    visit_info: VisitInfo | None = None,
    band: str = "",
    physical_filter: str = "",
) -> Exposure:
    """The bins of ``model`` as an Exposure (LSST ``backgroundToExposure``).

    Bin values and variances are stored as float32 (exact for the sky
    frames of :meth:`SkyMeasurementTask.average_backgrounds`, which are
    rounded to float32). Empty bins become ``NO_DATA`` pixels; a finite bin
    without a variance is written with variance +inf. Bin counts are not
    stored (nor are they by LSST): :func:`exposure_to_background` reports 1
    for every measured bin and 0 for every empty one.

    Parameters
    ----------
    model : BackgroundModel
        The binned model.
    visit_info : VisitInfo, optional
        Identity to record, typically just the detector.
    band, physical_filter : str
        Filter the sky frame belongs to.
    """
    values = np.asarray(model.values, np.float32)
    variances = np.asarray(model.variances, np.float32)
    finite = np.isfinite(values)
    variances = np.where(finite & ~(variances >= 0), np.float32(np.inf), variances)
    box = Box.from_shape(values.shape)
    pixels = MaskedImage(values, Mask.zeros(box), variances, bbox=box)
    pixels.set_no_data(~finite)
    return Exposure(
        pixels,
        visit_info=visit_info,
        band=band,
        physical_filter=physical_filter,
        metadata=_geometry_metadata(model),
    )


def _require_metadata(exposure: Exposure) -> dict:
    metadata = exposure.metadata
    missing = [key for key in _REQUIRED if key not in metadata]
    if missing:
        raise InvalidExposureError(
            f"exposure {exposure.describe()} is not a binned background (sky frame): "
            f"its metadata lacks {missing}"
        )
    if metadata["ALGORITHM"] not in _FROM_LSST:
        raise InvalidExposureError(
            f"exposure {exposure.describe()} has unknown ALGORITHM {metadata['ALGORITHM']!r}; "
            f"expected one of {sorted(_FROM_LSST)}"
        )
    return metadata


def _centers(metadata: dict, key: str, box_start: int, bin_size: int, n: int) -> np.ndarray:
    """Stored bin centres, or the geometric centres of bins laid from the box origin."""
    if key in metadata:
        return np.asarray(json.loads(metadata[key]), np.float64)
    return box_start + np.arange(n) * bin_size + 0.5 * (bin_size - 1)


def exposure_to_background(exposure: Exposure) -> BackgroundModel:
    """The background model stored in ``exposure`` (LSST ``exposureToBackground``).

    Raises
    ------
    InvalidExposureError
        If the metadata lacks the geometry cards or disagrees with the pixels.
    """
    metadata = _require_metadata(exposure)
    box = Box.from_corners(
        metadata["BOX.MINX"], metadata["BOX.MINY"], metadata["BOX.MAXX"], metadata["BOX.MAXY"]
    )
    bin_size = (int(metadata["BIN.X"]), int(metadata["BIN.Y"]))
    ny, nx = exposure.image.shape
    x_centers = _centers(metadata, "BIN.XCENTERS", box.x0, bin_size[0], nx)
    y_centers = _centers(metadata, "BIN.YCENTERS", box.y0, bin_size[1], ny)
    if (x_centers.size, y_centers.size) != (nx, ny):
        raise InvalidExposureError(
            f"exposure {exposure.describe()} has {nx} x {ny} bins but "
            f"{x_centers.size} x {y_centers.size} bin centres in its metadata"
        )
    empty = exposure.mask.get("NO_DATA", ignore_missing=True) | ~np.isfinite(exposure.image)
    values = np.where(empty, np.nan, exposure.image.astype(np.float64))
    variances = np.where(empty, np.nan, exposure.variance.astype(np.float64))
    return BackgroundModel(
        bbox=box,
        bin_size=bin_size,
        values=values,
        variances=variances,
        counts=(~empty).astype(np.int64),
        x_centers=x_centers,
        y_centers=y_centers,
        interpolation=_FROM_LSST[metadata["ALGORITHM"]],
        approximation_order=metadata.get("APPROX.ORDER"),
    )
