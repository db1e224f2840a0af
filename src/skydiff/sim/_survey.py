"""A simulated survey: many visits of a camera, rendered lazily, and writing it to disk."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import InvalidParameterError
from ..io import write_exposure
from ._camera import Camera
from ._catalog import SurveyTruth, make_truth
from ._config import SurveyConfig
from ._exposure import SimulatedExposure, simulate_exposure

__all__ = ["Survey", "simulate_survey", "write_survey"]

log = logging.getLogger(__name__)

#: Surveys with at most this many pixels in all keep their exposures once rendered.
_CACHE_PIXELS = 8 * 1024 * 1024


class Survey:
    """Calexps of every visit and detector of a survey, rendered on demand.

    Exposures are rendered when asked for (``survey[visit, detector]``,
    :meth:`simulate`, iteration) so that a large survey never holds more
    than one image at a time; with ``cache`` they are kept after the first
    rendering. Rendering is deterministic, so a second rendering of an
    uncached exposure is identical to the first.

    Parameters
    ----------
    config : SurveyConfig
        The configuration (seed included).
    camera : Camera
        The camera.
    origin : (int, int)
        Parent-frame position of each image's first pixel.
    cache : bool, optional
        Keep rendered exposures; default: only for surveys of at most 8
        million pixels in all.
    """

    def __init__(
        self,
        config: SurveyConfig,
        camera: Camera,
        *,
        origin: tuple[int, int] = (0, 0),
        cache: bool | None = None,
    ):
        self.config, self.camera = config, camera
        self.origin = (int(origin[0]), int(origin[1]))
        self.truth: SurveyTruth = make_truth(config, camera)
        total = config.n_visits * camera.n_detectors * camera.width * camera.height
        self.cache = total <= _CACHE_PIXELS if cache is None else bool(cache)
        self._rendered: dict[tuple[int, int], SimulatedExposure] = {}

    @property
    def visits(self) -> tuple[int, ...]:
        """Visit identifiers."""
        return self.config.visits

    @property
    def detectors(self) -> tuple[int, ...]:
        """Detector identifiers."""
        return self.camera.detector_ids()

    @property
    def data_ids(self) -> list[tuple[int, int]]:
        """``(visit, detector)`` of every exposure, visit-major."""
        return [(v, d) for v in self.visits for d in self.detectors]

    def __len__(self) -> int:
        return self.config.n_visits * self.camera.n_detectors

    def simulate(self, visit: int, detector: int) -> SimulatedExposure:
        """The calexp and truth of one visit and detector."""
        key = (int(visit), int(detector))
        if key in self._rendered:
            return self._rendered[key]
        result = simulate_exposure(
            self.config, self.camera, visit, detector, origin=self.origin, truth=self.truth
        )
        if self.cache:
            self._rendered[key] = result
        return result

    def __getitem__(self, key: tuple[int, int]) -> SimulatedExposure:
        try:
            visit, detector = key
        except (TypeError, ValueError):
            raise InvalidParameterError(
                f"index a Survey with (visit, detector), got {key!r}"
            ) from None
        return self.simulate(visit, detector)

    def __iter__(self) -> Iterator[SimulatedExposure]:
        """Every exposure, visit-major, rendered one at a time."""
        for visit, detector in self.data_ids:
            yield self.simulate(visit, detector)

    def exposures(self, visit: int | None = None) -> Iterator[SimulatedExposure]:
        """The exposures of one visit (all visits by default), rendered one at a time."""
        if visit is not None:
            self.config.visit_index(visit)  # raises for a visit not in the survey
        for v in self.visits if visit is None else (int(visit),):
            for detector in self.detectors:
                yield self.simulate(v, detector)

    def __repr__(self) -> str:
        return (
            f"Survey({self.config.n_visits} visits x {self.camera.n_detectors} detectors "
            f"of {self.camera.width}x{self.camera.height}, seed={self.config.seed})"
        )


def simulate_survey(
    config: SurveyConfig | None = None,
    camera: Camera | None = None,
    *,
    origin: tuple[int, int] = (0, 0),
    cache: bool | None = None,
) -> Survey:
    """Simulate a survey: its truth now, its exposures when they are asked for.

    Parameters
    ----------
    config : SurveyConfig, optional
        Default ``SurveyConfig()``.
    camera : Camera, optional
        Default ``Camera.small()`` (2 x 2 detectors of 256 x 256 pixels).
    origin : (int, int)
        Parent-frame position of each image's first pixel.
    cache : bool, optional
        Keep rendered exposures in memory (default: for small surveys only).
    """
    config = SurveyConfig() if config is None else config
    camera = Camera.small() if camera is None else camera
    if not isinstance(config, SurveyConfig):
        raise InvalidParameterError(f"config must be a SurveyConfig, got {type(config).__name__}")
    if not isinstance(camera, Camera):
        raise InvalidParameterError(f"camera must be a Camera, got {type(camera).__name__}")
    return Survey(config, camera, origin=origin, cache=cache)


def _check_free(path: Path, overwrite: bool) -> Path:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists; pass overwrite=True to replace it")
    return path


def _write_tables(survey: Survey, directory: Path, overwrite: bool) -> list[Path]:
    truth = survey.truth
    tables = {
        "truth_sources.ecsv": truth.sources,
        "truth_transients.ecsv": truth.transients,
        "truth_variables.ecsv": truth.variables,
        "truth_visits.ecsv": truth.visit_table(),
    }
    transients, variables = truth.transients.copy(), truth.variables.copy()
    transients["flux_njy"] = truth.transient_flux
    variables["flux_njy"] = truth.variable_flux
    tables["truth_transients.ecsv"], tables["truth_variables.ecsv"] = transients, variables
    paths = [_check_free(directory / name, overwrite) for name in tables]
    config_path = _check_free(directory / "survey_config.json", overwrite)
    for path, table in zip(paths, tables.values(), strict=True):
        table.write(path, format="ascii.ecsv", overwrite=True)
    document = {
        "config": survey.config.to_dict(),
        "camera": survey.camera.to_dict(),
    }
    config_path.write_text(json.dumps(document, indent=2))
    return [*paths, config_path]


def write_survey(
    survey: Survey, directory: str | os.PathLike, *, overwrite: bool = False
) -> list[Path]:
    """Write every calexp as FITS and the truth as ECSV tables; return the paths written.

    Files: ``calexp_v{visit}_d{detector}.fits`` (skydiff layout, true PSF
    attached) and ``truth_v{visit}_d{detector}.ecsv`` per exposure, plus
    ``truth_sources.ecsv``, ``truth_transients.ecsv`` and
    ``truth_variables.ecsv`` (with a per-visit ``flux_njy`` column),
    ``truth_visits.ecsv`` and ``survey_config.json``. Exposures are rendered
    and written one at a time.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = _write_tables(survey, directory, overwrite)
    for simulated in survey:
        stem = f"v{simulated.visit}_d{simulated.detector}"
        image_path = write_exposure(
            simulated.exposure, directory / f"calexp_{stem}.fits", overwrite=overwrite
        )
        truth_path = _check_free(directory / f"truth_{stem}.ecsv", overwrite)
        simulated.truth.write(truth_path, format="ascii.ecsv", overwrite=True)
        paths.extend([image_path, truth_path])
        log.info("wrote %s", image_path)
    return paths
