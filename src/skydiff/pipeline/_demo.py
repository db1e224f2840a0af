"""The end-to-end demo: simulate a survey, run the pipeline on it, score it against the truth."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table

__all__ = ["DemoScore", "score_transients", "write_figures"]

#: Pixel flags that mark a DIA source as an artefact candidate rather than a detection.
PIXEL_FLAGS = (
    "flag_edge",
    "flag_no_data",
    "flag_bad",
    "flag_saturated",
    "flag_suspect",
    "flag_sat_template",
    "flag_high_variance",
    "flag_interpolated",
    "flag_cr",
)

#: Bins of expected S/N for the recovery curve.
SNR_BINS = (3.0, 5.0, 7.0, 10.0, 20.0, 50.0, np.inf)


@dataclass(frozen=True)
class DemoScore:
    """How well the DIA sources recover the injected transients.

    Attributes
    ----------
    candidates : astropy.table.Table
        One row per (transient, science visit, detector) with a non-zero
        expected difference flux: ``expected_flux``, ``expected_snr``,
        ``recovered``, ``measured_flux``.
    n_false : int
        DIA sources without pixel flags matching no transient or variable star.
    n_dia : int
        All DIA sources.
    n_clean : int
        DIA sources without pixel flags (edge, no data, bad, saturated, ...).
    n_differences : int
        Difference images scored (detector-visits).
    """

    candidates: Table
    n_false: int
    n_dia: int
    n_clean: int = 0
    n_differences: int = 0

    def recovered_fraction(self, min_snr: float) -> float:
        """Fraction of the transient epochs with expected S/N >= ``min_snr`` recovered."""
        snr = np.asarray(self.candidates["expected_snr"], float)
        found = np.asarray(self.candidates["recovered"], bool)[snr >= min_snr]
        return float(found.mean()) if found.size else float("nan")

    def to_dict(self) -> dict:
        """The figures of the score as plain numbers (for JSON)."""
        recovery = self.recovery()
        return {
            "n_differences": self.n_differences,
            "n_dia_sources": self.n_dia,
            "n_unflagged": self.n_clean,
            "n_false": self.n_false,
            "false_per_difference": self.n_false / max(self.n_differences, 1),
            "n_transient_epochs": len(self.candidates),
            "n_recovered": int(np.sum(self.candidates["recovered"])),
            "recovered_fraction_snr_above_10": _finite_or_none(self.recovered_fraction(10.0)),
            "recovery": [
                {
                    "snr_min": float(row["snr_min"]),
                    "snr_max": _finite_or_none(row["snr_max"]),
                    "n": int(row["n"]),
                    "recovered_fraction": _finite_or_none(row["recovered_fraction"]),
                }
                for row in recovery
            ],
        }

    def recovery(self) -> Table:
        """Recovered fraction in bins of expected S/N."""
        snr = np.asarray(self.candidates["expected_snr"], float)
        found = np.asarray(self.candidates["recovered"], bool)
        rows = []
        for lo, hi in itertools.pairwise(SNR_BINS):
            inside = (snr >= lo) & (snr < hi)
            n = int(inside.sum())
            rows.append((lo, hi, n, float(found[inside].mean()) if n else np.nan))
        return Table(rows=rows, names=("snr_min", "snr_max", "n", "recovered_fraction"))


def _finite_or_none(value) -> float | None:
    """``value`` as a float, or None when it is NaN or infinite (strict JSON has neither)."""
    value = float(value)
    return value if np.isfinite(value) else None


def _expected_snr(difference, x: float, y: float, flux: float) -> float:
    """``|flux| / sigma``: sigma from the variance at (x, y) and the PSF's noise-equivalent area."""
    ix, iy = round(x) - difference.bbox.x0, round(y) - difference.bbox.y0
    variance = float(difference.variance[iy, ix])
    psf = difference.psf.kernel_image(x, y)
    area = 1.0 / float(np.sum(psf**2))
    return abs(flux) / np.sqrt(variance * area) if variance > 0 and np.isfinite(variance) else 0.0


def score_transients(repo, truth, science_visits, template_visits, *, radius: float = 1.0):
    """Match every science difference's DIA sources with the injected transients.

    The expected signal of a transient in a science visit is its flux there
    minus its mean flux over the template visits (what the coadd holds).
    """
    visits = list(truth.visits)
    template_index = [visits.index(v) for v in template_visits]
    transients = truth.transients
    t_coord = SkyCoord(transients["ra"], transients["dec"], unit="deg")
    v_coord = SkyCoord(truth.variables["ra"], truth.variables["dec"], unit="deg")
    rows, n_false, n_dia, n_clean, n_differences = [], 0, 0, 0, 0
    for ref in repo.query("difference"):
        visit, detector = ref.data_id["visit"], ref.data_id["detector"]
        if visit not in science_visits:
            continue
        n_differences += 1
        difference = repo.get("difference", ref.data_id)
        dia = repo.get("dia_sources", ref.data_id)
        n_dia += len(dia)
        expected = truth.transient_flux[:, visits.index(visit)] - truth.transient_flux[
            :, template_index
        ].mean(axis=1)
        x, y = difference.sky_to_pixel(np.asarray(transients["ra"]), np.asarray(transients["dec"]))
        b = difference.bbox
        inside = (x >= b.x0 + 5) & (x < b.x_end - 5) & (y >= b.y0 + 5) & (y < b.y_end - 5)
        d_coord = SkyCoord(dia["ra"], dia["dec"], unit="deg") if len(dia) else None
        matched_dia = np.zeros(len(dia), bool)
        for i in np.flatnonzero(inside & (expected != 0)):
            snr = _expected_snr(difference, x[i], y[i], expected[i])
            found, flux = False, np.nan
            if d_coord is not None:
                sep = t_coord[i].separation(d_coord).arcsec
                same_sign = np.sign(np.asarray(dia["psf_flux"], float)) == np.sign(expected[i])
                hits = np.flatnonzero((sep < radius) & same_sign)
                if hits.size:
                    found, flux = True, float(dia["psf_flux"][hits[0]])
                    matched_dia[hits] = True
            rows.append((int(transients["id"][i]), visit, detector, expected[i], snr, found, flux))
        if d_coord is not None:
            near_transient = d_coord.match_to_catalog_sky(t_coord)[1].arcsec < radius
            near_variable = (
                d_coord.match_to_catalog_sky(v_coord)[1].arcsec < radius
                if len(v_coord)
                else np.zeros(len(dia), bool)
            )
            clean = ~_flagged(dia)
            n_clean += int(clean.sum())
            n_false += int(np.sum(clean & ~(near_transient | near_variable | matched_dia)))
    names = (
        "id",
        "visit",
        "detector",
        "expected_flux",
        "expected_snr",
        "recovered",
        "measured_flux",
    )
    candidates = Table(rows=rows, names=names) if rows else Table(names=names)
    return DemoScore(candidates, n_false, n_dia, n_clean, n_differences)


def _flagged(dia: Table) -> np.ndarray:
    flagged = np.zeros(len(dia), bool)
    for name in PIXEL_FLAGS:
        if name in dia.colnames:
            flagged |= np.asarray(dia[name], bool)
    return flagged


def write_figures(repo, score: DemoScore, directory: Path, *, n_cutouts: int = 6) -> list[Path]:
    """PNG panels of science / template / difference around the brightest recovered
    transients, and the recovery fraction against expected S/N. Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    paths = [_recovery_figure(plt, score, directory / "recovery_vs_snr.png")]
    found = score.candidates[np.asarray(score.candidates["recovered"], bool)]
    if len(found):
        found.sort("expected_snr", reverse=True)
        paths.append(_cutout_figure(plt, repo, found[:n_cutouts], directory / "cutouts.png"))
    return paths


def _recovery_figure(plt, score: DemoScore, path: Path) -> Path:
    table = score.recovery()
    upper = np.where(np.isfinite(table["snr_max"]), table["snr_max"], 2 * table["snr_min"])
    centres = np.sqrt(np.asarray(table["snr_min"]) * upper)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(centres, table["recovered_fraction"], "o-")
    ax.set_xscale("log")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("expected S/N of the transient in the difference")
    ax.set_ylabel("recovered fraction")
    ax.axvline(5.0, color="0.7", ls=":")
    n_found = int(np.sum(score.candidates["recovered"]))
    ax.set_title(f"{n_found} of {len(score.candidates)} recovered, {score.n_false} false")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _cutout_figure(plt, repo, rows: Table, path: Path, half: int = 15) -> Path:
    fig, axes = plt.subplots(3, len(rows), figsize=(1.8 * len(rows), 5.6), squeeze=False)
    for column, row in enumerate(rows):
        data_id = {"visit": int(row["visit"]), "detector": int(row["detector"])}
        difference = repo.get("difference", data_id)
        truth_x, truth_y = _position(repo, row, difference)
        for panel, name in enumerate(("calexp", "template", "difference")):
            exposure = difference if name == "difference" else repo.get(name, data_id)
            ix, iy = round(truth_x) - exposure.bbox.x0, round(truth_y) - exposure.bbox.y0
            cut = exposure.image[
                max(iy - half, 0) : iy + half + 1, max(ix - half, 0) : ix + half + 1
            ]
            ax = axes[panel, column]
            lo, hi = np.nanpercentile(cut, [1, 99.5]) if cut.size else (0, 1)
            ax.imshow(cut, origin="lower", cmap="gray", vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            if column == 0:
                ax.set_ylabel(("science", "template", "difference")[panel])
        axes[0, column].set_title(f"v{row['visit']} S/N {row['expected_snr']:.0f}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _position(repo, row, difference) -> tuple[float, float]:
    dia = repo.get("dia_sources", {"visit": int(row["visit"]), "detector": int(row["detector"])})
    flux = np.asarray(dia["psf_flux"], float)
    nearest = int(np.argmin(np.abs(flux - row["measured_flux"])))
    return float(dia["x"][nearest]), float(dia["y"][nearest])
