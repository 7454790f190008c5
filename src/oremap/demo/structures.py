"""The demo's hidden geology in local metres: strike frame, traces, structures, fertility."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from scipy import ndimage

from oremap.demo.area import _CENTRE, _CORNER_U, _CORNER_V, _HEIGHT, _WIDTH

__all__: list[str] = []


@dataclass(frozen=True)
class _Frame:
    """Rotation between local (u, v) and strike-aligned (s, t) coordinates."""

    strike_deg: float  # angle of the strike from east, counter-clockwise

    def to_st(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, s = math.cos(math.radians(self.strike_deg)), math.sin(math.radians(self.strike_deg))
        du, dv = np.asarray(u) - _CENTRE[0], np.asarray(v) - _CENTRE[1]
        return du * c + dv * s, -du * s + dv * c

    def to_uv(self, s: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, n = math.cos(math.radians(self.strike_deg)), math.sin(math.radians(self.strike_deg))
        s, t = np.asarray(s), np.asarray(t)
        return _CENTRE[0] + s * c - t * n, _CENTRE[1] + s * n + t * c


@dataclass(frozen=True)
class _Curve:
    """A structure trace ``t = offset + slope * s + amp * sin(2 pi s / wavelength + phase)``."""

    offset: float
    slope: float
    amp: float
    wavelength: float
    phase: float
    s0: float
    s1: float

    def t(self, s: np.ndarray) -> np.ndarray:
        s = np.asarray(s, dtype=float)
        return (self.offset + self.slope * s
                + self.amp * np.sin(2 * np.pi * s / self.wavelength + self.phase))

    def distance(self, s: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Approximate distance (m) of points to the trace; exact at the two ends."""
        sc = np.clip(s, self.s0, self.s1)
        return np.hypot(s - sc, t - self.t(sc))

    def line(self, frame: _Frame, step: float = 10.0) -> shapely.LineString:
        s = np.linspace(self.s0, self.s1, max(2, int((self.s1 - self.s0) / step) + 1))
        return shapely.LineString(np.column_stack(frame.to_uv(s, self.t(s))))

    def lens(self, frame: _Frame, s0: float, s1: float, width: float, *, shift: float = 0.0,
             taper: float = 0.6, n: int = 24) -> shapely.Polygon:
        """A lens-shaped polygon along the trace between ``s0`` and ``s1``, ``width`` m wide."""
        s = np.linspace(s0, s1, n)
        half = 0.5 * width * np.sin(np.pi * np.linspace(0, 1, n)) ** taper
        t = self.t(s) + shift
        left = np.column_stack(frame.to_uv(s, t + half))
        right = np.column_stack(frame.to_uv(s, t - half))[::-1]
        return shapely.Polygon(np.vstack([left, right[1:-1]]))

    def band(self, frame: _Frame, width: float, step: float = 10.0) -> shapely.Polygon:
        """A band of constant ``width`` m along the whole trace."""
        s = np.linspace(self.s0, self.s1, max(2, int((self.s1 - self.s0) / step) + 1))
        t = self.t(s)
        left = np.column_stack(frame.to_uv(s, t + width / 2))
        right = np.column_stack(frame.to_uv(s, t - width / 2))[::-1]
        return shapely.Polygon(np.vstack([left, right]))


def _extent_local() -> shapely.Polygon:
    """The mapped area: the study rectangle without the blank lower-left corner (local m)."""
    return shapely.Polygon([(_CORNER_U, 0), (_WIDTH, 0), (_WIDTH, _HEIGHT), (0, _HEIGHT),
                            (0, _CORNER_V)])


def _corner_distance(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance (m) from the corner's diagonal edge, > 0 on the mapped side."""
    norm = math.hypot(1 / _CORNER_U, 1 / _CORNER_V)
    return (np.asarray(u) / _CORNER_U + np.asarray(v) / _CORNER_V - 1) / norm


@dataclass
class _Structures:
    frame: _Frame
    main: _Curve
    second: _Curve
    secondary: dict[str, _Curve]
    cross: list[shapely.LineString]
    main_shoots: np.ndarray  # (k, 2): along-strike centre s, spread sigma (m)
    known: np.ndarray  # (k,) bool: the shoot holds a discovered orebody
    fault_shoot: tuple[str, float, float]  # secondary fault name, s, sigma
    noise: np.ndarray  # (rows, cols) smooth N(0, 1) field on a 10 m lattice
    sandstone: list  # metamorphic quartz-sandstone lenses (polygons)


def _structures(rng: np.random.Generator) -> _Structures:
    """Draw the shear zones, faults and ore shoots (all in local metres)."""
    frame = _Frame(strike_deg=18.0 + rng.uniform(-2.0, 2.0))
    main = _Curve(rng.uniform(-8, 8), 0.0, rng.uniform(4, 7), rng.uniform(260, 360),
                  rng.uniform(0, 2 * np.pi), -480, 480)
    second = _Curve(-150 + rng.uniform(-10, 10), rng.uniform(-0.03, 0.03), rng.uniform(3, 6),
                    rng.uniform(200, 300), rng.uniform(0, 2 * np.pi), -480, 480)
    f1_off = main.offset + rng.uniform(28, 38)
    f2_off = main.offset - rng.uniform(26, 34)
    s_splay = rng.uniform(-260, -220)
    secondary = {
        "F1": _Curve(f1_off, 0.0, rng.uniform(2, 4), 240, rng.uniform(0, 2 * np.pi),
                     rng.uniform(-170, -130), rng.uniform(170, 230)),
        "F2": _Curve(f2_off, 0.0, rng.uniform(2, 4), 260, rng.uniform(0, 2 * np.pi),
                     rng.uniform(-30, 10), rng.uniform(400, 460)),
        "F3": _Curve(main.t(s_splay) - 0.16 * s_splay, 0.16, 0.0, 100, 0.0, s_splay,
                     s_splay + rng.uniform(170, 210)),
    }
    cross = []
    for u0 in (170.0, 470.0, 690.0):
        az = math.radians(-20 + rng.uniform(-6, 6))
        u_c = u0 + rng.uniform(-25, 25)
        d = np.array([math.sin(az), math.cos(az)]) * 260
        cross.append(shapely.LineString([(u_c - d[0], _CENTRE[1] - d[1]),
                                         (u_c + d[0], _CENTRE[1] + d[1])]))
    # five ore shoots along the main shear zone, one per 132 m bin of its mapped length
    edges = np.linspace(-235, 425, 6)
    centres = 0.5 * (edges[:-1] + edges[1:]) + rng.uniform(-18, 18, 5)
    shoots = np.column_stack([centres, rng.uniform(34, 46, 5)])
    known = np.zeros(5, dtype=bool)
    known[rng.choice(5, size=3, replace=False)] = True
    f2 = secondary["F2"]
    fault_shoot = ("F2", rng.uniform(f2.s0 + 120, f2.s1 - 60), rng.uniform(28, 36))
    coarse = rng.standard_normal((int(_HEIGHT // 10) + 3, int(_WIDTH // 10) + 3))
    noise = ndimage.gaussian_filter(coarse, 1.8, mode="reflect")
    noise /= noise.std()
    return _Structures(frame, main, second, secondary, cross, shoots, known, fault_shoot, noise,
                       _sandstone(frame, main, rng))


def _fertility(st: _Structures, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The hidden fertility in [0, 1] at local points ``(u, v)`` (m), shape of ``u``."""
    s, t = st.frame.to_st(u, v)
    shoot = np.zeros_like(s)
    for centre, sigma in st.main_shoots:
        shoot = np.maximum(shoot, np.exp(-(((s - centre) / sigma) ** 2)))
    main = (0.18 + 0.82 * shoot) * np.exp(-((st.main.distance(s, t) / 19.0) ** 2))
    name, centre, sigma = st.fault_shoot
    fault_mod = 0.15 + 0.85 * np.exp(-(((s - centre) / sigma) ** 2))
    fault = fault_mod * np.exp(-((st.secondary[name].distance(s, t) / 9.0) ** 2))
    others = sum(0.3 * np.exp(-((c.distance(s, t) / 8.0) ** 2))
                 for key, c in st.secondary.items() if key != name)
    second = 0.25 * np.exp(-((st.second.distance(s, t) / 14.0) ** 2))
    noise = ndimage.map_coordinates(st.noise, [np.asarray(v) / 10.0 + 1, np.asarray(u) / 10.0
                                               + 1], order=1, mode="nearest")
    raw = 0.07 + main + 0.9 * fault + others + second + 0.06 * noise
    return np.clip(raw, 0.0, 1.0)


def _sandstone(frame: _Frame, main: _Curve, rng: np.random.Generator) -> list:
    """Three ENE metamorphic quartz-sandstone lenses beside the main shear zone (local m)."""
    draws = rng.uniform(0, 1, 8)
    a = _Curve(main.offset + 60 + 15 * draws[0], 0.02, 5, 300, 6 * draws[1], -470, 60)
    b = _Curve(main.offset - 95 + 10 * draws[2], -0.01, 4, 260, 6 * draws[3], -120, 470)
    c = _Curve(main.offset + 110 + 10 * draws[4], 0.0, 6, 320, 6 * draws[5], 120, 470)
    return [a.lens(frame, a.s0, a.s1, 38 + 10 * draws[6], taper=0.3, n=40),
            b.lens(frame, b.s0, b.s1, 30 + 10 * draws[7], taper=0.3, n=40),
            c.lens(frame, c.s0, c.s1, 26, taper=0.3, n=30)]
