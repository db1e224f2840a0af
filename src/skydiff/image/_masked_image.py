"""Image, mask and variance on one box."""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Real

import numpy as np

from ..errors import InvalidParameterError
from ._box import Box
from ._mask import Mask

__all__ = ["MaskedImage"]


def _as_float32(array: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2:
        raise InvalidParameterError(f"{what} must be 2-d, got shape {array.shape}")
    if array.dtype != np.float32:
        array = array.astype(np.float32)
    return array


class MaskedImage:
    """A float32 image, its int32 :class:`Mask` and float32 variance on one :class:`Box`.

    The variance is in image units squared. Pixels with no data follow the
    DESIGN policy: image NaN, variance +inf and the ``NO_DATA`` bit
    (:meth:`set_no_data`).

    Indexing with a :class:`Box` gives a view that shares memory with this
    image. Arithmetic with scalars or with masked images on the same box
    propagates the variance (uncorrelated pixels) and ORs the masks.

    Parameters
    ----------
    image : numpy.ndarray
        2-d image, converted to float32 (copied only if needed).
    mask : Mask or numpy.ndarray, optional
        Mask, or a raw integer array with the standard planes. Default: clear.
    variance : numpy.ndarray, optional
        Variance, converted to float32. Default: zeros.
    bbox : Box, optional
        Placement in the parent frame; default origin ``(0, 0)``, or the
        mask's box when a :class:`Mask` is given.
    """

    __slots__ = ("bbox", "image", "mask", "variance")

    def __init__(
        self,
        image: np.ndarray,
        mask: Mask | np.ndarray | None = None,
        variance: np.ndarray | None = None,
        *,
        bbox: Box | None = None,
    ):
        image = _as_float32(image, "image")
        if bbox is None:
            bbox = mask.bbox if isinstance(mask, Mask) else Box.from_shape(image.shape)
        if bbox.shape != image.shape:
            raise InvalidParameterError(f"image shape {image.shape} does not match {bbox}")
        if mask is None:
            mask = Mask.zeros(bbox)
        elif not isinstance(mask, Mask):
            mask = Mask(mask, bbox=bbox)
        if mask.bbox != bbox:
            raise InvalidParameterError(f"mask box {mask.bbox} does not match image box {bbox}")
        variance = (
            np.zeros(image.shape, np.float32)
            if variance is None
            else _as_float32(variance, "variance")
        )
        if variance.shape != image.shape:
            raise InvalidParameterError(
                f"variance shape {variance.shape} does not match image shape {image.shape}"
            )
        self.image, self.mask, self.variance, self.bbox = image, mask, variance, bbox

    @classmethod
    def zeros(cls, bbox: Box, *, planes: Mapping[str, int] | None = None) -> MaskedImage:
        """An all-zero masked image over ``bbox``."""
        return cls(
            np.zeros(bbox.shape, np.float32),
            Mask.zeros(bbox, planes=planes),
            np.zeros(bbox.shape, np.float32),
            bbox=bbox,
        )

    @classmethod
    def no_data(cls, bbox: Box, *, planes: Mapping[str, int] | None = None) -> MaskedImage:
        """A masked image over ``bbox`` with every pixel NO_DATA."""
        result = cls.zeros(bbox, planes=planes)
        result.set_no_data()
        return result

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return self.bbox.shape

    def set_no_data(self, where: np.ndarray | None = None) -> None:
        """Mark pixels as having no data (NaN image, infinite variance, NO_DATA bit)."""
        where = np.ones(self.shape, bool) if where is None else np.asarray(where, bool)
        self.mask.add_plane("NO_DATA")
        if not where.any():
            return
        np.copyto(self.image, np.float32(np.nan), where=where)
        np.copyto(self.variance, np.float32(np.inf), where=where)
        self.mask.set("NO_DATA", where)

    def __getitem__(self, bbox: Box) -> MaskedImage:
        """View of the pixels in ``bbox``; writes go to this image."""
        if not isinstance(bbox, Box):
            raise TypeError(f"MaskedImage is indexed by Box, got {type(bbox).__name__}")
        slices = bbox.slices(self.bbox)
        view = MaskedImage.__new__(MaskedImage)
        view.image = self.image[slices]
        view.variance = self.variance[slices]
        view.mask = self.mask[bbox]
        view.bbox = bbox
        return view

    def subimage(self, bbox: Box) -> MaskedImage:
        """Same as ``self[bbox]``: a view sharing memory."""
        return self[bbox]

    def copy(self) -> MaskedImage:
        """Deep copy."""
        return MaskedImage(
            self.image.copy(), self.mask.copy(), self.variance.copy(), bbox=self.bbox
        )

    def fill_no_data(self, other: MaskedImage) -> int:
        """Copy ``other``'s good pixels where this image is still NO_DATA (in place).

        Used to merge overlapping pieces (detectors of a warp, patches of a
        tract): earlier data wins. Returns how many pixels were filled.
        """
        region = self[other.bbox]
        for name in other.mask.planes:
            region.mask.add_plane(name)
        fill = region.mask.get("NO_DATA") & ~other.mask.get("NO_DATA", ignore_missing=True)
        fill &= np.isfinite(other.image)
        region.image[fill] = other.image[fill]
        region.variance[fill] = other.variance[fill]
        region.mask.array[fill] = other.mask.translated(region.mask.planes)[fill]
        return int(np.count_nonzero(fill))

    def assign(self, other: MaskedImage) -> None:
        """Copy ``other``'s pixels into the overlapping part of this image."""
        overlap = self.bbox.intersection(other.bbox)
        if overlap.is_empty:
            return
        target, source = self[overlap], other[overlap]
        target.image[...] = source.image
        target.variance[...] = source.variance
        for name in source.mask.planes:
            target.mask.add_plane(name)
        target.mask.array[...] = source.mask.translated(target.mask.planes)

    # -- arithmetic -----------------------------------------------------------------------

    def _check_operand(self, other: MaskedImage) -> None:
        if other.bbox != self.bbox:
            raise InvalidParameterError(
                f"masked images must share a box for arithmetic: {self.bbox} vs {other.bbox}"
            )

    def __iadd__(self, other: MaskedImage | Real) -> MaskedImage:
        if isinstance(other, MaskedImage):
            self._check_operand(other)
            self.image += other.image
            self.variance += other.variance
            self.mask.merge(other.mask)
        else:
            self.image += np.float32(other)
        return self

    def __isub__(self, other: MaskedImage | Real) -> MaskedImage:
        if isinstance(other, MaskedImage):
            self._check_operand(other)
            self.image -= other.image
            self.variance += other.variance
            self.mask.merge(other.mask)
        else:
            self.image -= np.float32(other)
        return self

    def __imul__(self, other: MaskedImage | Real) -> MaskedImage:
        if isinstance(other, MaskedImage):
            self._check_operand(other)
            # var(ab) = b^2 var(a) + a^2 var(b), first order, uncorrelated.
            self.variance[...] = other.image**2 * self.variance + self.image**2 * other.variance
            self.image *= other.image
            self.mask.merge(other.mask)
        else:
            scale = np.float32(other)
            self.image *= scale
            self.variance *= scale * scale
        return self

    def __itruediv__(self, other: Real) -> MaskedImage:
        if isinstance(other, MaskedImage):
            return NotImplemented
        return self.__imul__(1.0 / float(other))

    def _combined(self, other: MaskedImage, image_op) -> MaskedImage:
        """``image_op`` of the images, summed variances, merged masks: one pass each."""
        self._check_operand(other)
        return MaskedImage(
            image_op(self.image, other.image),
            self.mask.merged(other.mask),
            np.add(self.variance, other.variance),
            bbox=self.bbox,
        )

    def __add__(self, other: MaskedImage | Real) -> MaskedImage:
        if isinstance(other, MaskedImage):
            return self._combined(other, np.add)
        result = self.copy()
        result += other
        return result

    __radd__ = __add__

    def __sub__(self, other: MaskedImage | Real) -> MaskedImage:
        if isinstance(other, MaskedImage):
            return self._combined(other, np.subtract)
        result = self.copy()
        result -= other
        return result

    def __rsub__(self, other: Real) -> MaskedImage:
        result = self * -1.0
        result += other
        return result

    def __mul__(self, other: MaskedImage | Real) -> MaskedImage:
        result = self.copy()
        result *= other
        return result

    __rmul__ = __mul__

    def __truediv__(self, other: Real) -> MaskedImage:
        result = self.copy()
        result /= other
        return result

    def __neg__(self) -> MaskedImage:
        return self * -1.0

    def __eq__(self, other: object) -> bool:
        """Exact equality of box, pixels (NaN equal to NaN), variance and mask."""
        if not isinstance(other, MaskedImage):
            return NotImplemented
        return (
            self.bbox == other.bbox
            and np.array_equal(self.image, other.image, equal_nan=True)
            and np.array_equal(self.variance, other.variance, equal_nan=True)
            and self.mask == other.mask
        )

    __hash__ = None  # type: ignore[assignment]

    def __getstate__(self) -> tuple:
        return (self.image, self.mask, self.variance, self.bbox)

    def __setstate__(self, state: tuple) -> None:
        self.image, self.mask, self.variance, self.bbox = state

    def __repr__(self) -> str:
        return f"MaskedImage({self.bbox})"
