"""Observing conditions of each visit, drawn from the survey seed."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from astropy.table import Table

from ._config import SurveyConfig
from ._geometry import tangent_to_sky

__all__ = ["VisitConditions", "conditions_table", "make_conditions", "rng_for"]

#: First element of the spawn key of each random stream (keeps streams independent).
STREAM_CATALOG, STREAM_VISIT, STREAM_EXPOSURE, STREAM_DETECTOR = 0, 1, 2, 3


def rng_for(seed: int, *key: int) -> np.random.Generator:
    """A generator for the stream ``key`` of ``seed``, independent of every other key.

    Keyed streams make a survey's pixels independent of the order in which
    its exposures are rendered.
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(key)))


@dataclass(frozen=True)
class VisitConditions:
    """What changes between visits: time, pointing, seeing, sky and calibration.

    Attributes
    ----------
    visit : int
        Visit identifier.
    mjd, airmass : float
        Mid-exposure MJD and airmass.
    boresight_ra, boresight_dec, rotation : float
        Pointing and sky rotation of the focal plane, degrees.
    seeing : float
        PSF FWHM at the boresight, arcsec.
    psf_tilt_x, psf_tilt_y : float
        Fractional FWHM gradient across the focal plane (per focal-plane radius).
    psf_g1, psf_g2 : float
        Shear common to the whole focal plane.
    sky_level : float
        Sky at the boresight, counts.
    sky_gradient_x, sky_gradient_y : float
        Sky change in counts per focal-plane radius along focal-plane x and y.
    zero_point : float
        AB magnitude of one count.
    """

    visit: int
    mjd: float
    airmass: float
    boresight_ra: float
    boresight_dec: float
    rotation: float
    seeing: float
    psf_tilt_x: float
    psf_tilt_y: float
    psf_g1: float
    psf_g2: float
    sky_level: float
    sky_gradient_x: float
    sky_gradient_y: float
    zero_point: float


def _visit_conditions(config: SurveyConfig, index: int) -> VisitConditions:
    rng = rng_for(config.seed, STREAM_VISIT, index)
    offset = rng.normal(0.0, config.pointing_offset, 2) / 3600.0
    ra, dec = tangent_to_sky(offset[0], offset[1], config.ra, config.dec)
    tilt = rng.uniform(-0.5, 0.5, 2) * config.psf_fwhm_variation
    shear = rng.uniform(-1.0, 1.0, 2) * config.psf_ellipticity / np.sqrt(2.0)
    gradient_angle = rng.uniform(0.0, 2.0 * np.pi)
    return VisitConditions(
        visit=config.first_visit + index,
        mjd=config.mjd_start + config.cadence_days * (index + rng.uniform(0.0, 0.5)),
        airmass=float(rng.uniform(*config.airmass_range)),
        boresight_ra=float(ra),
        boresight_dec=float(dec),
        rotation=float(config.rotation + rng.normal(0.0, config.rotation_scatter)),
        seeing=float(rng.uniform(*config.seeing_range)),
        psf_tilt_x=float(tilt[0]),
        psf_tilt_y=float(tilt[1]),
        psf_g1=float(shear[0]),
        psf_g2=float(shear[1]),
        sky_level=float(
            config.sky_level * max(1.0 + rng.normal(0.0, config.sky_level_scatter), 0.5)
        ),
        sky_gradient_x=float(config.sky_gradient * np.cos(gradient_angle)),
        sky_gradient_y=float(config.sky_gradient * np.sin(gradient_angle)),
        zero_point=float(config.zero_point + rng.normal(0.0, config.zero_point_scatter)),
    )


def make_conditions(config: SurveyConfig) -> tuple[VisitConditions, ...]:
    """The conditions of every visit of the survey, in visit order."""
    return tuple(_visit_conditions(config, index) for index in range(config.n_visits))


def conditions_table(conditions: tuple[VisitConditions, ...]) -> Table:
    """The conditions as an astropy Table, one row per visit."""
    rows = [asdict(c) for c in conditions]
    return Table(rows=rows, names=list(rows[0]))
