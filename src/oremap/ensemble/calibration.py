"""Calibration of members' P(ore) on their out-of-fold (held-out) predictions.

A member's probabilities are mapped by a monotone :class:`Calibrator` fitted on labelled
cells it scored while held out: Platt scaling (:func:`fit_platt`), temperature scaling
(:func:`fit_temperature`) or isotonic regression (:func:`fit_isotonic`).
:func:`oremap.ensemble.crossfit.fit_out_of_fold` fits them fold by fold so that no cell's
calibrated score used its own label; :func:`expected_calibration_error` measures the result.
See ``docs/calibration.md``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from oremap.errors import InputDataError, UnknownNameError
from oremap.evaluate.metrics import expected_calibration_error

__all__ = [
    "EPS",
    "METHODS",
    "MIN_PER_CLASS",
    "TEMPERATURE_BOUNDS",
    "Calibrator",
    "expected_calibration_error",
    "fit_calibrator",
    "fit_isotonic",
    "fit_platt",
    "fit_temperature",
]

#: Calibration methods by name: Platt and temperature scaling for networks, either of them or
#: isotonic regression for baselines.
METHODS: tuple[str, ...] = ("platt", "temperature", "isotonic")
#: Probabilities are clipped to [EPS, 1 - EPS] before taking logits.
EPS = 1e-7
#: Bounds of the temperature ``T`` of :func:`fit_temperature`.
TEMPERATURE_BOUNDS: tuple[float, float] = (0.05, 20.0)
#: A calibrator is fitted only on at least this many ore and this many barren cells.
MIN_PER_CLASS = 2


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, EPS, 1.0 - EPS)
    return np.log(q) - np.log1p(-q)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out = np.empty_like(z, dtype=float)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    e = np.exp(z[~pos])
    out[~pos] = e / (1.0 + e)
    return out


@dataclass(frozen=True)
class Calibrator:
    """A monotone non-decreasing map of P(ore) onto [0, 1].

    ``method`` is one of :data:`METHODS` or ``"identity"``; ``params`` holds the fitted values:
    ``a``, ``b`` (Platt: ``sigmoid(a * logit(p) + b)``, ``a >= 0``), ``t`` (temperature:
    ``sigmoid(logit(p) / t)``), ``x``, ``y`` (isotonic: the thresholds, linearly interpolated
    and clipped at the ends, as scikit-learn's ``IsotonicRegression(out_of_bounds="clip")``).
    """

    method: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in (*METHODS, "identity"):
            raise UnknownNameError(f"unknown calibration method {self.method!r}; "
                                   f"choose from {', '.join((*METHODS, 'identity'))}.")

    def apply(self, p: np.ndarray | Sequence[float]) -> np.ndarray:
        """Calibrated P(ore) of ``p`` (same shape; NaN stays NaN; values in [0, 1])."""
        arr = np.asarray(p, dtype=float)
        out = np.full(arr.shape, np.nan)
        ok = np.isfinite(arr)
        x = np.clip(arr[ok], 0.0, 1.0)
        if self.method == "identity":
            y = x
        elif self.method == "platt":
            y = _sigmoid(float(self.params["a"]) * _logit(x) + float(self.params["b"]))
        elif self.method == "temperature":
            y = _sigmoid(_logit(x) / float(self.params["t"]))
        else:
            y = np.interp(x, np.asarray(self.params["x"], dtype=float),
                          np.asarray(self.params["y"], dtype=float))
        out[ok] = np.clip(y, 0.0, 1.0)
        return out

    def to_json(self) -> str:
        """The calibrator as a JSON object ``{"method": ..., "params": {...}}``."""
        return json.dumps({"method": self.method, "params": _plain(self.params)})

    @classmethod
    def from_json(cls, text: str) -> Calibrator:
        """The calibrator written by :meth:`to_json`."""
        d = json.loads(text)
        return cls(method=str(d["method"]), params=dict(d.get("params", {})))


def _plain(params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in params.items():
        if isinstance(v, (np.ndarray, list, tuple)):
            out[k] = [float(x) for x in np.asarray(v, dtype=float)]
        else:
            out[k] = float(v)
    return out


def _checked(y: np.ndarray | Sequence[int], p: np.ndarray | Sequence[float]
             ) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities of the cells with a finite score; raises on bad input."""
    yy = np.asarray(y)
    pp = np.asarray(p, dtype=float)
    if yy.shape != pp.shape or yy.ndim != 1:
        raise InputDataError(f"labels and probabilities must be 1-D of one length; got "
                             f"{yy.shape} and {pp.shape}.")
    ok = np.isfinite(pp)
    yy, pp = yy[ok], pp[ok]
    if not np.isin(yy, (0, 1)).all():
        raise InputDataError("calibration labels must be 0 (barren) or 1 (ore).")
    if ((pp < 0) | (pp > 1)).any():
        raise InputDataError("probabilities to calibrate must lie in [0, 1].")
    n1 = int(yy.sum())
    if n1 < 1 or n1 == yy.size:
        raise InputDataError(f"calibration needs ore and barren cells; got {n1} ore among "
                             f"{yy.size} cells with a score.")
    return yy.astype(float), pp


def fit_platt(y: np.ndarray | Sequence[int], p: np.ndarray | Sequence[float]) -> Calibrator:
    """Platt scaling: ``sigmoid(a * logit(p) + b)`` fitted by maximum likelihood.

    The targets are Platt's (1999) smoothed labels, ``(N+ + 1) / (N+ + 2)`` for ore and
    ``1 / (N- + 2)`` for barren, so that a handful of deposits cannot push the map to 0 or 1
    (a Bayesian prior in place of an L2 penalty). ``a`` is bounded below by 0: the map is
    monotone non-decreasing and a member's ranking is kept (ties aside). NaN scores are ignored.
    """
    yy, pp = _checked(y, p)
    n1 = yy.sum()
    n0 = yy.size - n1
    t = np.where(yy == 1, (n1 + 1) / (n1 + 2), 1.0 / (n0 + 2))
    z = _logit(pp)

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        s = w[0] * z + w[1]
        # log(1 + e^s) - t s, the cross-entropy with soft targets, computed stably
        f = np.logaddexp(0.0, s) - t * s
        g = _sigmoid(s) - t
        return float(f.mean()), np.array([(g * z).mean(), g.mean()])

    res = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B",
                   bounds=[(0.0, None), (None, None)])
    return Calibrator("platt", {"a": float(res.x[0]), "b": float(res.x[1])})


def fit_temperature(y: np.ndarray | Sequence[int], p: np.ndarray | Sequence[float]
                    ) -> Calibrator:
    """Temperature scaling: ``sigmoid(logit(p) / T)``, one parameter.

    ``T`` minimises the log loss on the labels (1-D bounded search over ``log T`` within
    :data:`TEMPERATURE_BOUNDS`); ``T > 1`` softens an overconfident member, ``T < 1`` sharpens
    an underconfident one. 0.5 stays 0.5: it fixes confidence, not a shift of the base rate
    (use Platt for that). NaN scores are ignored.
    """
    yy, pp = _checked(y, p)
    z = _logit(pp)

    def loss(log_t: float) -> float:
        s = z / np.exp(log_t)
        return float((np.logaddexp(0.0, s) - yy * s).mean())

    lo, hi = np.log(TEMPERATURE_BOUNDS[0]), np.log(TEMPERATURE_BOUNDS[1])
    res = minimize_scalar(loss, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
    return Calibrator("temperature", {"t": float(np.exp(res.x))})


def fit_isotonic(y: np.ndarray | Sequence[int], p: np.ndarray | Sequence[float]) -> Calibrator:
    """Isotonic regression of the labels on ``p`` (non-decreasing, in [0, 1], clipped beyond
    the fitted range). Flexible, so it wants many labelled cells; it may tie cells that the
    raw score ranked apart. NaN scores are ignored."""
    # Local import: scikit-learn loads only when a calibrator is fitted.
    from sklearn.isotonic import IsotonicRegression

    yy, pp = _checked(y, p)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    iso.fit(pp, yy)
    return Calibrator("isotonic", {"x": [float(v) for v in iso.X_thresholds_],
                                   "y": [float(v) for v in iso.y_thresholds_]})


_FITTERS = {"platt": fit_platt, "temperature": fit_temperature, "isotonic": fit_isotonic}


def fit_calibrator(y: np.ndarray | Sequence[int], p: np.ndarray | Sequence[float],
                   method: str) -> Calibrator:
    """The calibrator of ``method`` (one of :data:`METHODS`) fitted on ``(y, p)``."""
    if method not in _FITTERS:
        raise UnknownNameError(f"unknown calibration method {method!r}; "
                               f"choose from {', '.join(METHODS)}.")
    return _FITTERS[method](y, p)
