"""Inverse-distance interpolation of geochemical assays (gstat ``idw`` semantics)."""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from rasterio.windows import Window
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

from oremap.errors import DroppedDataWarning, InputDataError
from oremap.grid import Grid
from oremap.limits import available_cores

log = logging.getLogger("oremap.evidence")

#: (target, sample) pairs per block: all-samples blocks stay in the CPU cache (2 MB of
#: float64, several times faster than larger blocks); k-nearest blocks amortise the tree calls.
_DENSE_PAIRS = 1 << 18
_KNN_PAIRS = 1 << 20

#: Ways of replacing a below-detection assay ``<x``: x / 2, x, or dropping the sample.
CENSORED_MODES: tuple[str, ...] = ("half", "limit", "drop")
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
#: A censored assay: ``<x`` (below detection) or ``>x`` (over range), x a dot-decimal >= 0.
_CENSORED = re.compile(rf"^\s*([<>])\s*({_NUMBER})\s*$")


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
        Rows dropped because the assay was missing, non-numeric or not finite (or below
        detection, with ``censored = "drop"``).
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


def parse_censored(values: np.ndarray, mode: str = "half", *, source: str = "samples",
                   warn: bool = True) -> np.ndarray:
    """Assays as numbers, with censored entries such as ``<0.5`` replaced by a substitute.

    A below-detection entry ``<x`` (``< x`` too; dot decimals, optional exponent) becomes
    ``x / 2`` with ``mode`` "half", ``x`` with "limit", and NaN with "drop". An over-range
    entry ``>x`` becomes ``x`` whatever the mode. Numbers and numeric strings pass through;
    anything else (text, ``<0,5``, missing) becomes NaN. One :class:`DroppedDataWarning`
    gives the counts of censored entries and what was done with them.

    Parameters
    ----------
    values : (n,) array
        Assays: numbers and/or strings.
    mode : {"half", "limit", "drop"}
        Substitute for below-detection entries.
    source : str
        Names the file and column, used in the message.
    warn : bool
        Emit the warning (False: counts are not reported, e.g. when hashing).

    Returns
    -------
    (n,) float64 array

    Raises
    ------
    InputDataError
        If ``mode`` is not one of :data:`CENSORED_MODES`.
    """
    numbers, below, above = _censored_entries(values)
    return _substitute(numbers, below, above, mode, source, warn=warn, stacklevel=3)


def _censored_entries(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(numbers, below, above)``: x in place of ``<x`` / ``>x``, and masks of those entries."""
    raw = np.asarray(values)
    series = pd.Series(raw.ravel())
    below = np.zeros(len(series), dtype=bool)
    above = np.zeros(len(series), dtype=bool)
    numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, copy=True)
    if raw.dtype.kind in "OSU":
        for i in np.flatnonzero(np.isnan(numbers)):  # '<x' and '>x' are not numbers
            v = series.iloc[i]
            if isinstance(v, str) and (m := _CENSORED.match(v)):
                numbers[i] = float(m.group(2))
                below[i], above[i] = m.group(1) == "<", m.group(1) == ">"
    return numbers.reshape(raw.shape), below.reshape(raw.shape), above.reshape(raw.shape)


def _substitute(numbers: np.ndarray, below: np.ndarray, above: np.ndarray, mode: str,
                source: str, *, warn: bool, stacklevel: int) -> np.ndarray:
    """Apply ``mode`` to the below-detection entries of ``numbers`` (a copy), with a warning."""
    if mode not in CENSORED_MODES:
        raise InputDataError(f"{source}: censored must be one of {list(CENSORED_MODES)}, got "
                             f"{mode!r}")
    out = numbers.copy()
    n_below, n_above = int(below.sum()), int(above.sum())
    if mode == "half":
        out[below] = numbers[below] / 2
    elif mode == "drop":
        out[below] = np.nan
    if warn and (n_below or n_above):
        done = {"half": "replaced by half the detection limit (x / 2)",
                "limit": "replaced by the detection limit (x)",
                "drop": "dropped"}[mode]
        parts = []
        if n_below:
            parts.append(f"{n_below} below-detection assay(s) '<x' {done} (censored = {mode!r})")
        if n_above:
            parts.append(f"{n_above} over-range assay(s) '>x' kept at x")
        warnings.warn(f"{source}: " + "; ".join(parts), DroppedDataWarning,
                      stacklevel=stacklevel)
    return out


def prepare_samples(xy: np.ndarray, values: np.ndarray, *, source: str = "samples",
                    log10: bool = False, clip_percentile: float | None = None,
                    censored: str = "half") -> PreparedSamples:
    """Drop unusable assays, clip, log-transform and merge duplicate locations.

    The steps, in order: censored assays (``<x`` below detection, ``>x`` over range) are
    replaced as ``censored`` says (:func:`parse_censored`, counted in a warning);
    non-numeric, NaN or infinite assays are dropped (counted in a
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
    censored : {"half", "limit", "drop"}
        Substitute for a below-detection assay ``<x``: ``x / 2``, ``x``, or drop the sample.

    Returns
    -------
    PreparedSamples

    Raises
    ------
    InputDataError
        If the shapes disagree, coordinates are not finite, no assay is usable, a value is
        <= 0 with ``log10``, ``clip_percentile`` is outside (0, 100] or ``censored`` is not
        one of the modes.
    """
    xy = _as_xy(xy, f"{source}: sample coordinates")
    raw = np.asarray(values)
    if raw.ndim != 1 or len(raw) != len(xy):
        raise InputDataError(
            f"{source}: {len(xy)} sample locations but values of shape {raw.shape}; both must "
            "come from the same table rows.")
    numbers, below, above = _censored_entries(raw)
    numeric = _substitute(numbers, below, above, censored, source, warn=True, stacklevel=3)
    non_numeric = int((pd.isna(numeric) & ~pd.isna(pd.Series(raw)).to_numpy()).sum())
    keep = np.isfinite(numeric)
    n_bad = int((~keep).sum())
    if not keep.any():
        raise InputDataError(
            f"{source}: none of the {len(raw)} assays is a finite number; check the column "
            "name and the file's missing-value codes.")
    if n_bad:
        n_censored = int(below.sum()) if censored == "drop" else 0
        of_which = f", {n_censored} of them below detection" if n_censored else ""
        warnings.warn(
            f"{source}: dropped {n_bad} of {len(raw)} samples with missing or non-finite assays "
            f"({non_numeric} non-numeric{of_which})", DroppedDataWarning, stacklevel=2)
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
        Threads (-1: every core this process may use): blocks of targets are interpolated in
        that many threads; the result does not depend on it.

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
        check_idw_parameters(power, neighbours, radius, what="idw")
        self.power = float(power)
        n = len(self.xy)
        self.k = None if neighbours is None or neighbours >= n else int(neighbours)
        self.radius = None if radius is None else float(radius)
        self.workers = workers
        self.tree = cKDTree(self.xy) if (self.k or self.radius) else None
        self._z1 = np.column_stack([self.values, np.ones(n)])
        self._zext = np.append(self.values, 0.0)

    def __call__(self, targets: np.ndarray, *, block_size: int | None = None) -> np.ndarray:
        """Interpolate at ``targets`` ((m, 2) map units); returns (m,) float64, NaN = no data."""
        targets = _as_xy(targets, "idw: targets")
        out = np.empty(len(targets), dtype=np.float64)
        if self.tree is None:
            step = block_size or max(1, _DENSE_PAIRS // len(self.xy))
        else:
            step = block_size or max(1, _KNN_PAIRS // (self.k or 16))
        threads = _threads(self.workers)
        starts = range(0, len(targets), step)  # the same blocks whatever the thread count
        from threadpoolctl import threadpool_limits

        # One BLAS thread: a block's weighted sums (a matrix product) then add in one order
        # whatever the machine, so the result does not depend on the cores or the threads.
        with threadpool_limits(1, user_api="blas"):
            if threads == 1 or len(starts) == 1:
                for start in starts:
                    out[start:start + step] = self._block(targets[start:start + step])
                return out
            # Blocks in threads (the distance kernels, ufuncs and BLAS release the GIL), each
            # computed as by one thread; a single block uses the threads in its k-d tree query.
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=threads) as pool:
                parts = pool.map(lambda a: self._block(targets[a:a + step], workers=1), starts)
                for start, part in zip(starts, parts):
                    out[start:start + step] = part
        return out

    def _block(self, t: np.ndarray, workers: int | None = None) -> np.ndarray:
        workers = self.workers if workers is None else workers
        if self.tree is None:
            d2 = cdist(t, self.xy, "sqeuclidean")
            return self._combine(d2, None)
        if self.k is not None:
            bound = np.inf if self.radius is None else _inclusive(self.radius)
            d, idx = self.tree.query(t, k=self.k, distance_upper_bound=bound,
                                     workers=workers)
            if self.k == 1:
                d, idx = d[:, None], idx[:, None]
            d2 = d * d
            if self.radius is not None:  # exact d^2 <= r^2 test, as gstat's
                found = idx < len(self.xy)
                exact = ((t[:, None, :] - self.xy[np.where(found, idx, 0)]) ** 2).sum(axis=2)
                d2 = np.where(found & (exact <= self.radius**2), exact, np.inf)
            return self._combine(d2, idx)
        counts = self.tree.query_ball_point(t, _inclusive(self.radius), return_length=True,
                                            workers=workers)
        ends = np.cumsum(counts)
        out = np.empty(len(t))
        start = 0
        while start < len(t):  # sub-blocks of about _KNN_PAIRS pairs: bounded memory
            base = ends[start - 1] if start else 0
            stop = max(start + 1, int(np.searchsorted(ends, base + _KNN_PAIRS, side="right")))
            out[start:stop] = self._within_radius(t[start:stop])
            start = stop
        return out

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
        zero = d2 == 0.0
        w = _scaled_weights(d2.copy(), d2min[ti], self.power)
        wsum = np.bincount(ti, weights=w, minlength=m)
        zsum = np.bincount(ti, weights=w * self.values[si], minlength=m)
        has = wsum > 0
        with np.errstate(invalid="ignore"):
            out[has] = zsum[has] / wsum[has]
        if zero.any():  # first zero-distance sample in sample order, as gstat's data order
            zt, zs = ti[zero], si[zero]
            order = np.lexsort((zs, zt))
            first = np.r_[True, zt[order][1:] != zt[order][:-1]]
            out[zt[order][first]] = self.values[zs[order][first]]
        return out

    def _combine(self, d2: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
        """Weighted means over the rows of ``d2`` (m, k), overwritten with the weights.

        ``idx`` (m, k) gives the sample of each entry (``n`` where the tree found none, with
        ``d2`` inf); None means the columns are all samples in order.
        """
        d2min = d2.min(axis=1)
        rows = np.flatnonzero(d2min == 0.0)
        first = np.argmax(d2[rows] == 0.0, axis=1)
        w = _scaled_weights(d2, d2min[:, None], self.power)
        with np.errstate(invalid="ignore", divide="ignore"):
            if idx is None:
                sums = w @ self._z1
                est = sums[:, 0] / sums[:, 1]
            else:
                est = np.einsum("ij,ij->i", w, self._zext[idx]) / w.sum(axis=1)
        est[rows] = self.values[first] if idx is None else self._zext[idx[rows, first]]
        est[~np.isfinite(d2min)] = np.nan
        return est


def _threads(workers: int) -> int:
    """Threads for ``workers`` (-1: every core this process may use; at least 1)."""
    if workers == -1 or workers is None:

        return available_cores()
    return max(1, int(workers))


def _scaled_weights(d2: np.ndarray, d2min: np.ndarray, power: float) -> np.ndarray:
    """``(d2min / d2) ** (power / 2)`` in place of ``d2``: 1 / d^power scaled so the nearest
    sample's weight is 1 (no overflow or underflow at large powers); inf distances weigh 0.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        if power == 0.0:
            d2[...] = np.isfinite(d2)
            return d2
        scale = np.where((d2min > 0) & np.isfinite(d2min), d2min, 1.0)
        np.divide(scale, d2, out=d2)
        if power != 2.0:
            np.power(d2, 0.5 * power, out=d2)
    return d2


def check_idw_parameters(power: float, neighbours: int | None, radius: float | None, *,
                         what: str = "idw") -> None:
    """Raise InputDataError unless power >= 0, neighbours >= 1 (or None), radius > 0 (or None).

    ``what`` names the layer's source in the message.
    """
    if not (isinstance(power, (int, float)) and np.isfinite(power) and power >= 0):
        raise InputDataError(f"{what}: power must be a finite number >= 0, got {power!r}")
    if neighbours is not None and (isinstance(neighbours, bool) or int(neighbours) != neighbours
                                   or neighbours < 1):
        raise InputDataError(f"{what}: neighbours must be an integer >= 1 or None, "
                             f"got {neighbours!r}")
    if radius is not None and not (np.isfinite(radius) and radius > 0):
        raise InputDataError(f"{what}: radius must be > 0 map units or None, got {radius!r}")


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
        Targets per block; by default about 262,144 (target, sample) pairs with all
        samples, about a million otherwise (memory stays bounded whatever ``m``).
    workers : int
        Threads (-1: every core the process may use); results do not depend on it.

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


__all__ = ["CENSORED_MODES", "IdwInterpolator", "PreparedSamples", "check_idw_parameters", "idw",
           "idw_map", "interpolate_window", "parse_censored", "prepare_samples"]
