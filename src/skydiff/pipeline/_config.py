"""Configuration of a pipeline run: which visits play which role, and every task's config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..characterize import ScaleVarianceConfig
from ..coadd import (
    AssembleCoaddConfig,
    GetTemplateConfig,
    MakeWarpConfig,
    MatchBackgroundsConfig,
)
from ..diffim import AlardLuptonSubtractConfig, DetectAndMeasureConfig
from ..skyframe import SkyCorrectionConfig, SkyFrameBuilderConfig
from ..task import Config, config_field

__all__ = ["STEPS", "PipelineConfig"]

#: Pipeline steps in execution order.
STEPS = (
    "sky_frame",
    "sky_correction",
    "warp",
    "match_backgrounds",
    "coadd",
    "template",
    "subtract",
)


@dataclass(frozen=True)
class PipelineConfig(Config):
    """What ``skydiff run`` does.

    Template visits make the warps and coadds; science visits are differenced
    against templates cut from those coadds. With neither list given,
    ``template_selection`` decides: ``best_seeing`` (default; LSST's
    ``BestSeeingQuantileSelectVisitsTask``) takes the ``template_fraction``
    of visits with the narrowest PSFs, so that the template is sharper than
    the science and convolving it matches them; ``earliest`` takes the
    earliest visits instead. Either way at least one visit is a template
    and, with two or more visits, at least one is differenced.
    """

    steps: tuple[str, ...] = config_field(
        ("warp", "coadd", "template", "subtract"),
        doc=f"Steps to run, from {', '.join(STEPS)}.",
    )
    template_visits: tuple[int, ...] = config_field((), doc="Visits that build the coadds.")
    science_visits: tuple[int, ...] = config_field((), doc="Visits to difference.")
    template_selection: Literal["best_seeing", "earliest"] = config_field(
        "best_seeing",
        doc="How template visits are chosen when neither list is given: narrowest PSF "
        "(median FWHM in arcsec over the visit's detectors) or earliest MJD.",
    )
    template_fraction: float = config_field(
        0.5,
        doc="Fraction of the visits chosen as templates (rounded down, at least one) when "
        "neither list is given.",
    )
    sky_frame: SkyFrameBuilderConfig = config_field(
        doc="SkyFrameBuilderTask (sky_frame step: one frame per detector from every visit).",
        factory=lambda: SkyFrameBuilderConfig(min_inputs=3),
    )
    sky_correction: SkyCorrectionConfig = config_field(
        doc="SkyCorrectionTask (sky_correction step: per visit; its corrections are applied "
        "to the calexps before warping and before subtraction).",
        factory=SkyCorrectionConfig,
    )
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
        self.check(
            self.template_selection in ("best_seeing", "earliest"),
            "template_selection",
            "must be best_seeing or earliest",
        )
        self.check(0 < self.template_fraction < 1, "template_fraction", "must be in (0, 1)")
        both = sorted(set(self.template_visits) & set(self.science_visits))
        self.check(not both, "science_visits", f"share visits {both} with template_visits")
