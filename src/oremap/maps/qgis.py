"""The map package for QGIS: layer styles (``.qml``) and one project file (``.qgs``).

A ``.qml`` beside a GeoTIFF with the same name is the style QGIS applies when the file is
opened; the project (``maps/oremap.qgs``) opens the evidence layers, the maps, the cells, the
targets, the orebodies and barren records in that order, with the same styles and paths
relative to the project, so the run folder can be moved or shared as a whole.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import pandas as pd
import rasterio

from oremap import io
from oremap import io as oio
from oremap.contract import file as F
from oremap.maps.colour import ramp

__all__ = [
    "FIXED_RANGES",
    "QGIS_VERSION",
    "Layer",
    "project_xml",
    "raster_pipe",
    "raster_qml",
    "recommended_name",
    "vector_renderer",
    "write_map_package",
    "write_project",
    "write_style",
]

#: QGIS version written in the files (the format of QGIS 3.22 LTR and later).
QGIS_VERSION = "3.22.16-Białowieża"


def raster_pipe(kind: str, vmin: float, vmax: float, *, indent: str = "  ") -> str:
    """The ``<pipe>`` of a single-band pseudocolour style from ``vmin`` to ``vmax``."""
    if not (np.isfinite(vmin) and np.isfinite(vmax)) or vmax <= vmin:
        vmin, vmax = (0.0, 1.0) if not np.isfinite(vmin) else (vmin, vmin + 1.0)
    items = "\n".join(
        f'{indent}        <item alpha="255" value="{vmin + t * (vmax - vmin):.6g}" '
        f'label="{vmin + t * (vmax - vmin):.3g}" color="{color}"/>'
        for t, color in ramp(kind))
    return f"""{indent}<pipe>
{indent}  <provider><resampling enabled="false" maxOversampling="2" zoomedInResamplingMethod="nearestNeighbour" zoomedOutResamplingMethod="nearestNeighbour"/></provider>
{indent}  <rasterrenderer type="singlebandpseudocolor" band="1" opacity="1" alphaBand="-1" nodataColor="" classificationMin="{vmin:.6g}" classificationMax="{vmax:.6g}">
{indent}    <rasterTransparency/>
{indent}    <minMaxOrigin><limits>None</limits><extent>WholeRaster</extent><statAccuracy>Estimated</statAccuracy><cumulativeCutLower>0.02</cumulativeCutLower><cumulativeCutUpper>0.98</cumulativeCutUpper><stdDevFactor>2</stdDevFactor></minMaxOrigin>
{indent}    <rastershader>
{indent}      <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" clip="0" minimumValue="{vmin:.6g}" maximumValue="{vmax:.6g}" labelPrecision="3">
{items}
{indent}      </colorrampshader>
{indent}    </rastershader>
{indent}  </rasterrenderer>
{indent}  <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
{indent}  <huesaturation saturation="0" grayscaleMode="0" colorizeOn="0" colorizeRed="255" colorizeGreen="128" colorizeBlue="128" colorizeStrength="100"/>
{indent}  <rasterresampler maxOversample="2"/>
{indent}</pipe>"""  # noqa: E501


def raster_qml(kind: str, vmin: float, vmax: float) -> str:
    """A QGIS layer style file (``.qml``) for one map kind."""
    return (f"<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
            f'<qgis version="{QGIS_VERSION}" styleCategories="Symbology">\n'
            f"{raster_pipe(kind, vmin, vmax)}\n  <blendMode>0</blendMode>\n</qgis>\n")


#: Value ranges of the map kinds with a fixed scale.
FIXED_RANGES = {"probability": (0.0, 1.0), "entropy": (0.0, 1.0), "std": (0.0, 0.5)}


def write_style(tif: Path, kind: str, *, vmin: float | None = None,
                vmax: float | None = None, out: Path | None = None) -> Path:
    """Write ``<tif stem>.qml`` beside a GeoTIFF (QGIS applies it when the file is opened),
    or to ``out``.

    ``kind``: ``probability`` (also vote shares), ``std``, ``entropy`` (fixed ranges) or
    ``evidence`` (from the 2nd to the 98th percentile of the valid values unless given).
    """
    if kind in FIXED_RANGES:
        lo, hi = FIXED_RANGES[kind]
        ramp_kind = "probability" if kind == "probability" else "uncertainty"
    else:
        valid = _sample_values(tif)
        lo, hi = (np.percentile(valid, [2, 98]) if valid.size else (0.0, 1.0))
        ramp_kind = "evidence"
    lo = float(lo if vmin is None else vmin)
    hi = float(hi if vmax is None else vmax)
    return io.write_text(out or tif.with_suffix(".qml"), raster_qml(ramp_kind, lo, hi))


def _sample_values(tif: Path, *, max_pixels: float = 4e6) -> np.ndarray:
    """Valid values of a GeoTIFF read at a resolution of at most ``max_pixels`` (overviews or
    decimation): enough for percentiles, bounded memory for paper-scale layers."""
    with rasterio.open(tif) as src:
        factor = max(1, math.ceil(math.sqrt(src.width * src.height / max_pixels)))
        shape = (max(1, src.height // factor), max(1, src.width // factor))
        values = src.read(1, out_shape=shape, masked=True).astype(float).filled(np.nan)
    return values[np.isfinite(values)]


# --------------------------------------------------------------------------- the project


@dataclass(frozen=True)
class Layer:
    """One layer of the project: a GeoTIFF (``raster``) or a vector layer (``vector``)."""

    name: str
    path: Path
    kind: str  # "raster" | "vector"
    group: str
    sublayer: str | None = None
    style: str | None = None  # the raster <pipe> or the vector renderer, XML
    visible: bool = True


def _srs(wkt: str, indent: str) -> str:
    return (f"{indent}<spatialrefsys nativeFormat=\"Wkt\">\n{indent}  <wkt>{_esc(wkt)}</wkt>\n"
            f"{indent}</spatialrefsys>")


def _esc(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _relative(path: Path, start: Path) -> str:
    rel = os.path.relpath(Path(path).resolve(), Path(start).resolve())
    return "./" + Path(rel).as_posix() if not rel.startswith("..") else Path(rel).as_posix()


def vector_renderer(geometry: str, fill: str, outline: str, *, width: float = 0.5) -> str:
    """A single-symbol renderer for polygons (``fill`` may be 'none'), lines or points."""
    if geometry == "point":
        layer = (f'<layer class="SimpleMarker" enabled="1" locked="0" pass="0">'
                 f'<prop k="name" v="star"/><prop k="color" v="{fill}"/>'
                 f'<prop k="outline_color" v="{outline}"/><prop k="size" v="3"/></layer>')
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


def project_xml(layers: Sequence[Layer], project: Path, wkt: str, *, title: str) -> str:
    """The text of a QGIS project holding ``layers`` (top of the list drawn on top)."""
    ids = {id(layer): f"{_slug(layer.name)}_"
                      f"{uuid.uuid5(uuid.NAMESPACE_URL, f'{layer.path}|{layer.name}').hex[:8]}"
           for layer in layers}
    groups: dict[str, list[Layer]] = {}
    for layer in layers:
        groups.setdefault(layer.group, []).append(layer)
    tree = []
    for group, members in groups.items():
        tree.append(f'    <layer-tree-group name={quoteattr(group)} checked="Qt::Checked" '
                    'expanded="1">')
        for layer in members:
            source = _source(layer, project.parent)
            checked = "Qt::Checked" if layer.visible else "Qt::Unchecked"
            provider = "gdal" if layer.kind == "raster" else "ogr"
            tree.append(f'      <layer-tree-layer id="{ids[id(layer)]}" '
                        f"name={quoteattr(layer.name)} source={quoteattr(source)} "
                        f'providerKey="{provider}" checked="{checked}" expanded="0"/>')
        tree.append("    </layer-tree-group>")
    maplayers = []
    for layer in layers:
        source = _source(layer, project.parent)
        if layer.kind == "raster":
            head = '    <maplayer type="raster" hasScaleBasedVisibilityFlag="0">'
            provider, body = "gdal", layer.style or ""
        else:
            head = ('    <maplayer type="vector" hasScaleBasedVisibilityFlag="0" '
                    f'geometry="{_geometry_kind(layer)}">')
            provider, body = "ogr", layer.style or ""
        maplayers.append(
            f"{head}\n      <id>{ids[id(layer)]}</id>\n"
            f"      <datasource>{_esc(source)}</datasource>\n"
            f"      <layername>{_esc(layer.name)}</layername>\n"
            f"      <srs>\n{_srs(wkt, '        ')}\n      </srs>\n"
            f'      <provider encoding="UTF-8">{provider}</provider>\n'
            f"      {body}\n    </maplayer>")
    order = "\n".join(f'      <item>{ids[id(layer)]}</item>' for layer in layers)
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        f'<qgis projectname={quoteattr(title)} version="{QGIS_VERSION}">\n'
        '  <homePath path=""/>\n'
        f"  <title>{_esc(title)}</title>\n"
        f"  <projectCrs>\n{_srs(wkt, '    ')}\n  </projectCrs>\n"
        "  <layer-tree-group>\n    <customproperties/>\n" + "\n".join(tree) + "\n"
        f"    <custom-order enabled=\"0\">\n{order}\n    </custom-order>\n"
        "  </layer-tree-group>\n"
        "  <projectlayers>\n" + "\n".join(maplayers) + "\n  </projectlayers>\n"
        "  <properties>\n    <Paths>\n      <Absolute type=\"bool\">false</Absolute>\n"
        "    </Paths>\n  </properties>\n</qgis>\n")


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)[:40] or "layer"


def _source(layer: Layer, base: Path) -> str:
    rel = _relative(layer.path, base)
    return f"{rel}|layername={layer.sublayer}" if layer.sublayer else rel


def _geometry_kind(layer: Layer) -> str:
    style = layer.style or ""
    if 'type="marker"' in style:
        return "Point"
    if 'type="line"' in style:
        return "Line"
    return "Polygon"


def write_project(path: Path, layers: Sequence[Layer], wkt: str, *, title: str) -> Path:
    """Write the QGIS project ``path`` (atomically)."""
    return io.write_text(path, project_xml(layers, path, wkt, title=title))


def recommended_name(run_dir: Path) -> str | None:
    """The member or rule with the best held-out cell ROC AUC (crop ROC AUC as fallback)."""
    path = run_dir / F("ensemble", "comparison")
    if not path.is_file():
        return None
    comp = pd.read_csv(path, index_col=0)
    col = "cell_roc_auc_mean" if comp["cell_roc_auc_mean"].notna().any() else "roc_auc_mean"
    return str(comp[col].idxmax())


def write_map_package(run_dir: Path, config: object, wkt: str) -> Path:
    """Evidence styles (``maps/styles/evidence_<layer>.qml``) and the QGIS project
    ``maps/oremap.qgs``: targets, known orebodies and barren records on top, then the
    recommended map, the ensemble's sliding-window map and the uncertainty maps, every other
    map (hidden), the cells (hidden) and the evidence layers (hidden)."""
    maps_dir = run_dir / "maps"
    layers: list[Layer] = []
    targets = run_dir / F("maps", "targets")
    if targets.is_file():
        layers.append(Layer("target areas", targets, "vector", "Targets and deposits",
                            style=vector_renderer("polygon", "none", "220,20,60,255",
                                                  width=0.8)))
    lab = config.labels  # type: ignore[attr-defined]
    layers.append(Layer("known orebodies", Path(lab.orebodies.path), "vector",
                        "Targets and deposits", sublayer=lab.orebodies.layer,
                        style=_source_renderer(Path(lab.orebodies.path), lab.orebodies.layer,
                                               "255,215,0,255", "0,0,0,255")))
    for i, src in enumerate(lab.barren):
        layers.append(Layer(f"barren records {i + 1}", Path(src.path), "vector",
                            "Targets and deposits", sublayer=src.layer,
                            style=_source_renderer(Path(src.path), src.layer,
                                                   "255,255,255,255", "60,60,60,255")))
    best = recommended_name(run_dir)
    shown = []
    if best and (maps_dir / f"prob_{best}.tif").is_file():
        shown.append((f"recommended: {best}", maps_dir / f"prob_{best}.tif"))
    if (maps_dir / "prob_ensemble_continuous.tif").is_file():
        shown.append(("ensemble, sliding window", maps_dir / "prob_ensemble_continuous.tif"))
    for name, tif in shown:
        layers.append(Layer(name, tif, "raster", "Prospectivity",
                            style=_pipe_of(tif), visible=name.startswith("recommended")))
    for name in ("uncertainty_std", "uncertainty_entropy"):
        tif = maps_dir / f"{name}.tif"
        if tif.is_file():
            layers.append(Layer(name.replace("_", " "), tif, "raster", "Uncertainty",
                                style=_pipe_of(tif), visible=False))
    listed = {p for _, p in shown}
    for tif in sorted(maps_dir.glob("prob_*.tif")):
        if tif not in listed:
            layers.append(Layer(tif.stem.removeprefix("prob_"), tif, "raster",
                                "Every model and rule", style=_pipe_of(tif), visible=False))
    cells = run_dir / F("maps", "cells")  # with every member's and rule's P(ore)
    if not cells.is_file():
        cells = run_dir / F("samples", "cells")
    if cells.is_file():
        layers.append(Layer("cells", cells, "vector", "Cells", sublayer="cells",
                            style=vector_renderer("polygon", "none", "120,120,120,255",
                                                  width=0.2), visible=False))
    styles = maps_dir / "styles"
    for tif in sorted((run_dir / "evidence" / "layers").glob("*.tif")):
        styles.mkdir(exist_ok=True)
        target = write_style(tif, "evidence", out=styles / f"evidence_{tif.stem}.qml")
        layers.append(Layer(tif.stem, tif, "raster", "Evidence", visible=False,
                            style=_pipe_from_qml(target)))
    name = getattr(config, "name", "oremap run")
    return write_project(maps_dir / "oremap.qgs", layers, wkt, title=str(name))


def _pipe_of(tif: Path) -> str:
    qml = tif.with_suffix(".qml")
    return _pipe_from_qml(qml) if qml.is_file() else ""


def _pipe_from_qml(qml: Path) -> str:
    text = qml.read_text()
    start, end = text.find("<pipe>"), text.find("</pipe>")
    return text[start:end + len("</pipe>")] if start >= 0 else ""


def _source_renderer(path: Path, layer: str | None, fill: str, outline: str) -> str:
    """A renderer for an input vector layer, by its geometry type."""
    try:
        gdf = oio.read_vector(path, layer=layer, what="map package", allow_empty=True)
        kinds = set(gdf.geom_type.dropna())
    except Exception:  # noqa: BLE001 - a style is a convenience; default symbology then
        kinds = set()
    if kinds and kinds <= {"Point", "MultiPoint"}:
        return vector_renderer("point", fill, outline)
    if kinds and kinds <= {"LineString", "MultiLineString"}:
        return vector_renderer("line", fill, outline, width=0.6)
    return vector_renderer("polygon", "none", outline, width=0.6)
