"""Image characterization: background, variance scale, sources, star selection and PSF."""

from ._psf_determiner import PsfDeterminerConfig, PsfDeterminerResult, PsfDeterminerTask
from ._scale_variance import ScaleVarianceConfig, ScaleVarianceResult, ScaleVarianceTask
from ._star_selector import StarSelectorConfig, StarSelectorResult, StarSelectorTask, stellar_locus
from ._task import CharacterizeConfig, CharacterizeResult, CharacterizeTask

__all__ = [
    "CharacterizeConfig",
    "CharacterizeResult",
    "CharacterizeTask",
    "PsfDeterminerConfig",
    "PsfDeterminerResult",
    "PsfDeterminerTask",
    "ScaleVarianceConfig",
    "ScaleVarianceResult",
    "ScaleVarianceTask",
    "StarSelectorConfig",
    "StarSelectorResult",
    "StarSelectorTask",
    "stellar_locus",
]
