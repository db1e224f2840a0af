"""Survey simulator: realistic calexps with a truth catalogue, deterministic by seed.

A :class:`Camera` of several detectors observes a sky (:class:`SkyModel`:
stars with a power-law luminosity function, Sersic galaxies, transients and
variables) in the visits of a :class:`SurveyConfig` (pointing offsets and
rotations, seeing, sky level and gradient, zero points). Each exposure is a
calexp in counts with a TAN-SIP WCS, its true spatially varying Moffat PSF,
a :class:`~skydiff.image.PhotoCalib`, a :class:`~skydiff.image.VisitInfo`,
Poisson and read noise, saturated stars with bleed trails (``SAT``) and bad
columns (``BAD``), and comes with a table of the true position and flux of
every source on it.

Examples
--------
>>> from skydiff.sim import Camera, SurveyConfig, simulate_survey
>>> survey = simulate_survey(SurveyConfig(n_visits=2, seed=1), Camera.small())
>>> sim = survey[1, 0]                      # visit 1, detector 0
>>> sim.exposure.image.shape, len(sim.truth) > 0
((256, 256), True)
"""

from ._camera import Camera
from ._catalog import SurveyTruth, magnitude_to_njy, make_truth
from ._config import SkyModel, SurveyConfig
from ._exposure import SimulatedExposure, simulate_exposure, sky_image
from ._survey import Survey, simulate_survey, write_survey
from ._visits import VisitConditions

__all__ = [
    "Camera",
    "SimulatedExposure",
    "SkyModel",
    "Survey",
    "SurveyConfig",
    "SurveyTruth",
    "VisitConditions",
    "magnitude_to_njy",
    "make_truth",
    "simulate_exposure",
    "simulate_survey",
    "sky_image",
    "write_survey",
]
