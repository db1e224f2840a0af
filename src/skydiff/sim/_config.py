"""Configuration of a simulated survey: what is on the sky and how it is observed."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..errors import InvalidParameterError
from ..task import Config

__all__ = ["SkyModel", "SurveyConfig"]


@dataclass(frozen=True)
class SkyModel(Config):
    """The simulated scene: static stars and galaxies, transients and variables.

    Densities are per square arcminute of sky; magnitudes are AB. Stars follow
    a power-law luminosity function ``dN/dm ~ 10^(slope * m)``.

    Parameters
    ----------
    star_density : float
        Stars per arcmin^2 in ``star_mag_range`` (16 gives ~3000 stars on a
        4096^2 detector of 0.2" pixels).
    star_mag_range : (float, float)
        Magnitude range of ordinary stars.
    star_lf_slope : float
        Slope of the luminosity function ``d log10 N / dm``.
    bright_star_density : float
        Stars per arcmin^2 in ``bright_mag_range``, meant to saturate.
    bright_mag_range : (float, float)
        Magnitude range of the bright stars.
    galaxy_density : float
        Galaxies per arcmin^2.
    galaxy_mag_range : (float, float)
        Galaxy magnitude range (slope ``galaxy_lf_slope``).
    galaxy_lf_slope : float
        Slope of the galaxy number counts.
    galaxy_radius_range : (float, float)
        Half-light radius range in arcsec (log-uniform).
    galaxy_sersic_range : (float, float)
        Sersic index range (uniform), within [0.3, 6].
    galaxy_max_ellipticity : float
        Largest ``1 - b/a`` of galaxy isophotes, in [0, 0.9].
    n_transients : int
        Transients placed on the nominal focal plane.
    transient_mag_range : (float, float)
        Peak magnitude range.
    transient_rise_days, transient_decay_days : (float, float)
        Ranges of the linear rise time and exponential decay time.
    transient_host_fraction : float
        Fraction of transients placed on a galaxy.
    n_variables : int
        Variable stars placed on the nominal focal plane.
    variable_mag_range : (float, float)
        Mean magnitude range.
    variable_amplitude_range : (float, float)
        Range of the fractional amplitude of the sinusoidal light curve (< 1).
    variable_period_days : (float, float)
        Period range (log-uniform).
    """

    star_density: float = 16.0
    star_mag_range: tuple[float, float] = (17.0, 25.0)
    star_lf_slope: float = 0.3
    bright_star_density: float = 0.02
    bright_mag_range: tuple[float, float] = (12.0, 15.0)
    galaxy_density: float = 6.0
    galaxy_mag_range: tuple[float, float] = (19.0, 25.0)
    galaxy_lf_slope: float = 0.35
    galaxy_radius_range: tuple[float, float] = (0.3, 1.5)
    galaxy_sersic_range: tuple[float, float] = (0.5, 2.5)
    galaxy_max_ellipticity: float = 0.6
    n_transients: int = 10
    transient_mag_range: tuple[float, float] = (19.0, 23.0)
    transient_rise_days: tuple[float, float] = (1.0, 5.0)
    transient_decay_days: tuple[float, float] = (3.0, 30.0)
    transient_host_fraction: float = 0.5
    n_variables: int = 10
    variable_mag_range: tuple[float, float] = (18.0, 22.0)
    variable_amplitude_range: tuple[float, float] = (0.1, 0.5)
    variable_period_days: tuple[float, float] = (0.2, 20.0)

    def validate(self) -> None:
        for name in ("star_density", "bright_star_density", "galaxy_density"):
            self.check(getattr(self, name) >= 0, name, "must be >= 0")
        for name in (
            "star_mag_range",
            "bright_mag_range",
            "galaxy_mag_range",
            "transient_mag_range",
            "variable_mag_range",
        ):
            self.check_range(name)
        for name in (
            "galaxy_radius_range",
            "transient_rise_days",
            "transient_decay_days",
            "variable_period_days",
        ):
            self.check_range(name, minimum=0.0, strict=True)
        self.check_range("galaxy_sersic_range", minimum=0.3, maximum=6.0)
        self.check_range("variable_amplitude_range", minimum=0.0, maximum=0.999)
        self.check(
            0 <= self.galaxy_max_ellipticity <= 0.9, "galaxy_max_ellipticity", "must be in [0, 0.9]"
        )
        self.check(
            0 <= self.transient_host_fraction <= 1, "transient_host_fraction", "must be in [0, 1]"
        )
        for name in ("n_transients", "n_variables"):
            self.check(getattr(self, name) >= 0, name, "must be >= 0")


@dataclass(frozen=True)
class SurveyConfig(Config):
    """How the sky is observed: visits, pointing, seeing, sky, calibration, seed.

    Everything random in a survey derives from ``seed``, so equal configs
    (with equal cameras) give identical surveys.

    Parameters
    ----------
    ra, dec : float
        Field centre in degrees.
    n_visits : int
        Number of visits.
    first_visit : int
        Identifier of the first visit; visits are numbered consecutively.
    band, physical_filter : str
        Filter names recorded in each exposure.
    mjd_start : float
        MJD of the start of the survey; visit ``i`` is taken at a random
        time in the first half of ``[mjd_start + i cadence, mjd_start + (i + 1) cadence)``.
    cadence_days : float
        Interval between visits.
    exposure_time : float
        Seconds.
    airmass_range : (float, float)
        Range of the airmass of a visit (uniform).
    seeing_range : (float, float)
        Range of the seeing FWHM in arcsec at the boresight (uniform per visit).
    psf_beta : float
        Moffat index of the PSF (> 1).
    psf_fwhm_variation : float
        Fractional FWHM change from the boresight to the focal-plane corners,
        plus a random tilt of up to half that per visit.
    psf_ellipticity : float
        Shear amplitude of the focal-plane astigmatism pattern at the corners;
        each visit adds a constant shear of up to the same amplitude.
    sky_level : float
        Mean sky level in counts.
    sky_level_scatter : float
        Fractional scatter of the sky level between visits.
    sky_gradient : float
        Change of the sky in counts from the boresight to the focal-plane
        corners, in a random direction per visit (below ``sky_level / 2``).
    zero_point, zero_point_scatter : float
        Mean and scatter of the AB zero point (magnitude of one count) per visit.
    pointing_offset : float
        RMS pointing offset per axis between visits, arcsec.
    rotation, rotation_scatter : float
        Mean sky rotation of the focal plane and its scatter per visit, degrees.
    sip_amplitude : float
        Optical distortion in pixels at the focal-plane corners (a cubic
        radial term, written as TAN-SIP).
    add_noise : bool
        Add Poisson and read noise (False gives the expected image).
    seed : int
        Seed of every random choice.
    sky : SkyModel
        The scene.
    """

    ra: float = 150.0
    dec: float = 2.0
    n_visits: int = 4
    first_visit: int = 1
    band: str = "r"
    physical_filter: str = "sim-r"
    mjd_start: float = 60000.0
    cadence_days: float = 3.0
    exposure_time: float = 30.0
    airmass_range: tuple[float, float] = (1.0, 1.5)
    seeing_range: tuple[float, float] = (0.6, 1.1)
    psf_beta: float = 3.5
    psf_fwhm_variation: float = 0.04
    psf_ellipticity: float = 0.03
    sky_level: float = 800.0
    sky_level_scatter: float = 0.1
    sky_gradient: float = 20.0
    zero_point: float = 30.0
    zero_point_scatter: float = 0.05
    pointing_offset: float = 10.0
    rotation: float = 0.0
    rotation_scatter: float = 0.5
    sip_amplitude: float = 1.0
    add_noise: bool = True
    seed: int = 0
    sky: SkyModel = field(default_factory=SkyModel)

    def validate(self) -> None:
        self.check(-89.0 <= self.dec <= 89.0, "dec", "must be in [-89, 89]")
        self.check(self.n_visits >= 1, "n_visits", "must be >= 1")
        self.check(self.first_visit >= 0, "first_visit", "must be >= 0")
        for name in ("cadence_days", "exposure_time", "sky_level"):
            self.check(getattr(self, name) > 0, name, "must be > 0")
        for name in (
            "zero_point_scatter",
            "pointing_offset",
            "rotation_scatter",
            "sip_amplitude",
            "sky_gradient",
        ):
            self.check(getattr(self, name) >= 0, name, "must be >= 0")
        self.check_range("airmass_range", minimum=1.0)
        self.check_range("seeing_range", minimum=0.0, strict=True)
        self.check(self.psf_beta > 1, "psf_beta", "must be > 1")
        self.check(0 <= self.psf_fwhm_variation <= 0.3, "psf_fwhm_variation", "must be in [0, 0.3]")
        self.check(0 <= self.psf_ellipticity <= 0.2, "psf_ellipticity", "must be in [0, 0.2]")
        self.check(0 <= self.sky_level_scatter <= 0.5, "sky_level_scatter", "must be in [0, 0.5]")
        self.check(
            self.sky_gradient < 0.5 * self.sky_level,
            "sky_gradient",
            f"must be below sky_level / 2 ({0.5 * self.sky_level})",
        )
        self.check(self.seed >= 0, "seed", "must be >= 0")

    @property
    def visits(self) -> tuple[int, ...]:
        """Visit identifiers."""
        return tuple(range(self.first_visit, self.first_visit + self.n_visits))

    def visit_index(self, visit: int) -> int:
        """Position of ``visit`` in :attr:`visits`; raises if it is not a visit of this survey."""
        index = int(visit) - self.first_visit if int(visit) == visit else -1
        if not 0 <= index < self.n_visits:
            raise InvalidParameterError(
                f"visit {visit!r} is not in the survey (visits {self.first_visit} .. "
                f"{self.first_visit + self.n_visits - 1})"
            )
        return index

    def with_sky(self, **changes) -> SurveyConfig:
        """A copy whose :class:`SkyModel` has ``changes`` (a shortcut for nested replace)."""
        return replace(self, sky=replace(self.sky, **changes))
