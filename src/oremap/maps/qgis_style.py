"""QGIS layer styles: raster ``<pipe>`` elements, ``.qml`` files and vector renderers/labels.

Probability maps use the prospectivity ramp stretched to each map's own finite min..max (the
legend says so); uncertainty maps a fixed range (``rank``: 0-50 percentile points); evidence
layers their 2nd-98th percentile; the recommended map the area-percentile classes of
:mod:`oremap.maps.colour` (top 5 / 10 / 20 % of the study area, the rest grey).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio

from oremap import io
from oremap.maps.colour import (
    AREA_CLASS_COLOURS,
    AREA_CLASSES,
    AREA_REST_COLOUR,
    area_percentile_breaks,
    ramp,
)

__all__ = [
    "FIXED_RANGES",
    "QGIS_VERSION",
    "UNCERTAINTY_KINDS",
    "area_class_pipe",
    "finite_values",
    "label_xml",
    "raster_pipe",
    "raster_qml",
    "style_kind_of",
    "vector_renderer",
    "write_style",
]

#: QGIS version written in the files (the format of QGIS 3.22 LTR and later).
QGIS_VERSION = "3.22.16-Białowieża"

#: Value ranges of the map kinds with a fixed scale: ``std`` (probability std), ``entropy``
#: (vote entropy, bits) and ``rank`` (std of the area percentile over members, in percentile
#: points, 0-50).
FIXED_RANGES: dict[str, tuple[float, float]] = {
    "entropy": (0.0, 1.0), "std": (0.0, 0.5), "rank": (0.0, 50.0)}

_HEAD = ('<provider><resampling enabled="false" maxOversampling="2" '
         'zoomedInResamplingMethod="nearestNeighbour" '
         'zoomedOutResamplingMethod="nearestNeighbour"/></provider>')
_MINMAX = ("<minMaxOrigin><limits>None</limits><extent>WholeRaster</extent>"
           "<statAccuracy>Estimated</statAccuracy><cumulativeCutLower>0.02</cumulativeCutLower>"
           "<cumulativeCutUpper>0.98</cumulativeCutUpper><stdDevFactor>2</stdDevFactor>"
           "</minMaxOrigin>")
_TAIL = ('<brightnesscontrast brightness="0" contrast="0" gamma="1"/>\n'
         '{i}  <huesaturation saturation="0" grayscaleMode="0" colorizeOn="0" colorizeRed="255" '
         'colorizeGreen="128" colorizeBlue="128" colorizeStrength="100"/>\n'
         '{i}  <rasterresampler maxOversample="2"/>')


def _attr(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _pipe(shader: str, vmin: float, vmax: float, indent: str) -> str:
    i = indent
    return (f"{i}<pipe>\n{i}  {_HEAD}\n"
            f'{i}  <rasterrenderer type="singlebandpseudocolor" band="1" opacity="1" '
            f'alphaBand="-1" nodataColor="" classificationMin="{vmin!r}" '
            f'classificationMax="{vmax!r}">\n'
            f"{i}    <rasterTransparency/>\n{i}    {_MINMAX}\n"
            f"{i}    <rastershader>\n{shader}\n{i}    </rastershader>\n"
            f"{i}  </rasterrenderer>\n{i}  {_TAIL.format(i=i)}\n{i}</pipe>")


def raster_pipe(kind: str, vmin: float, vmax: float, *, indent: str = "  ",
                legend: tuple[str, str] | None = None) -> str:
    """The ``<pipe>`` of a single-band pseudocolour style: the ``kind`` ramp (probability,
    uncertainty or evidence; see :func:`oremap.maps.colour.ramp`) interpolated from ``vmin``
    to ``vmax``. ``legend``: the legend's texts at the two ends (default: the values)."""
    if not (np.isfinite(vmin) and np.isfinite(vmax)) or vmax <= vmin:
        vmin, vmax = (0.0, 1.0) if not np.isfinite(vmin) else (vmin, vmin + 1.0)
    vmin, vmax = float(vmin), float(vmax)
    lo, hi = legend or (f"{vmin:.3g}", f"{vmax:.3g}")
    stops = ramp(kind)
    items = []
    for k, (t, color) in enumerate(stops):
        value = vmin + t * (vmax - vmin)
        label = lo if k == 0 else hi if k == len(stops) - 1 else f"{value:.3g}"
        items.append(f'{indent}        <item alpha="255" value="{value!r}" '
                     f'label="{_attr(label)}" color="{color}"/>')
    shader = (f'{indent}      <colorrampshader colorRampType="INTERPOLATED" '
              f'classificationMode="1" clip="0" minimumValue="{vmin!r}" '
              f'maximumValue="{vmax!r}" labelPrecision="3">\n' + "\n".join(items) + "\n"
              f'{indent}        <rampLegendSettings useContinuousLegend="1" '
              f'minimumLabel="{_attr(lo)}" maximumLabel="{_attr(hi)}" prefix="" suffix="" '
              f'direction="0" orientation="2"/>\n'
              f"{indent}      </colorrampshader>")
    return _pipe(shader, vmin, vmax, indent)


def area_class_pipe(values: np.ndarray, *, indent: str = "  ",
                    classes: Sequence[int] = AREA_CLASSES,
                    colours: Sequence[str] = AREA_CLASS_COLOURS) -> str:
    """The ``<pipe>`` of a decision map: discrete classes of the top ``classes`` % of the
    study area (the finite cells of ``values``, in the raster's own dtype), at the breaks of
    :func:`oremap.maps.colour.area_percentile_breaks`, the rest drawn grey.

    QGIS gives a pixel the colour of the first class whose upper bound it does not exceed,
    so each bound is the largest value of the raster's dtype below the next break: a pixel
    at a break (``value >= break``) joins the higher class, as in the report.
    """
    v = np.asarray(values)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return raster_pipe("probability", 0.0, 1.0, indent=indent)
    dtype = v.dtype if np.issubdtype(v.dtype, np.floating) else np.dtype(np.float64)
    breaks = area_percentile_breaks(v, tuple(classes))

    def below(b: float) -> float:
        return float(np.nextafter(dtype.type(b), dtype.type(-np.inf)))

    items = [(below(breaks[-1]), AREA_REST_COLOUR, f"rest of area (< {breaks[-1]:.3g})")]
    for k in range(len(classes) - 1, 0, -1):
        items.append((below(breaks[k - 1]), colours[k],
                      f"top {classes[k]} % of area (\u2265 {breaks[k]:.3g})"))
    items.append((math.inf, colours[0], f"top {classes[0]} % of area (\u2265 {breaks[0]:.3g})"))
    lines = "\n".join(f'{indent}        <item alpha="255" value="{value!r}" '
                      f'label="{_attr(label)}" color="{color}"/>' for value, color, label in items)
    vmin, vmax = float(v.min()), float(v.max())
    shader = (f'{indent}      <colorrampshader colorRampType="DISCRETE" classificationMode="1" '
              f'clip="0" minimumValue="{vmin!r}" maximumValue="{vmax!r}" labelPrecision="3">\n'
              f"{lines}\n"
              f'{indent}        <rampLegendSettings useContinuousLegend="0" minimumLabel="" '
              f'maximumLabel="" prefix="" suffix="" direction="0" orientation="2"/>\n'
              f"{indent}      </colorrampshader>")
    return _pipe(shader, vmin, vmax, indent)


def raster_qml(kind: str, vmin: float, vmax: float, *,
               legend: tuple[str, str] | None = None) -> str:
    """A QGIS layer style file (``.qml``) for one map kind."""
    return _qml(raster_pipe(kind, vmin, vmax, legend=legend))


def _qml(pipe: str) -> str:
    return (f"<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
            f'<qgis version="{QGIS_VERSION}" styleCategories="Symbology">\n'
            f"{pipe}\n  <blendMode>0</blendMode>\n</qgis>\n")


#: The style kind of each uncertainty map (by file stem): the std over members (or seeds) of
#: each cell's area percentile (``rank``, 0-50 percentile points), the probability std and
#: the vote entropy.
UNCERTAINTY_KINDS: dict[str, str] = {
    "uncertainty_rank": "rank", "uncertainty_seed": "rank", "uncertainty_std": "std",
    "uncertainty_entropy": "entropy"}


def style_kind_of(name: str) -> str:
    """The style kind of a map by its file stem: that of :data:`UNCERTAINTY_KINDS`, anything
    else ``probability``."""
    return UNCERTAINTY_KINDS.get(name, "probability")


def write_style(tif: Path, kind: str, *, vmin: float | None = None,
                vmax: float | None = None, out: Path | None = None) -> Path:
    """Write ``<tif stem>.qml`` beside a GeoTIFF (QGIS applies it when the file is opened),
    or to ``out``.

    ``kind``: ``probability`` (also vote shares: the prospectivity ramp from the map's own
    finite minimum to its maximum, the legend saying so), ``std``, ``entropy``, ``rank``
    (fixed ranges, :data:`FIXED_RANGES`), ``evidence`` (the 2nd to the 98th percentile of
    the valid values) or ``area_classes`` (:func:`area_class_pipe`); ``vmin``/``vmax``
    override the range of the ramps.
    """
    if kind == "area_classes":
        return io.write_text(out or tif.with_suffix(".qml"), _qml(area_class_pipe(
            finite_values(tif))))
    legend = None
    if kind in FIXED_RANGES:
        lo, hi = FIXED_RANGES[kind]
        ramp_kind = "uncertainty"
    else:
        valid = finite_values(tif)
        if kind == "probability":
            lo, hi = (valid.min(), valid.max()) if valid.size else (0.0, 1.0)
            ramp_kind, ends = "probability", ("this map's min", "this map's max")
        else:
            lo, hi = np.percentile(valid, [2, 98]) if valid.size else (0.0, 1.0)
            ramp_kind, ends = "evidence", ("2nd percentile", "98th percentile")
        if vmin is None and vmax is None and valid.size:
            legend = (f"{float(lo):.3g} ({ends[0]})", f"{float(hi):.3g} ({ends[1]})")
    lo = float(lo if vmin is None else vmin)
    hi = float(hi if vmax is None else vmax)
    return io.write_text(out or tif.with_suffix(".qml"),
                         raster_qml(ramp_kind, lo, hi, legend=legend))


def finite_values(tif: Path, *, max_pixels: float = 2e7) -> np.ndarray:
    """The finite, valid values of band 1 of a GeoTIFF in its own dtype: every pixel up to
    ``max_pixels``, beyond that a decimated read (overviews): bounded memory for paper-scale
    layers, enough for percentiles."""
    with rasterio.open(tif) as src:
        factor = max(1, math.ceil(math.sqrt(src.width * src.height / max_pixels)))
        shape = (max(1, src.height // factor), max(1, src.width // factor))
        band = src.read(1, out_shape=shape, masked=True)
    values = band.compressed()
    if np.issubdtype(values.dtype, np.floating):
        return values[np.isfinite(values)]
    return values.astype(np.float64)


# --------------------------------------------------------------------------- vectors


def vector_renderer(geometry: str, fill: str, outline: str, *, width: float = 0.5,
                    marker: str = "star", size: float = 3.0) -> str:
    """A single-symbol renderer for polygons (``fill`` may be 'none'), lines or points."""
    if geometry == "point":
        layer = (f'<layer class="SimpleMarker" enabled="1" locked="0" pass="0">'
                 f'<prop k="name" v="{marker}"/><prop k="color" v="{fill}"/>'
                 f'<prop k="outline_color" v="{outline}"/><prop k="size" v="{size}"/></layer>')
        symbol_type = "marker"
    elif geometry == "line":
        layer = (f'<layer class="SimpleLine" enabled="1" locked="0" pass="0">'
                 f'<prop k="line_color" v="{outline}"/><prop k="line_width" v="{width}"/>'
                 "</layer>")
        symbol_type = "line"
    else:
        style = "no" if fill == "none" else "solid"
        layer = (f'<layer class="SimpleFill" enabled="1" locked="0" pass="0">'
                 f'<prop k="color" v="{fill if fill != "none" else "0,0,0,0"}"/>'
                 f'<prop k="style" v="{style}"/><prop k="outline_color" v="{outline}"/>'
                 f'<prop k="outline_width" v="{width}"/></layer>')
        symbol_type = "fill"
    return (f'<renderer-v2 type="singleSymbol" forceraster="0" symbollevels="0" '
            f'enableorderby="0"><symbols><symbol type="{symbol_type}" name="0" alpha="1" '
            f'clip_to_extent="1">{layer}</symbol></symbols></renderer-v2>')


def label_xml(field: str, *, color: str = "0,0,0,255", size: float = 11.0) -> str:
    """Simple labels from the attribute ``field``, bold, with a white halo, over each
    feature's centre (the layer also needs ``labelsEnabled="1"``)."""
    return (
        '<labeling type="simple"><settings calloutType="simple">'
        f'<text-style fieldName={_quoted(field)} isExpression="0" fontFamily="Sans Serif" '
        f'namedStyle="Bold" fontWeight="75" fontSize="{size}" fontSizeUnit="Point" '
        f'textColor="{color}" textOpacity="1" fontItalic="0" fontUnderline="0" '
        'fontStrikeout="0" capitalization="0" multilineHeight="1" blendMode="0" '
        'allowHtml="0" previewBkgrdColor="255,255,255,255">'
        '<text-buffer bufferDraw="1" bufferSize="1" bufferSizeUnits="MM" '
        'bufferColor="255,255,255,255" bufferOpacity="1" bufferNoFill="1" '
        'bufferJoinStyle="128" bufferBlendMode="0"/></text-style>'
        '<text-format multilineAlign="3" wrapChar="" autoWrapLength="0" formatNumbers="0" '
        'decimals="3" plussign="0" addDirectionSymbol="0"/>'
        '<placement placement="1" placementFlags="10" polygonPlacementFlags="2" '
        'centroidWhole="0" centroidInside="1" fitInPolygonOnly="0" dist="0" '
        'priority="5" quadOffset="4" xOffset="0" yOffset="0" offsetType="0"/>'
        '<rendering drawLabels="1" obstacle="1" obstacleFactor="1" obstacleType="1" '
        'displayAll="1" upsidedownLabels="0" labelPerPart="0" mergeLines="0" '
        'scaleVisibility="0" limitNumLabels="0" maxNumLabels="2000" zIndex="0"/>'
        "</settings></labeling>")


def _quoted(text: str) -> str:
    return f'"{_attr(text)}"'
