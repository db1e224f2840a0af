"""Bit masks with named planes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from ..errors import InvalidParameterError, UnknownMaskPlaneError
from ..math import bits_set
from ._box import Box

__all__ = ["MAX_MASK_PLANES", "STANDARD_MASK_PLANES", "Mask"]

#: Planes every new mask defines, in bit order (bit 0 first), as in LSST afw.
STANDARD_MASK_PLANES: tuple[str, ...] = (
    "BAD",
    "SAT",
    "INTRP",
    "CR",
    "EDGE",
    "DETECTED",
    "DETECTED_NEGATIVE",
    "SUSPECT",
    "NO_DATA",
    "CLIPPED",
    "REJECTED",
    "SENSOR_EDGE",
    "INEXACT_PSF",
    "HIGH_VARIANCE",
    "SAT_TEMPLATE",
    "STREAK",
)

#: Bits available in an int32 mask.
MAX_MASK_PLANES = 32


class Mask:
    """An int32 bit mask over a :class:`Box`, each bit a named plane.

    Plane names map to bit numbers per mask (not globally, unlike afw): masks
    read from different files may use different bits for the same name, and
    :meth:`merge` translates between them. A sub-mask view shares both the
    pixels and the plane dictionary with its parent, so a plane added through
    a view is known to the parent.

    Parameters
    ----------
    array : numpy.ndarray
        2-d integer array; converted to int32 (copied only if needed).
    bbox : Box, optional
        Placement in the parent frame; default origin ``(0, 0)``.
    planes : Mapping[str, int], optional
        Plane name -> bit number. Default: :data:`STANDARD_MASK_PLANES`.
    """

    __slots__ = ("_planes", "array", "bbox")

    def __init__(
        self,
        array: np.ndarray,
        *,
        bbox: Box | None = None,
        planes: Mapping[str, int] | None = None,
    ):
        array = np.asarray(array)
        if array.ndim != 2:
            raise InvalidParameterError(f"mask array must be 2-d, got shape {array.shape}")
        if array.dtype != np.int32:
            if not np.issubdtype(array.dtype, np.integer):
                raise InvalidParameterError(f"mask array must be integer, got {array.dtype}")
            array = array.astype(np.int32)
        self.array = array
        self.bbox = Box.from_shape(array.shape) if bbox is None else bbox
        if self.bbox.shape != array.shape:
            raise InvalidParameterError(
                f"mask array shape {array.shape} does not match {self.bbox} "
                f"(shape {self.bbox.shape})"
            )
        if planes is None:
            planes = {name: bit for bit, name in enumerate(STANDARD_MASK_PLANES)}
        self._planes = _validated_planes(planes)

    @classmethod
    def zeros(cls, bbox: Box, *, planes: Mapping[str, int] | None = None) -> Mask:
        """An all-clear mask over ``bbox``."""
        return cls(np.zeros(bbox.shape, dtype=np.int32), bbox=bbox, planes=planes)

    @property
    def planes(self) -> dict[str, int]:
        """A copy of the plane name -> bit number mapping."""
        return dict(self._planes)

    def add_plane(self, name: str) -> int:
        """Define plane ``name`` if it is new; return its bit number."""
        if name in self._planes:
            return self._planes[name]
        used = set(self._planes.values())
        free = [bit for bit in range(MAX_MASK_PLANES) if bit not in used]
        if not free:
            raise InvalidParameterError(
                f"cannot add mask plane {name!r}: all {MAX_MASK_PLANES} bits are in use"
            )
        self._planes[name] = free[0]
        return free[0]

    def bitmask(self, names: str | Iterable[str], *, ignore_missing: bool = False) -> int:
        """The OR of the bits of the named planes.

        Parameters
        ----------
        names : str or iterable of str
            One plane name or several.
        ignore_missing : bool
            Skip names this mask does not define instead of raising.

        Raises
        ------
        UnknownMaskPlaneError
            If a name is not a plane of this mask (and ``ignore_missing`` is False).
        """
        if isinstance(names, str):
            names = (names,)
        value = 0
        for name in names:
            bit = self._planes.get(name)
            if bit is None:
                if ignore_missing:
                    continue
                raise UnknownMaskPlaneError(
                    f"mask plane {name!r} is not defined; known planes: {sorted(self._planes)}"
                )
            value |= 1 << bit
        return _as_int32(value)

    def get(self, names: str | Iterable[str], *, ignore_missing: bool = False) -> np.ndarray:
        """Boolean array, True where any of the named planes is set."""
        return bits_set(self.array, self.bitmask(names, ignore_missing=ignore_missing))

    def set(self, names: str | Iterable[str], where: np.ndarray | None = None) -> None:
        """Set the named planes (added if new) where ``where`` is True (default: everywhere)."""
        if isinstance(names, str):
            names = (names,)
        for name in names:
            self.add_plane(name)
        bits = self.bitmask(names)
        if where is None:
            self.array |= bits
        else:
            np.bitwise_or(self.array, bits, out=self.array, where=np.asarray(where, dtype=bool))

    def clear(self, names: str | Iterable[str], where: np.ndarray | None = None) -> None:
        """Clear the named planes (where ``where`` is True, everywhere by default)."""
        bits = self.bitmask(names, ignore_missing=True)
        if where is None:
            self.array &= ~bits
        else:
            self.array[np.asarray(where, dtype=bool)] &= ~bits

    def plane_counts(self) -> dict[str, int]:
        """Number of pixels with each plane set."""
        return {
            name: int(np.count_nonzero(self.array & _as_int32(1 << bit)))
            for name, bit in self._planes.items()
        }

    def translated(self, planes: Mapping[str, int]) -> np.ndarray:
        """This mask's pixels re-expressed in another plane layout.

        Bits of planes missing from ``planes`` are dropped; use :meth:`merge`
        to keep them by adding planes. When the layouts agree (for every plane
        of this mask) the result is this mask's own array, not a copy: treat it
        as read-only.
        """
        if all(planes.get(name) == bit for name, bit in self._planes.items()):
            return self.array
        out = np.zeros_like(self.array)
        present = np.bitwise_or.reduce(self.array, axis=None) if self.array.size else 0
        for name, bit in self._planes.items():
            target = planes.get(name)
            if target is None or not present & _as_int32(1 << bit):
                continue
            out |= np.where(self.array & _as_int32(1 << bit), _as_int32(1 << target), 0).astype(
                np.int32
            )
        return out

    def merge(self, other: Mask) -> None:
        """OR ``other`` into this mask in place, matching planes by name.

        Planes of ``other`` unknown here are added first. Both masks must
        cover the same box.
        """
        if other.bbox != self.bbox:
            raise InvalidParameterError(f"cannot merge mask on {other.bbox} into {self.bbox}")
        for name in other._planes:
            self.add_plane(name)
        if other._planes == self._planes:
            self.array |= other.array
        else:
            self.array |= other.translated(self._planes)

    def merged(self, other: Mask) -> Mask:
        """A new mask: this one ORed with ``other`` (planes matched by name)."""
        if other.bbox != self.bbox:
            raise InvalidParameterError(f"cannot merge mask on {other.bbox} into {self.bbox}")
        if other._planes == self._planes:
            return Mask(self.array | other.array, bbox=self.bbox, planes=self.planes)
        result = self.copy()
        result.merge(other)
        return result

    def __getitem__(self, bbox: Box) -> Mask:
        """View of the pixels in ``bbox``, sharing pixels and planes."""
        view = Mask.__new__(Mask)
        view.array = self.array[bbox.slices(self.bbox)]
        view.bbox = bbox
        view._planes = self._planes
        return view

    def copy(self) -> Mask:
        """Deep copy (pixels and planes)."""
        return Mask(self.array.copy(), bbox=self.bbox, planes=self.planes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mask):
            return NotImplemented
        return (
            self.bbox == other.bbox
            and self._planes == other._planes
            and np.array_equal(self.array, other.array)
        )

    __hash__ = None  # type: ignore[assignment]

    def __getstate__(self) -> tuple:
        return (self.array, self.bbox, self._planes)

    def __setstate__(self, state: tuple) -> None:
        self.array, self.bbox, self._planes = state

    def __repr__(self) -> str:
        return f"Mask({self.bbox}, planes={sorted(self._planes, key=self._planes.get)})"


def _as_int32(value: int) -> np.int32:
    """A bit pattern as int32 (bit 31 becomes the sign bit)."""
    return np.array(value & 0xFFFFFFFF, dtype=np.uint32).view(np.int32)[()]


def _validated_planes(planes: Mapping[str, int]) -> dict[str, int]:
    result: dict[str, int] = {}
    for name, bit in planes.items():
        if not isinstance(name, str) or not name:
            raise InvalidParameterError(f"mask plane names must be non-empty strings, got {name!r}")
        if int(bit) != bit or not 0 <= bit < MAX_MASK_PLANES:
            raise InvalidParameterError(
                f"mask plane {name!r} has bit {bit!r}, outside 0..{MAX_MASK_PLANES - 1}"
            )
        result[name] = int(bit)
    if len(set(result.values())) != len(result):
        raise InvalidParameterError(f"two mask planes share one bit: {result}")
    return result
