"""Inverse-distance interpolation of geochemical assays (gstat ``idw`` semantics)."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from rasterio.windows import Window
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

from oremap.errors import DroppedDataWarning, InputDataError
from oremap.grid import Grid

log = logging.getLogger("oremap.evidence")

#: Upper bound on the number of (target, sample) pairs held at once, about 32 MB of float64.
_PAIR_BUDGET = 1 << 22


@dataclass(frozen=True, eq=False)
class PreparedSamples:
    """Assays ready for interpolation, with the counts of what was dropped or merged.

    Attributes
    ----------
    xy : (n, 2) float64 array
        Unique sample locations, in map units.
    values : (n,) float64 array
        Finite values in the interpolated space (after clipping and log10 if requested).
    n_input : int
        Number of rows given.
    n_dropped : int
        Rows dropped because the assay was missing, non-numeric or not finite.
    n_duplicates : int
        Rows merged into another row at the same location (their values averaged).
    clip_value : float or None
        The value (in assay units) above which assays were clipped, if clipping was asked for.
    """

    xy: np.ndarray
    values: np.ndarray
    n_input: int
    n_dropped: int
    n_duplicates: int
    clip_value: float | None


def prepare_samples(xy: np.ndarray, values: np.ndarray, *, source: str = "samples",
                    log10: bool = False, clip_percentile: float | None = None
                    ) -> PreparedSamples:
    """Drop unusable assays, clip, log-transform and merge duplicate locations.

    The steps, in order: non-numeric, NaN or infinite assays are dropped (counted in a
    :class:`DroppedDataWarning`); with ``clip_percentile`` = p, values above the p-th percentile
    (linear interpolation, of the remaining assays) are set to it; with ``log10`` the values
    become ``log10(value)``; samples at identical coordinates are merged into one whose value
    is the mean of theirs in that transformed space (a warning gives the count).

    Parameters
    ----------
    xy : (n, 2) array
        Easting, northing of the samples, in map units; must be finite.
    values : (n,) array
        Assays, numeric or convertible to numbers (other entries count as missing).
    source : str
        Names the file and column, used in every message.
    log10 : bool
        Interpolate ``log10(value)``; every kept value must then be > 0.
    clip_percentile : float or None
        Percentile in (0, 100] above which values are clipped.

    Returns
    -------
    PreparedSamples

    Raises
    ------
    InputDataError
        If the shapes disagree, coordinates are not finite, no assay is usable, a value is
        <= 0 with ``log10``, or ``clip_percentile`` is outside (0, 100].
    """
    xy = _as_xy(xy, f"{source}: sample coordinates")
    raw = np.asarray(values)
    if raw.ndim != 1 or len(raw) != len(xy):
        raise InputDataError(
            f"{source}: {len(xy)} sample locations but values of shape {raw.shape}; both must "
            "come from the same table rows.")
    numeric = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(dtype=np.float64)
    non_numeric = int((pd.isna(numeric) & ~pd.isna(pd.Series(raw)).to_numpy()).sum())
    keep = np.isfinite(numeric)
    n_bad = int((~keep).sum())
    if not keep.any():
        raise InputDataError(
            f"{source}: none of the {len(raw)} assays is a finite number; check the column "
            "name and the file's missing-value codes.")
    if n_bad:
        warnings.warn(
            f"{source}: dropped {n_bad} of {len(raw)} samples with missing or non-finite assays "
            f"({non_numeric} non-numeric)", DroppedDataWarning, stacklevel=2)
    xy, vals = xy[keep], numeric[keep]
    clip_value = _clip_value(vals, clip_percentile, source)
    if clip_value is not None:
        vals = np.minimum(vals, clip_value)
    if log10:
        vals = _log10(vals, source)
    xy, vals, n_dup = _merge_duplicates(xy, vals, source)
    return PreparedSamples(xy, vals, len(raw), n_bad, n_dup, clip_value)


def _as_xy(xy: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(xy, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise InputDataError(f"{what} must be an (n, 2) array of x, y; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputDataError(
            f"{what}: {int((~np.isfinite(arr)).any(axis=1).sum())} rows have missing or infinite "
            "coordinates; drop them before interpolating.")
    return arr


def _clip_value(vals: np.ndarray, pct: float | None, source: str) -> float | None:
    if pct is None:
        return None
    if not 0.0 < pct <= 100.0:
        raise InputDataError(
            f"{source}: clip_percentile must be in (0, 100], got {pct}; e.g. 99.5 clips the top "
            "half percent.")
    return float(np.percentile(vals, pct))


def _log10(vals: np.ndarray, source: str) -> np.ndarray:
    bad = vals <= 0
    if bad.any():
        raise InputDataError(
            f"{source}: {int(bad.sum())} assays are <= 0 (smallest {vals.min():g}) and cannot be "
            "log10-transformed; replace non-positive or below-detection entries by a "
            "detection-limit substitute such as half the detection limit, or set log10 = false.")
    return np.log10(vals)


def _merge_duplicates(xy: np.ndarray, vals: np.ndarray, source: str
                      ) -> tuple[np.ndarray, np.ndarray, int]:
    uniq, inverse, counts = np.unique(xy, axis=0, return_inverse=True, return_counts=True)
    n_dup = len(xy) - len(uniq)
    if n_dup == 0:
        return xy, vals, 0
    means = np.bincount(inverse.ravel(), weights=vals) / counts
    log.info("%s: %d samples share a location with another; averaged", source, n_dup)
    warnings.warn(
        f"{source}: {n_dup} samples lie at the same location as another and were merged "
        f"(values averaged), {int((counts > 1).sum())} locations affected",
        DroppedDataWarning, stacklevel=3)
    return uniq, means, n_dup


class IdwInterpolator:
    """Inverse-distance interpolation prepared once for many target sets.

    Semantics follow gstat's ``idw`` (R): a target's prediction is
    ``sum(w_i z_i) / sum(w_i)`` with ``w_i = 1 / d_i^power`` and Euclidean distance ``d_i``,
    over all samples when ``neighbours`` and ``radius`` are None, else over the nearest
    ``neighbours`` samples and/or those at distance ``<= radius``. A target at zero distance
    from a selected sample takes that sample's value exactly; a target with no sample within
    ``radius`` is NaN; ``neighbours >= n`` means all samples. Weights are rescaled by the
    largest weight of each target before summing, which changes nothing mathematically and
    avoids overflow or underflow at large powers.

    Parameters
    ----------
    xy : (n, 2) array
        Sample locations in map units; must be finite.
    values : (n,) array
        Sample values; must be finite (see :func:`prepare_samples`).
    power : float
        Distance exponent, >= 0 (0 gives the plain mean of the selected samples).
    neighbours : int or None
        Number of nearest samples used, >= 1.
    radius : float or None
        Search radius in map units, > 0.
    workers : int
        Threads for the k-d tree queries (-1: all cores).

    Raises
    ------
    InputDataError
        If the arrays are inconsistent or not finite, or a parameter is out of range.
    """

    def __init__(self, xy: np.ndarray, values: np.ndarray, *, power: float = 2.0,
                 neighbours: int | None = None, radius: float | None = None,
                 workers: int = 1) -> None:
        self.xy = _as_xy(xy, "idw: xy")
        self.values = np.asarray(values, dtype=np.float64)
        if self.values.shape != (len(self.xy),):
            raise InputDataError(
                f"idw: xy has {len(self.xy)} points but values has shape {self.values.shape}; "
                "both must come from the same assay-table rows.")
        if len(self.xy) == 0:
            raise InputDataError("idw: no samples to interpolate from")
        if not np.isfinite(self.values).all():
            raise InputDataError(
                "idw: values contain NaN or infinity; drop them first (prepare_samples does, "
                "with a count).")
        if not (np.isfinite(power) and power >= 0):
            raise InputDataError(f"idw: power must be a finite number >= 0, got {power}")
        if neighbours is not None and (int(neighbours) != neighbours or neighbours < 1):
            raise InputDataError(f"idw: neighbours must be an integer >= 1 or None, "
                                 f"got {neighbours}")
        if radius is not None and not (np.isfinite(radius) and radius > 0):
            raise InputDataError(f"idw: radius must be > 0 map units or None, got {radius}")
        self.power = float(power)
        n = len(self.xy)
        self.k = None if neighbours is None or neighbours >= n else int(neighbours)
        self.radius = None if radius is None else float(radius)
        self.workers = workers
        self.tree = cKDTree(self.xy) if (self.k or self.radius) else None

    def __call__(self, targets: np.ndarray, *, block_size: int | None = None) -> np.ndarray:
        """Interpolate at ``targets`` ((m, 2) map units); returns (m,) float64, NaN = no data."""
        targets = _as_xy(targets, "idw: targets")
        out = np.empty(len(targets), dtype=np.float64)
        width = len(self.xy) if self.k is None else self.k
        step = block_size or max(1, _PAIR_BUDGET // max(width, 1))
        for start in range(0, len(targets), step):
            stop = min(start + step, len(targets))
            out[start:stop] = self._block(targets[start:stop])
        return out

    def _block(self, t: np.ndarray) -> np.ndarray:
        if self.tree is None:
            d2 = cdist(t, self.xy, "sqeuclidean")
            return self._combine(d2, None)
        if self.k is not None:
            bound = np.inf if self.radius is None else _inclusive(self.radius)
            d, idx = self.tree.query(t, k=self.k, distance_upper_bound=bound,
                                     workers=self.workers)
            if self.k == 1:
                d, idx = d[:, None], idx[:, None]
            return self._combine(d * d, idx)
        return self._within_radius(t)

    def _within_radius(self, t: np.ndarray) -> np.ndarray:
        """All samples within ``radius``: pairs from a sparse distance matrix, then sums."""
        sub = cKDTree(t)
        pairs = sub.sparse_distance_matrix(self.tree, _inclusive(self.radius),
                                           output_type="ndarray")
        ti, si = pairs["i"], pairs["j"]
        d2 = ((t[ti] - self.xy[si]) ** 2).sum(axis=1)
        inside = d2 <= self.radius**2
        ti, si, d2 = ti[inside], si[inside], d2[inside]
        m = len(t)
        out = np.full(m, np.nan)
        if len(ti) == 0:
            return out
        d2min = np.full(m, np.inf)
        np.minimum.at(d2min, ti, d2)
        w = self._weights(d2, d2min[ti])
        wsum = np.bincount(ti, weights=w, minlength=m)
        zsum = np.bincount(ti, weights=w * self.values[si], minlength=m)
        has = wsum > 0
        with np.errstate(invalid="ignore"):
            out[has] = zsum[has] / wsum[has]
        zero = d2 == 0.0
        if zero.any():  # first zero-distance sample in sample order, as gstat's data order
            zt, zs = ti[zero], si[zero]
            order = np.lexsort((zs, zt))
            first = np.r_[True, zt[order][1:] != zt[order][:-1]]
            out[zt[order][first]] = self.values[zs[order][first]]
        return out

    def _weights(self, d2: np.ndarray, d2min: np.ndarray) -> np.ndarray:
        """``(d2 / d2min) ** (-power / 2)``: weights scaled so the largest per target is 1."""
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = d2 / np.where(d2min > 0, d2min, 1.0)
            if self.power == 2.0:
                return 1.0 / ratio
            return ratio ** (-0.5 * self.power)

    def _combine(self, d2: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
        """Weighted means over each row of ``d2`` (m, k); ``idx`` None means all samples."""
        valid = np.isfinite(d2) if idx is not None else None
        if valid is not None:
            d2 = np.where(valid, d2, np.inf)
            idx = np.where(valid, idx, 0)
        d2min = d2.min(axis=1)
        w = self._weights(d2, d2min[:, None])
        if valid is not None:
            w = np.where(valid, w, 0.0)
        z = self.values if idx is None else self.values[idx]
        with np.errstate(invalid="ignore", divide="ignore"):
            if idx is None:
                est = (w @ z) / w.sum(axis=1)
            else:
                est = (w * z).sum(axis=1) / w.sum(axis=1)
        zero = d2min == 0.0
        if zero.any():
            rows = np.flatnonzero(zero)
            first = np.argmax(d2[rows] == 0.0, axis=1)
            est[rows] = z[first] if idx is None else z[rows, first]
        est[~np.isfinite(d2min)] = np.nan
        return est


def _inclusive(radius: float) -> float:
    """A search bound just above ``radius``; callers then keep pairs with d^2 <= radius^2."""
    return float(np.nextafter(radius * (1 + 1e-9), np.inf))


def idw(xy: np.ndarray, values: np.ndarray, targets: np.ndarray, *, power: float = 2.0,
        neighbours: int | None = None, radius: float | None = None,
        block_size: int | None = None, workers: int = 1) -> np.ndarray:
    """Interpolate point values at ``targets`` by inverse distance weighting.

    The prediction at a target is ``sum(w_i z_i) / sum(w_i)`` with ``w_i = 1 / d_i^power``
    over the selected samples, as gstat's ``idw(z ~ 1, data, newdata, idp = power,
    nmax = neighbours, maxdist = radius)``: all samples when ``neighbours`` and ``radius``
    are None, else the nearest ``neighbours`` and/or those with ``d <= radius``. A target
    coinciding with a selected sample gets that sample's value (gstat: ``dist2 == 0``); a
    target with no sample within ``radius`` gets NaN.

    Parameters
    ----------
    xy : (n, 2) array
        Easting, northing of the samples, in map units.
    values : (n,) array
        Assay values; must be finite (:func:`prepare_samples` drops and reports NaNs).
    targets : (m, 2) array
        Where to interpolate, in the same units.
    power : float
        Distance exponent, >= 0.
    neighbours, radius : int or None, float or None
        Use only the nearest ``neighbours`` samples and/or those within ``radius``.
    block_size : int or None
        Targets per block; default keeps about 4 million (target, sample) pairs in memory.
    workers : int
        Threads for the k-d tree queries (-1: all cores).

    Returns
    -------
    (m,) float64 array

    Raises
    ------
    InputDataError
        If ``xy`` and ``values`` differ in length, contain non-finite numbers, or a parameter
        is out of range.
    """
    interp = IdwInterpolator(xy, values, power=power, neighbours=neighbours, radius=radius,
                             workers=workers)
    return interp(targets, block_size=block_size)


def idw_map(xy: np.ndarray, values: np.ndarray, grid: Grid, *, window: Window | None = None,
            mask: np.ndarray | None = None, power: float = 2.0,
            neighbours: int | None = None, radius: float | None = None,
            workers: int = 1) -> np.ndarray:
    """IDW at the pixel centres of ``grid`` (or of one ``window`` of it).

    Parameters
    ----------
    xy, values : (n, 2), (n,) arrays
        Samples in the grid's CRS (map units) and their finite values.
    grid : Grid
        Target grid.
    window : rasterio Window or None
        Part of the grid to compute; default the whole grid.
    mask : (h, w) bool array or None
        Pixels to compute (others are NaN); default all.
    power, neighbours, radius, workers
        As in :func:`idw`.

    Returns
    -------
    (h, w) float64 array
        NaN where ``mask`` is False or no sample lies within ``radius``.
    """
    interp = IdwInterpolator(xy, values, power=power, neighbours=neighbours, radius=radius,
                             workers=workers)
    return interpolate_window(interp, grid, window, mask)


def interpolate_window(interp: IdwInterpolator, grid: Grid, window: Window | None,
                       mask: np.ndarray | None) -> np.ndarray:
    """Apply a prepared interpolator to the pixel centres of ``window`` where ``mask``."""
    if window is None:
        window = Window(0, 0, grid.width, grid.height)
    shape = (int(window.height), int(window.width))
    out = np.full(shape, np.nan)
    if mask is not None and mask.shape != shape:
        raise InputDataError(f"idw_map: mask shape {mask.shape} differs from window {shape}")
    centres = grid.centres(window)
    if mask is None:
        out.ravel()[:] = interp(centres)
    elif mask.any():
        flat = mask.ravel()
        out.ravel()[flat] = interp(centres[flat])
    return out


__all__ = ["IdwInterpolator", "PreparedSamples", "idw", "idw_map", "interpolate_window",
           "prepare_samples"]
