"""Warps, coadds and templates: the images on sky-map patches."""

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

__all__ = [
    "AssembleCoaddConfig",
    "AssembleCoaddResult",
    "AssembleCoaddTask",
    "CoaddHandle",
    "GetTemplateConfig",
    "GetTemplateResult",
    "GetTemplateTask",
    "MakeWarpConfig",
    "MakeWarpResult",
    "MakeWarpTask",
    "MatchBackgroundsConfig",
    "MatchBackgroundsResult",
    "MatchBackgroundsTask",
    "MatchedWarpHandle",
    "OverlappingCoadds",
    "WarperConfig",
]
