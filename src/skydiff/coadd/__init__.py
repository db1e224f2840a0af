"""Warps, coadds and templates: the images on sky-map patches."""

from ..io import InMemoryHandle
from ._assemble import AssembleCoaddConfig, AssembleCoaddResult, AssembleCoaddTask
from ._get_template import (
    CoaddHandle,
    GetTemplateConfig,
    GetTemplateResult,
    GetTemplateTask,
    OverlappingCoadds,
)
from ._make_warp import MakeWarpConfig, MakeWarpResult, MakeWarpTask, WarperConfig
from ._match_backgrounds import (
    MatchBackgroundsConfig,
    MatchBackgroundsResult,
    MatchBackgroundsTask,
    MatchedWarpHandle,
)
from ._stack import (
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
    "AssembleCoaddConfig",
    "AssembleCoaddResult",
    "AssembleCoaddTask",
    "CoaddHandle",
    "GetTemplateConfig",
    "GetTemplateResult",
    "GetTemplateTask",
    "InMemoryHandle",
    "MakeWarpConfig",
    "MakeWarpResult",
    "MakeWarpTask",
    "MatchBackgroundsConfig",
    "MatchBackgroundsResult",
    "MatchBackgroundsTask",
    "MatchedWarpHandle",
    "OverlappingCoadds",
    "ReferenceStack",
    "StackMaskBits",
    "StackResult",
    "WarperConfig",
    "clipped_mean",
    "reference_stack",
    "sorting_network",
    "stack_planes",
    "transient_mask",
]
