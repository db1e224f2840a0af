"""The truth catalogue: static stars and galaxies, transients and variables, per-visit fluxes."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.table import Table, vstack

from ..image import AB_ZERO_POINT_NJY
from ._camera import Camera
from ._config import SkyModel, SurveyConfig
from ._geometry import (
    focal_plane_to_tangent,
    sky_to_tangent,
    tangent_to_focal_plane,
    tangent_to_sky,
)
from ._visits import STREAM_CATALOG, VisitConditions, conditions_table, make_conditions, rng_for

__all__ = ["SurveyTruth", "magnitude_to_njy", "make_truth"]

#: Sub-streams of the catalogue, so that changing one population leaves the others alone.
_STARS, _BRIGHT, _GALAXIES, _TRANSIENTS, _VARIABLES = range(5)
#: Margin (arcsec) of the catalogue beyond the farthest reach of any visit's focal plane.
_CATALOG_MARGIN = 30.0


def magnitude_to_njy(mag: np.ndarray | float) -> np.ndarray | float:
    """AB magnitude -> flux density in nJy."""
    return 10.0 ** (-0.4 * (np.asarray(mag, float) - AB_ZERO_POINT_NJY))


@dataclass(frozen=True, eq=False)
class SurveyTruth:
    """Everything that was put on the sky, and when.

    Attributes
    ----------
    sources : astropy.table.Table
        Static sources: ``id, kind ('star' | 'galaxy'), ra, dec, mag, flux_njy``
        and the galaxy shape ``half_light_radius`` (arcsec), ``sersic_n``,
        ``axis_ratio``, ``position_angle`` (degrees east of north); stars have
        radius 0, index 0, axis ratio 1.
    transients : astropy.table.Table
        ``id, ra, dec, peak_mag, peak_flux_njy, mjd_start, rise_days,
        decay_days, host_id`` (-1 when not on a galaxy).
    variables : astropy.table.Table
        ``id, ra, dec, mean_mag, mean_flux_njy, amplitude, period_days, phase``.
    conditions : tuple of VisitConditions
        Per-visit conditions, in visit order.
    transient_flux, variable_flux : numpy.ndarray
        True flux in nJy of each transient / variable (rows) in each visit
        (columns); transients are 0 before they start.
    """

    sources: Table
    transients: Table
    variables: Table
    conditions: tuple[VisitConditions, ...]
    transient_flux: np.ndarray
    variable_flux: np.ndarray

    @property
    def visits(self) -> tuple[int, ...]:
        """Visit identifiers, in order."""
        return tuple(c.visit for c in self.conditions)

    def visit_index(self, visit: int) -> int:
        """Column of ``visit`` in the per-visit flux arrays."""
        return self.visits.index(int(visit))

    def visit_table(self) -> Table:
        """The visit conditions as a table."""
        return conditions_table(self.conditions)

    def varying_sources(self, visit: int) -> Table:
        """Transients and variables at ``visit``: ``id, kind, ra, dec, flux_njy``."""
        index = self.visit_index(visit)
        parts = []
        for kind, table, flux in (
            ("transient", self.transients, self.transient_flux),
            ("variable", self.variables, self.variable_flux),
        ):
            parts.append(
                Table(
                    {
                        "id": np.asarray(table["id"], np.int64),
                        "kind": np.full(len(table), kind, dtype="<U9"),
                        "ra": np.asarray(table["ra"], float),
                        "dec": np.asarray(table["dec"], float),
                        "flux_njy": flux[:, index].astype(float),
                    }
                )
            )
        return vstack(parts)


def _luminosity_function(rng, n: int, mag_range, slope: float) -> np.ndarray:
    """Magnitudes with ``dN/dm ~ 10^(slope m)`` on ``mag_range`` (inverse CDF)."""
    low, high = mag_range
    u = rng.uniform(0.0, 1.0, n)
    if abs(slope) < 1e-6 or high == low:
        return low + (high - low) * u
    a, b = 10.0 ** (slope * low), 10.0 ** (slope * high)
    return np.log10(a + u * (b - a)) / slope


def _uniform_disk(rng, n: int, config: SurveyConfig, radius: float):
    """``n`` sky positions uniform in a disk of ``radius`` arcsec about the field centre."""
    r = radius / 3600.0 * np.sqrt(rng.uniform(0.0, 1.0, n))
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    return tangent_to_sky(r * np.cos(phi), r * np.sin(phi), config.ra, config.dec)


def _catalog_radius(config: SurveyConfig, camera: Camera) -> float:
    reach = camera.focal_plane_radius * camera.pixel_scale
    return reach + 4.0 * math.sqrt(2.0) * config.pointing_offset + _CATALOG_MARGIN


def _static_population(
    config: SurveyConfig, camera: Camera, stream: int, density: float, mag_range, slope
) -> tuple[np.random.Generator, np.ndarray, np.ndarray, np.ndarray]:
    rng = rng_for(config.seed, STREAM_CATALOG, stream)
    radius = _catalog_radius(config, camera)
    n = int(rng.poisson(density * math.pi * (radius / 60.0) ** 2))
    ra, dec = _uniform_disk(rng, n, config, radius)
    return rng, ra, dec, _luminosity_function(rng, n, mag_range, slope)


def _source_table(kind: str, ra, dec, mag, shape: dict | None = None) -> Table:
    n = len(ra)
    shape = shape or {
        "half_light_radius": np.zeros(n),
        "sersic_n": np.zeros(n),
        "axis_ratio": np.ones(n),
        "position_angle": np.zeros(n),
    }
    columns = {
        "kind": np.full(n, kind, dtype="<U6"),
        "ra": ra,
        "dec": dec,
        "mag": mag,
        "flux_njy": magnitude_to_njy(mag),
    }
    return Table({**columns, **shape})


def _static_sources(config: SurveyConfig, camera: Camera) -> Table:
    sky = config.sky
    parts = []
    for stream, density, mags, slope in (
        (_STARS, sky.star_density, sky.star_mag_range, sky.star_lf_slope),
        (_BRIGHT, sky.bright_star_density, sky.bright_mag_range, sky.star_lf_slope),
    ):
        _, ra, dec, mag = _static_population(config, camera, stream, density, mags, slope)
        parts.append(_source_table("star", ra, dec, mag))
    rng, ra, dec, mag = _static_population(
        config, camera, _GALAXIES, sky.galaxy_density, sky.galaxy_mag_range, sky.galaxy_lf_slope
    )
    parts.append(_source_table("galaxy", ra, dec, mag, _galaxy_shapes(rng, len(ra), sky)))
    table = vstack(parts)
    table.add_column(np.arange(1, len(table) + 1, dtype=np.int64), name="id", index=0)
    return table


def _galaxy_shapes(rng, n: int, sky: SkyModel) -> dict[str, np.ndarray]:
    log_r = rng.uniform(*np.log(sky.galaxy_radius_range), n)
    return {
        "half_light_radius": np.exp(log_r),
        "sersic_n": rng.uniform(*sky.galaxy_sersic_range, n),
        "axis_ratio": 1.0 - rng.uniform(0.0, sky.galaxy_max_ellipticity, n),
        "position_angle": rng.uniform(0.0, 180.0, n),
    }


def _on_detectors(camera: Camera, fx, fy) -> np.ndarray:
    """Whether focal-plane positions (relative to the boresight) fall on a detector."""
    cx, cy = camera.focal_plane_center
    x, y = np.asarray(fx) + cx, np.asarray(fy) + cy
    px, py = camera.width + camera.gap, camera.height + camera.gap
    i, j = np.floor((x + 0.5) / px), np.floor((y + 0.5) / py)
    inside = (i >= 0) & (i < camera.n_x) & (j >= 0) & (j < camera.n_y)
    return inside & (x + 0.5 - i * px < camera.width) & (y + 0.5 - j * py < camera.height)


def _nominal_positions(rng, n: int, config: SurveyConfig, camera: Camera):
    """``n`` sky positions uniform over the detectors of the nominal (undithered) pointing."""
    inset = min(16, camera.width // 8, camera.height // 8)
    detectors = rng.integers(0, camera.n_detectors, n)
    x = rng.uniform(inset, camera.width - 1 - inset, n)
    y = rng.uniform(inset, camera.height - 1 - inset, n)
    fx, fy = np.zeros(n), np.zeros(n)
    for detector in range(camera.n_detectors):
        sel = detectors == detector
        fx[sel], fy[sel] = camera.focal_plane_position(detector, x[sel], y[sel])
    xi, eta = focal_plane_to_tangent(fx, fy, camera.pixel_scale, config.rotation)
    return tangent_to_sky(xi, eta, config.ra, config.dec)


def _hosts_in_footprint(config: SurveyConfig, camera: Camera, sources: Table) -> Table:
    galaxies = sources[sources["kind"] == "galaxy"]
    xi, eta = sky_to_tangent(galaxies["ra"], galaxies["dec"], config.ra, config.dec)
    fx, fy = tangent_to_focal_plane(xi, eta, camera.pixel_scale, config.rotation)
    return galaxies[_on_detectors(camera, fx, fy)]


def _place_transients(rng, n: int, config: SurveyConfig, camera: Camera, sources: Table):
    ra, dec = _nominal_positions(rng, n, config, camera)
    host_id = np.full(n, -1, dtype=np.int64)
    hosts = _hosts_in_footprint(config, camera, sources)
    hosted = rng.uniform(0.0, 1.0, n) < config.sky.transient_host_fraction
    if len(hosts) == 0 or not hosted.any():
        return ra, dec, host_id
    chosen = hosts[rng.integers(0, len(hosts), int(hosted.sum()))]
    offset = rng.normal(0.0, 0.5, (2, len(chosen))) * chosen["half_light_radius"] / 3600.0
    xi, eta = sky_to_tangent(chosen["ra"], chosen["dec"], config.ra, config.dec)
    ra[hosted], dec[hosted] = tangent_to_sky(xi + offset[0], eta + offset[1], config.ra, config.dec)
    host_id[hosted] = chosen["id"]
    return ra, dec, host_id


def _transients(
    config: SurveyConfig, camera: Camera, sources: Table, mjd: np.ndarray, first_id: int
) -> tuple[Table, np.ndarray]:
    sky, n = config.sky, config.sky.n_transients
    rng = rng_for(config.seed, STREAM_CATALOG, _TRANSIENTS)
    ra, dec, host_id = _place_transients(rng, n, config, camera, sources)
    peak_mag = rng.uniform(*sky.transient_mag_range, n)
    rise = rng.uniform(*sky.transient_rise_days, n)
    decay = rng.uniform(*sky.transient_decay_days, n)
    start = rng.uniform(mjd[0] - sky.transient_rise_days[1], mjd[-1], n)
    table = Table(
        {
            "id": np.arange(first_id, first_id + n, dtype=np.int64),
            "ra": ra,
            "dec": dec,
            "peak_mag": peak_mag,
            "peak_flux_njy": magnitude_to_njy(peak_mag),
            "mjd_start": start,
            "rise_days": rise,
            "decay_days": decay,
            "host_id": host_id,
        }
    )
    t = mjd[None, :] - start[:, None]
    rising = np.clip(t / rise[:, None], 0.0, 1.0)
    fading = np.exp(-np.clip(t - rise[:, None], 0.0, None) / decay[:, None])
    flux = np.asarray(table["peak_flux_njy"])[:, None] * np.where(t > 0, rising * fading, 0.0)
    return table, flux


def _variables(
    config: SurveyConfig, camera: Camera, mjd: np.ndarray, first_id: int
) -> tuple[Table, np.ndarray]:
    sky, n = config.sky, config.sky.n_variables
    rng = rng_for(config.seed, STREAM_CATALOG, _VARIABLES)
    ra, dec = _nominal_positions(rng, n, config, camera)
    mean_mag = rng.uniform(*sky.variable_mag_range, n)
    amplitude = rng.uniform(*sky.variable_amplitude_range, n)
    period = np.exp(rng.uniform(*np.log(sky.variable_period_days), n))
    phase = rng.uniform(0.0, 2.0 * np.pi, n)
    table = Table(
        {
            "id": np.arange(first_id, first_id + n, dtype=np.int64),
            "ra": ra,
            "dec": dec,
            "mean_mag": mean_mag,
            "mean_flux_njy": magnitude_to_njy(mean_mag),
            "amplitude": amplitude,
            "period_days": period,
            "phase": phase,
        }
    )
    angle = 2.0 * np.pi * mjd[None, :] / period[:, None] + phase[:, None]
    flux = np.asarray(table["mean_flux_njy"])[:, None] * (1.0 + amplitude[:, None] * np.sin(angle))
    return table, flux


def make_truth(config: SurveyConfig, camera: Camera) -> SurveyTruth:
    """Draw the truth of a survey from ``config.seed`` (the same seed, the same truth)."""
    conditions = make_conditions(config)
    mjd = np.array([c.mjd for c in conditions])
    sources = _static_sources(config, camera)
    transients, transient_flux = _transients(config, camera, sources, mjd, len(sources) + 1)
    variables, variable_flux = _variables(config, camera, mjd, len(sources) + len(transients) + 1)
    return SurveyTruth(sources, transients, variables, conditions, transient_flux, variable_flux)
