"""Configuration of a pipeline run: which visits play which role, and every task's config."""

from __future__ import annotations

from dataclasses import dataclass

from ..characterize import ScaleVarianceConfig
from ..coadd import (
    AssembleCoaddConfig,
    GetTemplateConfig,
    MakeWarpConfig,
    MatchBackgroundsConfig,
)
from ..diffim import AlardLuptonSubtractConfig, DetectAndMeasureConfig
from ..task import Config, config_field

__all__ = ["STEPS", "PipelineConfig"]

#: Pipeline steps in execution order.
STEPS = ("warp", "match_backgrounds", "coadd", "template", "subtract")


@dataclass(frozen=True)
class PipelineConfig(Config):
    """What ``skydiff run`` does.

    Template visits make the warps and coadds; science visits are differenced
    against templates cut from those coadds. With neither list given, visits
    are ordered by time and the earlier half (at least one) are templates.
    """

    steps: tuple[str, ...] = config_field(
        ("warp", "coadd", "template", "subtract"),
        doc=f"Steps to run, from {', '.join(STEPS)}.",
    )
    template_visits: tuple[int, ...] = config_field((), doc="Visits that build the coadds.")
    science_visits: tuple[int, ...] = config_field((), doc="Visits to difference.")
    make_warp: MakeWarpConfig = config_field(doc="MakeWarpTask.", factory=MakeWarpConfig)
    match_backgrounds: MatchBackgroundsConfig = config_field(
        doc="MatchBackgroundsTask.", factory=MatchBackgroundsConfig
    )
    assemble_coadd: AssembleCoaddConfig = config_field(
        doc="AssembleCoaddTask.", factory=AssembleCoaddConfig
    )
    get_template: GetTemplateConfig = config_field(
        doc="GetTemplateTask.", factory=GetTemplateConfig
    )
    scale_template_variance: bool = config_field(
        True,
        doc="Rescale the template's variance plane to its pixel noise before subtracting "
        "[doScaleVariance].",
    )
    scale_difference_variance: bool = config_field(
        True,
        doc="Rescale the difference's variance plane to its pixel noise before detection "
        "(the factor is in the metadata as difference_variance_factor).",
    )
    scale_variance: ScaleVarianceConfig = config_field(
        doc="ScaleVarianceTask on the template and the difference.", factory=ScaleVarianceConfig
    )
    subtract: AlardLuptonSubtractConfig = config_field(
        doc="AlardLuptonSubtractTask.", factory=AlardLuptonSubtractConfig
    )
    detect: DetectAndMeasureConfig = config_field(
        doc="DetectAndMeasureTask on the differences.", factory=DetectAndMeasureConfig
    )

    def validate(self) -> None:
        unknown = sorted(set(self.steps) - set(STEPS))
        self.check(not unknown, "steps", f"has unknown steps {unknown}; known: {list(STEPS)}")
        both = sorted(set(self.template_visits) & set(self.science_visits))
        self.check(not both, "science_visits", f"share visits {both} with template_visits")
