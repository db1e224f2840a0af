"""Fitting a spatially varying pixel-basis PSF to centred star stamps (array layer).

Every kernel pixel is a polynomial in position, fitted by weighted linear
least squares over the stars, all pixels at once. Amplitudes are refitted
against the model, pixels of neighbours outside the star's core masked,
local backgrounds re-measured without them, stars with outlying chi^2 per
degree of freedom dropped and the fit repeated. A random fraction of the
stars is held out and measures the chi^2/dof of the model on stars it has
not seen. The stamps come from :func:`skydiff.psf._star_stamps.centre_stamps`.

Pure numpy/scipy: no configuration objects, no logging.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import InsufficientSourcesError, InvalidParameterError
from ..math import clipped_stats, normalized_coordinates, polynomial_terms
from ._star_stamps import local_backgrounds

__all__ = [
    "PsfModelFit",
    "compress_pixel_basis",
    "evaluate_pixel_basis",
    "fit_amplitudes",
    "fit_pixel_polynomials",
    "fit_psf_model",
    "mask_outlier_pixels",
    "stamp_chi2",
]


def fit_pixel_polynomials(
    data: np.ndarray, variance: np.ndarray, amplitude: np.ndarray, terms: np.ndarray
) -> np.ndarray:
    """Each kernel pixel as a polynomial in position, by weighted least squares over stars.

    Solves ``data[i, p] / amplitude[i] ~ terms[i] @ c[:, p]`` with weights
    ``amplitude[i]^2 / variance[i, p]`` (zero for infinite variance) for all
    pixels ``p`` at once: one ``(n_terms, n_terms)`` normal system per pixel,
    built with two matrix products over the stars.

    Returns
    -------
    numpy.ndarray
        ``(n_terms, size, size)``, the image of each polynomial coefficient.
    """
    n, size = data.shape[:2]
    n_terms = terms.shape[1]
    inverse_var = 1.0 / variance.reshape(n, -1)
    products = (terms[:, :, None] * terms[:, None, :]).reshape(n, n_terms * n_terms)
    normal = ((inverse_var * (amplitude**2)[:, None]).T @ products).reshape(-1, n_terms, n_terms)
    rhs = (data.reshape(n, -1) * inverse_var * amplitude[:, None]).T @ terms
    # Guard against pixels that no star constrains (all masked): they come out zero.
    trace = np.trace(normal, axis1=1, axis2=2)
    normal += (1e-12 * trace + (trace == 0))[:, None, None] * np.eye(n_terms)
    solution = np.linalg.solve(normal, rhs[..., None])[..., 0]
    return solution.T.reshape(n_terms, size, size)


def compress_pixel_basis(
    coefficient_images: np.ndarray, order: int, n_components: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Basis images and their ``(n_basis, n_terms)`` coefficients for a :class:`PixelBasisPsf`.

    Without compression (``n_components`` None or not below the number of
    terms) the basis is the coefficient images with identity coefficients.
    Otherwise the model is projected onto the ``n_components`` principal
    directions (SVD) of its kernels on a 9 x 9 grid over the fitted region;
    the weights stay polynomials of the same order.
    """
    n_terms, size = coefficient_images.shape[:2]
    if n_components is None or n_components >= n_terms:
        return coefficient_images.copy(), np.eye(n_terms)
    flat = coefficient_images.reshape(n_terms, -1)
    u, v = np.meshgrid(np.linspace(-1.0, 1.0, 9), np.linspace(-1.0, 1.0, 9))
    samples = polynomial_terms(u.ravel(), v.ravel(), order) @ flat
    directions = np.linalg.svd(samples, full_matrices=False)[2][:n_components]
    return directions.reshape(n_components, size, size), directions @ flat.T


def evaluate_pixel_basis(
    basis: np.ndarray, coefficients: np.ndarray, terms: np.ndarray
) -> np.ndarray:
    """Unit-sum kernels ``(n, size, size)`` at positions with polynomial ``terms`` ``(n, n_terms)``.

    The sum :meth:`skydiff.psf.PixelBasisPsf.kernel_image` makes, for many positions.
    """
    kernels = np.tensordot(terms @ coefficients.T, basis, axes=1)
    return kernels / kernels.sum(axis=(1, 2), keepdims=True)


def fit_amplitudes(data: np.ndarray, variance: np.ndarray, kernels: np.ndarray) -> np.ndarray:
    """Weighted least-squares amplitude of each unit-sum kernel in its stamp (PSF flux)."""
    weighted = kernels / variance
    return (weighted * data).sum(axis=(1, 2)) / (weighted * kernels).sum(axis=(1, 2))


def stamp_chi2(
    data: np.ndarray, variance: np.ndarray, amplitude: np.ndarray, kernels: np.ndarray
) -> np.ndarray:
    """Chi^2 of each stamp against ``amplitude`` times its kernel (infinite variance: ignored)."""
    residual = data - amplitude[:, None, None] * kernels
    return (residual * residual / variance).sum(axis=(1, 2))


def mask_outlier_pixels(
    data: np.ndarray,
    variance: np.ndarray,
    amplitude: np.ndarray,
    kernels: np.ndarray,
    *,
    nsigma: float,
    core_radius: float,
) -> np.ndarray:
    """Pixels more than ``nsigma`` from the model outside the core, grown by one pixel.

    These are neighbours, cosmic rays and the like; pixels within
    ``core_radius`` of the stamp centre are never masked, so that a star
    that does not fit there (a galaxy, a close blend) shows in its chi^2.
    """
    half = data.shape[1] // 2
    r2 = np.arange(-half, half + 1) ** 2
    outside = (r2[:, None] + r2[None, :]) > core_radius**2
    pull = np.abs(data - amplitude[:, None, None] * kernels) / np.sqrt(variance)
    grow = np.zeros((3, 3, 3), bool)
    grow[1] = True
    return ndimage.binary_dilation((pull > nsigma) & outside, structure=grow)


# -- the iterative fit ---------------------------------------------------------------------


@dataclass(frozen=True)
class PsfModelFit:
    """Result of :func:`fit_psf_model`; per-star arrays follow the input stamps.

    Attributes
    ----------
    basis, coefficients : numpy.ndarray
        Arguments of :class:`skydiff.psf.PixelBasisPsf`.
    used, reserved, rejected, reserved_outlier : numpy.ndarray
        Stars in the final fit; held out of it; dropped from it as outliers;
        held out and beyond the same outlier threshold.
    amplitude, chi2_dof : numpy.ndarray
        PSF flux of each star and its chi^2/dof against the final model.
    chi2_dof_fit, chi2_dof_holdout : float
        Chi^2/dof pooled over the used stars, and over the held-out stars
        that are not outliers (NaN if there are none).
    masked_fraction : float
        Fraction of the used stars' pixels masked as outliers.
    threshold : float
        Final outlier threshold on chi^2/dof.
    n_iterations : int
        Fits made.
    """

    basis: np.ndarray
    coefficients: np.ndarray
    used: np.ndarray
    reserved: np.ndarray
    rejected: np.ndarray
    reserved_outlier: np.ndarray
    amplitude: np.ndarray
    chi2_dof: np.ndarray
    chi2_dof_fit: float
    chi2_dof_holdout: float
    masked_fraction: float
    threshold: float
    n_iterations: int


def _holdout(n: int, fraction: float, seed: int) -> np.ndarray:
    reserved = np.zeros(n, bool)
    reserved[np.random.default_rng(seed).choice(n, round(fraction * n), replace=False)] = True
    return reserved


def _rejection_threshold(chi2_dof: np.ndarray, nsigma: float) -> float:
    """Clipped mean plus ``nsigma`` clipped standard deviations of the stars' chi^2/dof."""
    stats = clipped_stats(chi2_dof, nsigma=nsigma, max_iter=10)
    limit = stats.mean + nsigma * stats.stddev
    return float(limit) if np.isfinite(limit) else np.inf


def _check_count(good: np.ndarray, reserved: np.ndarray, min_stars: int) -> None:
    n_good, n, n_reserved = int(good.sum()), len(good), int(reserved.sum())
    if n_good < min_stars:
        raise InsufficientSourcesError(
            f"only {n_good} stars left to fit the PSF, need {min_stars} ({n} usable stamps, "
            f"{n_reserved} held out, {n - n_reserved - n_good} rejected)",
            {"n_stamps": n, "n_reserved": n_reserved, "n_fit": n_good},
        )


def _pooled(chi2_dof: np.ndarray, dof: np.ndarray, which: np.ndarray) -> float:
    if not which.any():
        return float("nan")
    return float((chi2_dof * dof)[which].sum() / dof[which].sum())


def _refine_stars(stamps, data, variance, var, kernels, *, pixel_nsigma, core_radius, ring):
    """Amplitudes, masked outlier pixels (infinite ``var``) and local backgrounds of all stars.

    With ``ring`` the background is the median of the unmasked ring pixels
    of the input ``stamps``, where the model is zero by definition (fitting
    it against the model would leave a free constant between the two).
    """
    amplitude = fit_amplitudes(data, var, kernels)
    if pixel_nsigma is not None:
        masked = mask_outlier_pixels(
            data, variance, amplitude, kernels, nsigma=pixel_nsigma, core_radius=core_radius
        )
        var = np.where(masked, np.inf, variance)
        if ring:
            data = stamps - local_backgrounds(stamps, good=~masked)[:, None, None]
    return data, var, fit_amplitudes(data, var, kernels)


def fit_psf_model(
    data: np.ndarray,
    variance: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    bounds: tuple[float, float, float, float],
    *,
    order: int = 2,
    n_components: int | None = None,
    nsigma: float = 4.0,
    max_iter: int = 5,
    pixel_nsigma: float | None = 5.0,
    core_radius: float = 7.0,
    local_background: bool = True,
    holdout_fraction: float = 0.2,
    min_stars: int = 20,
    seed: int = 0,
    n_star_parameters: int = 4,
) -> PsfModelFit:
    """Fit a pixel-basis PSF with polynomial spatial variation to centred star stamps.

    A random ``holdout_fraction`` of the stars (drawn with ``seed``) is held
    out. The others are fitted (:func:`fit_pixel_polynomials`; amplitudes
    from the stamp sums at first, then from the model). Then, up to
    ``max_iter`` times or until the set of stars is stable: pixels beyond
    ``pixel_nsigma`` outside ``core_radius`` are masked
    (:func:`mask_outlier_pixels`; never if None) and, with
    ``local_background``, each star's ring median is re-measured without
    them; stars whose chi^2/dof exceeds the clipped mean by ``nsigma``
    clipped standard deviations are dropped; the model is refitted. The
    model returned excludes the held-out stars, so their chi^2/dof is an
    honest figure of it.

    Parameters
    ----------
    data, variance : numpy.ndarray
        ``(n, size, size)`` background-free, centred stamps (:func:`centre_stamps`).
    x, y : numpy.ndarray
        Parent positions of the stars.
    bounds : tuple of float
        ``(x_min, y_min, x_max, y_max)`` onto which positions are normalised.
    order : int
        Polynomial order of the spatial variation.
    n_components : int, optional
        Principal components to keep (:func:`compress_pixel_basis`).
    n_star_parameters : int
        Parameters fitted per star (amplitude, centroid, background), for the dof.

    Raises
    ------
    InsufficientSourcesError
        If fewer than ``min_stars`` stars (or than polynomial terms) are left to fit.
    """
    if data.ndim != 3 or data.shape != variance.shape or not len(x) == len(y) == len(data):
        raise InvalidParameterError("data, variance, x and y must describe the same stars")
    terms = polynomial_terms(*normalized_coordinates(x, y, bounds), order)
    min_stars = max(min_stars, terms.shape[1] + 1)
    reserved = _holdout(len(data), holdout_fraction, seed)
    stamps, amplitude, var = data, data.sum(axis=(1, 2)), variance
    options = dict(pixel_nsigma=pixel_nsigma, core_radius=core_radius, ring=local_background)
    good = ~reserved & (amplitude > 0)
    for n_fits in range(1, max(max_iter, 1) + 2):
        _check_count(good, reserved, min_stars)
        images = fit_pixel_polynomials(data[good], var[good], amplitude[good], terms[good])
        basis, coefficients = compress_pixel_basis(images, order, n_components)
        kernels = evaluate_pixel_basis(basis, coefficients, terms)
        data, var, amplitude = _refine_stars(stamps, data, variance, var, kernels, **options)
        dof = np.isfinite(var).sum(axis=(1, 2)) - n_star_parameters
        chi2_dof = stamp_chi2(data, var, amplitude, kernels) / dof
        threshold = _rejection_threshold(chi2_dof[~reserved & (amplitude > 0)], nsigma)
        fine = (amplitude > 0) & (chi2_dof <= threshold if max_iter > 0 else True)
        if n_fits > max(max_iter, 1) or (n_fits > 1 and np.array_equal(~reserved & fine, good)):
            break
        good = ~reserved & fine
    return PsfModelFit(
        basis=basis,
        coefficients=coefficients,
        used=good,
        reserved=reserved,
        rejected=~reserved & ~good,
        reserved_outlier=reserved & ~fine,
        amplitude=amplitude,
        chi2_dof=chi2_dof,
        chi2_dof_fit=_pooled(chi2_dof, dof, good),
        chi2_dof_holdout=_pooled(chi2_dof, dof, reserved & fine),
        masked_fraction=float(1.0 - (dof + n_star_parameters)[good].mean() / data[0].size),
        threshold=threshold,
        n_iterations=n_fits,
    )
