"""The stacking kernels of coadd assembly, as :class:`AssembleCoaddTask` imports them.

They are array functions and live in :mod:`skydiff.math` (``_stack.py``: the
statistics and their results; ``_stack_kernels.py``: the numba kernels;
``_stack_artifacts.py``: the transient-artifact rule); this module keeps
their ``skydiff.coadd`` names.
"""

from ..math import (
    STACK_STATISTICS,
    ArtifactRule,
    ReferenceStack,
    StackMaskBits,
    StackResult,
    clipped_mean,
    reference_stack,
    sorting_network,
    stack_planes,
    transient_mask,
)

__all__ = [
    "STACK_STATISTICS",
    "ArtifactRule",
    "ReferenceStack",
    "StackMaskBits",
    "StackResult",
    "clipped_mean",
    "reference_stack",
    "sorting_network",
    "stack_planes",
    "transient_mask",
]
