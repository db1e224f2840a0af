"""Integer pixel boxes."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidParameterError

__all__ = ["Box"]


@dataclass(frozen=True, slots=True)
class Box:
    """An integer box of pixels in a parent frame (a detector, a tract).

    Pixel centres sit at integer coordinates; the box holds the pixels
    ``x0 <= x < x0 + width`` and ``y0 <= y < y0 + height``. Arrays covering
    the box are indexed ``[y - y0, x - x0]``. A box of zero width or height is
    empty (the result of intersecting disjoint boxes).

    Parameters
    ----------
    x0, y0 : int
        Origin (lower-left pixel) in the parent frame.
    width, height : int
        Size in pixels, ``>= 0``.
    """

    x0: int
    y0: int
    width: int
    height: int

    def __post_init__(self) -> None:
        for name in ("x0", "y0", "width", "height"):
            value = getattr(self, name)
            if int(value) != value:
                raise InvalidParameterError(f"Box.{name} must be an integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.width < 0 or self.height < 0:
            raise InvalidParameterError(
                f"Box size must be >= 0, got width={self.width}, height={self.height}"
            )

    @classmethod
    def from_shape(cls, shape: tuple[int, int], *, x0: int = 0, y0: int = 0) -> Box:
        """Box of an array of ``shape == (height, width)`` placed at ``(x0, y0)``."""
        return cls(x0, y0, shape[1], shape[0])

    @classmethod
    def from_corners(cls, x_min: int, y_min: int, x_max: int, y_max: int) -> Box:
        """Box from inclusive corner pixels (the LSST ``Box2I(min, max)`` form)."""
        return cls(x_min, y_min, max(x_max - x_min + 1, 0), max(y_max - y_min + 1, 0))

    @property
    def x_end(self) -> int:
        """One past the last column."""
        return self.x0 + self.width

    @property
    def y_end(self) -> int:
        """One past the last row."""
        return self.y0 + self.height

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``, the shape of an array covering the box."""
        return (self.height, self.width)

    @property
    def area(self) -> int:
        """Number of pixels."""
        return self.width * self.height

    @property
    def is_empty(self) -> bool:
        """True when the box holds no pixel."""
        return self.width == 0 or self.height == 0

    @property
    def center(self) -> tuple[float, float]:
        """``(x, y)`` of the box centre in parent pixel coordinates."""
        return (self.x0 + (self.width - 1) / 2.0, self.y0 + (self.height - 1) / 2.0)

    def corners(self) -> tuple[tuple[float, float], ...]:
        """Outer corners ``(x, y)`` of the box (pixel edges, half a pixel out).

        Counter-clockwise from the lower left; used to project a box on the sky.
        """
        xa, ya, xb, yb = self.x0 - 0.5, self.y0 - 0.5, self.x_end - 0.5, self.y_end - 0.5
        return ((xa, ya), (xb, ya), (xb, yb), (xa, yb))

    def contains(self, other: Box | tuple[float, float]) -> bool:
        """Whether a box lies wholly inside this one, or a point ``(x, y)`` does.

        An empty box is contained in every box.
        """
        if isinstance(other, Box):
            if other.is_empty:
                return True
            return (
                other.x0 >= self.x0
                and other.y0 >= self.y0
                and other.x_end <= self.x_end
                and other.y_end <= self.y_end
            )
        x, y = other
        return self.x0 - 0.5 <= x < self.x_end - 0.5 and self.y0 - 0.5 <= y < self.y_end - 0.5

    def overlaps(self, other: Box) -> bool:
        """Whether the two boxes share at least one pixel."""
        return not self.intersection(other).is_empty

    def intersection(self, other: Box) -> Box:
        """The pixels in both boxes (possibly an empty box)."""
        x0, y0 = max(self.x0, other.x0), max(self.y0, other.y0)
        x1, y1 = min(self.x_end, other.x_end), min(self.y_end, other.y_end)
        return Box(x0, y0, max(x1 - x0, 0), max(y1 - y0, 0))

    def union(self, other: Box) -> Box:
        """The smallest box holding both boxes (empty boxes are ignored)."""
        if self.is_empty:
            return other
        if other.is_empty:
            return self
        x0, y0 = min(self.x0, other.x0), min(self.y0, other.y0)
        return Box(x0, y0, max(self.x_end, other.x_end) - x0, max(self.y_end, other.y_end) - y0)

    def grown(self, border: int | tuple[int, int]) -> Box:
        """Box grown by ``border`` pixels on every side (``(bx, by)`` per axis).

        A negative border shrinks the box, down to an empty box.
        """
        bx, by = (border, border) if isinstance(border, int) else border
        return Box(
            self.x0 - bx, self.y0 - by, max(self.width + 2 * bx, 0), max(self.height + 2 * by, 0)
        )

    def shifted(self, dx: int, dy: int) -> Box:
        """Box moved by ``(dx, dy)`` pixels."""
        return Box(self.x0 + dx, self.y0 + dy, self.width, self.height)

    def slices(self, parent: Box | None = None) -> tuple[slice, slice]:
        """``(slice_y, slice_x)`` selecting this box from an array covering ``parent``.

        Without ``parent`` the slices are in the parent frame itself
        (array origin at pixel ``(0, 0)``).

        Raises
        ------
        InvalidParameterError
            If this box is not contained in ``parent``.
        """
        px, py = (0, 0) if parent is None else (parent.x0, parent.y0)
        if parent is not None and not parent.contains(self):
            raise InvalidParameterError(f"{self} is not contained in {parent}")
        return (
            slice(self.y0 - py, self.y_end - py),
            slice(self.x0 - px, self.x_end - px),
        )

    def __str__(self) -> str:
        return f"Box(x0={self.x0}, y0={self.y0}, width={self.width}, height={self.height})"
