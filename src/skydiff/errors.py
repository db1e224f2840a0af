"""Exception types of skydiff.

Every error a user can meet derives from :class:`SkydiffError`. Errors that
refine a built-in also subclass it (``InvalidParameterError`` is a
``ValueError``), so generic handlers keep working. A pipeline runner tells
"nothing to do" (:class:`NoWorkFound`) apart from algorithm failures
(:class:`AlgorithmError` and its children), which carry the metadata computed
before they failed.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlgorithmError",
    "BadSubtractionError",
    "FitsFormatError",
    "InsufficientSourcesError",
    "InvalidExposureError",
    "InvalidParameterError",
    "NoWorkFound",
    "SkydiffError",
    "UnknownMaskPlaneError",
]


class SkydiffError(Exception):
    """Base class of all skydiff errors."""


class InvalidParameterError(SkydiffError, ValueError):
    """A configuration field or function argument has an invalid value."""


class UnknownMaskPlaneError(SkydiffError, KeyError):
    """A mask plane name is not defined on the mask in question."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain message.
        return str(self.args[0]) if self.args else ""


class InvalidExposureError(SkydiffError, ValueError):
    """An exposure or image is unusable: wrong shape, missing WCS, bad pixels..."""


class FitsFormatError(InvalidExposureError):
    """A FITS file is missing, truncated, not FITS, or not in a layout skydiff reads."""

    def __init__(self, path: Any, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class NoWorkFound(SkydiffError):
    """There is nothing to do for these inputs (no overlap, too little coverage).

    Not a failure: a pipeline records the quantum as skipped.
    """


class AlgorithmError(SkydiffError, RuntimeError):
    """An algorithm ran but could not produce a trustworthy result.

    Parameters
    ----------
    message : str
        What went wrong.
    metadata : dict, optional
        Quality figures computed before the failure, for the caller's records.
    """

    def __init__(self, message: str, metadata: dict[str, Any] | None = None):
        super().__init__(message)
        self.metadata = dict(metadata or {})


class InsufficientSourcesError(AlgorithmError):
    """Too few usable sources (stars, kernel stamps) to fit a model."""


class BadSubtractionError(AlgorithmError):
    """A difference image fails its quality checks."""
