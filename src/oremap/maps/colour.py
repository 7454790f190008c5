"""The prospectivity colour map (CIELAB, monotone lightness) and the colour ramps' stops."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import ListedColormap, to_hex

__all__ = ["AREA_CLASSES", "AREA_CLASS_COLOURS", "AREA_REST_COLOUR", "PROSPECTIVITY_CMAP",
           "area_percentile", "area_percentile_breaks", "lab_to_srgb", "prospectivity_cmap",
           "ramp", "srgb_to_lab"]


_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_XYZ_TO_RGB = np.array([[3.2404542, -1.5371385, -0.4985314],
                        [-0.9692660, 1.8760108, 0.0415560],
                        [0.0556434, -0.2040259, 1.0572252]])
_RGB_TO_XYZ = np.linalg.inv(_XYZ_TO_RGB)
_DELTA = 6.0 / 29.0

#: CIELAB control points (L*, a*, b*) of the prospectivity colour map: dark blue, teal,
#: green, ochre, orange-red. Lightness rises strictly from 30 to 61.
_CONTROL_LAB = np.array([(30.0, 25.0, -55.0), (41.0, -22.0, -18.0), (51.0, -48.0, 32.0),
                         (57.0, 18.0, 60.0), (61.0, 60.0, 58.0)])


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB (D65) to sRGB, (n, 3) -> (n, 3) in [0, 1]; out-of-gamut values are NOT clipped."""
    lab = np.atleast_2d(np.asarray(lab, dtype=np.float64))
    fy = (lab[:, 0] + 16.0) / 116.0
    f = np.stack([fy + lab[:, 1] / 500.0, fy, fy - lab[:, 2] / 200.0], axis=1)
    xyz = np.where(f > _DELTA, f**3, 3 * _DELTA**2 * (f - 4.0 / 29.0)) * _WHITE_D65
    lin = xyz @ _XYZ_TO_RGB.T
    mag = np.abs(lin)
    enc = np.where(mag <= 0.0031308, 12.92 * mag, 1.055 * mag ** (1 / 2.4) - 0.055)
    return np.sign(lin) * enc


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] to CIELAB (D65), (n, 3) -> (n, 3)."""
    c = np.atleast_2d(np.asarray(rgb, dtype=np.float64))
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = lin @ _RGB_TO_XYZ.T / _WHITE_D65
    f = np.where(xyz > _DELTA**3, np.cbrt(xyz), xyz / (3 * _DELTA**2) + 4.0 / 29.0)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])],
                    axis=1)


def _into_gamut(lab: np.ndarray) -> np.ndarray:
    """Shrink each colour's chroma (keeping L* and hue) until it lies inside sRGB."""
    lo, hi = np.zeros(len(lab)), np.ones(len(lab))
    for _ in range(30):  # bisection on the chroma scale
        mid = (lo + hi) / 2
        rgb = lab_to_srgb(np.column_stack([lab[:, 0], lab[:, 1:] * mid[:, None]]))
        inside = ((rgb >= 0) & (rgb <= 1)).all(axis=1)
        lo, hi = np.where(inside, mid, lo), np.where(inside, hi, mid)
    rgb = lab_to_srgb(lab)
    scale = np.where(((rgb >= 0) & (rgb <= 1)).all(axis=1), 1.0, lo)
    return np.column_stack([lab[:, 0], lab[:, 1:] * scale[:, None]])


def prospectivity_cmap(n: int = 256) -> ListedColormap:
    """Blue (low) - green (medium) - red (high) colour map with monotone lightness.

    He et al. (2024, Figs. 14-16) map low potential blue, medium green and high red, like the
    rainbow/"jet"/"turbo" maps, whose lightness rises and falls and so invents bands and hides
    gradients. This map keeps their hue order but is built in CIELAB: the path runs through
    dark blue, teal, green, ochre and orange-red with lightness L* rising strictly from 30 to
    61, so the map reads correctly in greyscale and the highest values are also the lightest;
    out-of-gamut colours have their chroma reduced at constant L* and hue; the path is then
    resampled so that consecutive colours are equally far apart in CIELAB (constant perceptual
    speed, no flat or jumpy stretches). Red-green colour-blind readers still see the ordering
    through lightness. ``RdYlBu_r`` was rejected because its lightness peaks at the middle
    (yellow), which makes medium values pop out, and it has no green.
    """
    s = np.linspace(0.0, 1.0, 2048)
    t = np.linspace(0.0, 1.0, len(_CONTROL_LAB))
    lab = _into_gamut(np.column_stack([np.interp(s, t, _CONTROL_LAB[:, k]) for k in range(3)]))
    rgb = np.clip(lab_to_srgb(lab), 0.0, 1.0)
    lab = srgb_to_lab(rgb)
    arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(lab, axis=0), axis=1))]
    u = np.linspace(0.0, arc[-1], n)
    even = np.column_stack([np.interp(u, arc, lab[:, k]) for k in range(3)])
    cmap = ListedColormap(np.clip(lab_to_srgb(even), 0.0, 1.0), name="oremap_prospectivity")
    return cmap.with_extremes(bad=(0.85, 0.85, 0.85, 1.0))


PROSPECTIVITY_CMAP: ListedColormap = prospectivity_cmap()


#: Colour ramps: (position in [0, 1], colour) stops. ``probability`` is the report's ramp.
_RAMPS: dict[str, list[tuple[float, str]]] = {}


def _prospectivity_stops(n: int = 11) -> list[tuple[float, str]]:
    return [(i / (n - 1), to_hex(PROSPECTIVITY_CMAP(i / (n - 1)))) for i in range(n)]


def _named_stops(name: str, n: int = 9) -> list[tuple[float, str]]:
    cmap = colormaps[name]
    return [(i / (n - 1), to_hex(cmap(i / (n - 1)))) for i in range(n)]


def ramp(kind: str) -> list[tuple[float, str]]:
    """Stops of the colour ramp of a map kind: probability, uncertainty or evidence."""
    if kind not in _RAMPS:
        _RAMPS[kind] = {"probability": _prospectivity_stops,
                        "uncertainty": lambda: _named_stops("magma_r"),
                        "evidence": lambda: _named_stops("viridis")}[kind]()
    return _RAMPS[kind]


#: The area-percentile classes of a decision map: the top 5, 10 and 20 % of the study area.
AREA_CLASSES: tuple[int, ...] = (5, 10, 20)
#: Their colours, top class first (the rest of the area is drawn light grey).
AREA_CLASS_COLOURS: tuple[str, ...] = ("#b2182b", "#ef8a62", "#fddbc7")
#: The colour of the area below the last class.
AREA_REST_COLOUR = "#e6e6e6"


def area_percentile_breaks(values: np.ndarray,
                           classes: tuple[int, ...] = AREA_CLASSES) -> list[float]:
    """P(ore) thresholds of the area-percentile classes: ``breaks[i]`` is the value at or
    above which the top ``classes[i]`` % of the finite cells (of the study area) lie.

    Breaks never rise with the class (ties make some equal); NaN for an all-NaN map.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return [float("nan")] * len(classes)
    return [float(np.quantile(v, 1.0 - c / 100.0, method="higher")) for c in classes]


def area_percentile(values: np.ndarray, of: np.ndarray) -> np.ndarray:
    """The percentile of the study area each of ``values`` reaches on the map ``of``: the share
    (in %) of the map's finite cells that lie strictly below it (100 = the map's maximum
    or above)."""
    ref = np.sort(np.asarray(of, dtype=np.float64).ravel())
    ref = ref[np.isfinite(ref)]
    v = np.asarray(values, dtype=np.float64)
    if ref.size == 0:
        return np.full(v.shape, np.nan)
    out = 100.0 * np.searchsorted(ref, v, side="left") / ref.size
    return np.where(np.isfinite(v), out, np.nan)
