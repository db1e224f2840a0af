"""The PSF of a warp or coadd: a weighted average of its inputs' PSFs, warped."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from ..errors import InvalidParameterError
from ..image import Box, pixel_to_sky, sky_to_pixel
from ._base import PSF_REGISTRY, Psf, check_kernel_size
from ._transform import transform_kernel

__all__ = ["CoaddPsf", "CoaddPsfInput", "local_jacobian"]


def local_jacobian(
    from_wcs: WCS, to_wcs: WCS, x: float, y: float
) -> tuple[np.ndarray, float, float]:
    """``d(to pixel) / d(from pixel)`` at ``(x, y)`` of ``from_wcs``, and the mapped position.

    Central differences of one pixel: exact for the affine part of the
    transform and accurate to ~1e-6 for any realistic distortion.
    """
    xs = x + np.array([0.0, -1.0, 1.0, 0.0, 0.0])
    ys = y + np.array([0.0, 0.0, 0.0, -1.0, 1.0])
    tx, ty = sky_to_pixel(to_wcs, *pixel_to_sky(from_wcs, xs, ys))
    jacobian = np.array([[tx[2] - tx[1], tx[4] - tx[3]], [ty[2] - ty[1], ty[4] - ty[3]]]) / 2.0
    return jacobian, float(tx[0]), float(ty[0])


@dataclass(frozen=True)
class CoaddPsfInput:
    """One input of a :class:`CoaddPsf`: an exposure's PSF, WCS, valid box and weight."""

    psf: Psf
    wcs: WCS
    bbox: Box
    weight: float = 1.0
    visit: int = -1
    detector: int = -1

    def __post_init__(self) -> None:
        if not (np.isfinite(self.weight) and self.weight > 0):
            raise InvalidParameterError(f"CoaddPsfInput.weight must be > 0, got {self.weight}")


class CoaddPsf(Psf):
    """PSF of an image resampled and stacked from inputs (LSST ``CoaddPsf``).

    At a point, each input whose box contains the point contributes its own
    PSF evaluated there, carried to this image's grid through the local
    Jacobian of the pixel transform (:func:`transform_kernel`); the kernel
    is the weight-normalised average of those. Where no input has data the
    nearest input stands in, so the PSF is defined everywhere.

    Parameters
    ----------
    inputs : sequence of CoaddPsfInput
        The inputs; at least one.
    wcs : astropy.wcs.WCS
        This image's parent pixel -> sky transform.
    size : int, optional
        Kernel side (odd); default the largest input kernel carried over.
    """

    psf_type = "coadd"

    def __init__(self, inputs, wcs: WCS, *, size: int | None = None):
        self.inputs = tuple(inputs)
        if not self.inputs:
            raise InvalidParameterError("CoaddPsf needs at least one input")
        self.wcs = wcs
        self._size = check_kernel_size(size, "CoaddPsf.size") if size else self._default_size()

    def _default_size(self) -> int:
        first = self.inputs[0]
        x, y = first.bbox.center
        jacobian, _, _ = local_jacobian(self.wcs, first.wcs, *self._position_of(first, x, y))
        stretch = float(np.linalg.norm(np.linalg.inv(jacobian), 2))
        half = max(i.psf.kernel_size for i in self.inputs) // 2
        return 2 * int(np.ceil(half * stretch)) + 1

    def _position_of(self, item: CoaddPsfInput, x: float, y: float) -> tuple[float, float]:
        """This image's pixel position of input pixel ``(x, y)``."""
        px, py = sky_to_pixel(self.wcs, *pixel_to_sky(item.wcs, np.array([x]), np.array([y])))
        return float(px[0]), float(py[0])

    @property
    def kernel_size(self) -> int:
        return self._size

    def contributions(self, x: float, y: float) -> list[tuple[CoaddPsfInput, float, float]]:
        """Inputs with data at ``(x, y)`` and the input pixel position there."""
        found, distances = [], []
        for item in self.inputs:
            ix, iy = sky_to_pixel(item.wcs, *pixel_to_sky(self.wcs, np.array([x]), np.array([y])))
            ix, iy = float(ix[0]), float(iy[0])
            if item.bbox.contains((ix, iy)):
                found.append((item, ix, iy))
            cx, cy = (
                np.clip(ix, item.bbox.x0, item.bbox.x_end - 1),
                np.clip(iy, item.bbox.y0, item.bbox.y_end - 1),
            )
            distances.append((float(np.hypot(ix - cx, iy - cy)), item, float(cx), float(cy)))
        if not found:
            _, item, cx, cy = min(distances, key=lambda d: d[0])
            found.append((item, cx, cy))
        return found

    def kernel_image(self, x: float, y: float) -> np.ndarray:
        total, weight = np.zeros((self._size, self._size)), 0.0
        for item, ix, iy in self.contributions(x, y):
            jacobian, _, _ = local_jacobian(self.wcs, item.wcs, x, y)
            total += item.weight * transform_kernel(
                item.psf.kernel_image(ix, iy), jacobian, size=self._size
            )
            weight += item.weight
        return total / weight

    def image_at(self, x: float, y: float, *, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
        from ._stamps import shift_stamps

        kernel = self.kernel_image(x, y)
        if dx == 0 and dy == 0:
            return kernel
        shifted = shift_stamps(kernel[None], np.array([dx]), np.array([dy]))[0]
        return shifted / shifted.sum()

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        params: dict[str, Any] = {"size": self._size, "wcs": _wcs_text(self.wcs), "inputs": []}
        arrays: dict[str, np.ndarray] = {}
        for n, item in enumerate(self.inputs):
            p, a = item.psf.to_state()
            b = item.bbox
            params["inputs"].append(
                {
                    "psf_type": item.psf.psf_type,
                    "psf": p,
                    "arrays": sorted(a),
                    "wcs": _wcs_text(item.wcs),
                    "bbox": [b.x0, b.y0, b.width, b.height],
                    "weight": item.weight,
                    "visit": item.visit,
                    "detector": item.detector,
                }
            )
            arrays.update({f"I{n}_{key}": value for key, value in a.items()})
        return params, arrays

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> CoaddPsf:
        inputs = []
        for n, item in enumerate(params["inputs"]):
            psf_cls = PSF_REGISTRY[item["psf_type"]]
            psf = psf_cls.from_state(item["psf"], {k: arrays[f"I{n}_{k}"] for k in item["arrays"]})
            inputs.append(
                CoaddPsfInput(
                    psf,
                    _wcs_from_text(item["wcs"]),
                    Box(*item["bbox"]),
                    item["weight"],
                    item["visit"],
                    item["detector"],
                )
            )
        return cls(inputs, _wcs_from_text(params["wcs"]), size=params["size"])

    def __repr__(self) -> str:
        return f"CoaddPsf({len(self.inputs)} inputs, size={self._size})"


def _wcs_text(wcs: WCS) -> dict[str, Any]:
    """The WCS as plain header keywords and values (no comments: safe in a FITS card)."""
    return dict(wcs.to_header(relax=True).items())


def _wcs_from_text(cards: dict[str, Any]) -> WCS:
    return WCS(fits.Header(cards), relax=True)
