"""The map package for QGIS: layer styles (``.qml``) and one project file (``.qgs``).

A ``.qml`` beside a GeoTIFF with the same name is the style QGIS applies when the file is
opened (see :mod:`oremap.maps.qgis_style`); the project (``maps/oremap.qgs``) opens the
targets (labelled), the known orebodies and barren records, the recommended map (in
area-percentile classes), the other maps, the inputs (geology, geochemistry), the cells and
the evidence layers, with paths relative to the project, so the run folder can be moved or
shared as a whole. Only the targets, orebodies, barren records and the recommended map are
shown when the project opens.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import pandas as pd
import rasterio
from pyproj import CRS

from oremap import io
from oremap.contract import file as F
from oremap.maps.qgis_style import (
    FIXED_RANGES,
    QGIS_VERSION,
    area_class_pipe,
    finite_values,
    label_xml,
    raster_pipe,
    raster_qml,
    style_kind_of,
    vector_renderer,
    write_style,
)

__all__ = [
    "FIXED_RANGES",
    "QGIS_VERSION",
    "Layer",
    "layer_id",
    "project_xml",
    "raster_pipe",
    "raster_qml",
    "recommended_name",
    "spatialrefsys",
    "vector_renderer",
    "write_map_package",
    "write_project",
    "write_style",
]

#: The uncertainty maps listed in the project, in this order, where the run has them
#: (``uncertainty_std`` in older runs, ``uncertainty_seed`` with stability seeds).
UNCERTAINTY_MAPS = ("uncertainty_rank", "uncertainty_seed", "uncertainty_std",
                    "uncertainty_entropy")

#: Outline colours of the geology layers, in config order (cycled).
_GEOLOGY_COLOURS = ("139,69,19,255", "128,0,128,255", "0,110,60,255", "30,80,200,255",
                    "200,120,0,255", "90,90,90,255")


@dataclass(frozen=True)
class Layer:
    """One layer of the project: a GeoTIFF (``raster``) or a vector layer (``vector``).

    ``provider``: ``gdal`` (rasters), ``ogr`` (vector files) or ``delimitedtext`` (a CSV of
    points, ``uri`` holding its options); ``subset``: an OGR SQL filter (a config ``where``);
    ``labeling``: a ``<labeling>`` element; ``crs``: the layer's CRS (default the project's).
    """

    name: str
    path: Path
    kind: str  # "raster" | "vector"
    group: str
    sublayer: str | None = None
    style: str | None = None  # the raster <pipe> or the vector renderer, XML
    visible: bool = True
    provider: str | None = None
    uri: str | None = None  # delimitedtext: the query after "?"
    subset: str | None = None
    labeling: str | None = None
    crs: str | None = None


def spatialrefsys(crs_text: str, indent: str = "") -> str:
    """A complete ``<spatialrefsys>`` (WKT, PROJ, authority id, description, acronyms) of a
    CRS given as WKT, ``EPSG:...`` or PROJ text, as QGIS writes it."""
    crs = CRS.from_user_input(crs_text)
    auth = crs.to_authority(min_confidence=90)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "you will likely lose information": WKT rules
            proj4 = crs.to_proj4() or ""
    except Exception:  # noqa: BLE001 - no PROJ.4 form (engineering CRS): WKT alone then
        proj4 = ""
    try:
        ellipsoid = crs.ellipsoid
        ell = ellipsoid.to_authority() if ellipsoid is not None else None
    except Exception:  # noqa: BLE001
        ell = None
    acronym = ""
    for part in proj4.split():
        if part.startswith("+proj="):
            acronym = part.removeprefix("+proj=")
    fields = [("wkt", crs.to_wkt()), ("proj4", proj4)]
    if auth is not None and auth[1].isdigit():
        fields.append(("srid", auth[1]))
    fields += [("authid", f"{auth[0]}:{auth[1]}" if auth else ""),
               ("description", crs.name or ""), ("projectionacronym", acronym),
               ("ellipsoidacronym", f"{ell[0]}:{ell[1]}" if ell else ""),
               ("geographicflag", "true" if crs.is_geographic else "false")]
    body = "".join(f"{indent}  <{k}>{_esc(v)}</{k}>\n" for k, v in fields)
    return f'{indent}<spatialrefsys nativeFormat="Wkt">\n{body}{indent}</spatialrefsys>'


def _esc(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _relative(path: Path, start: Path) -> str:
    rel = os.path.relpath(Path(path).resolve(), Path(start).resolve())
    return "./" + Path(rel).as_posix() if not rel.startswith("..") else Path(rel).as_posix()


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")[:40] or "layer"


def layer_id(layer: Layer) -> str:
    """A long, stable id: ``<group>_<name>_<12 hex digits of a hash of the source>``
    (QGIS replaces ids of 10 characters or fewer by random ones on reading)."""
    key = f"{layer.group}|{layer.name}|{Path(layer.path).as_posix()}|{layer.sublayer}"
    return (f"{_slug(layer.group)}_{_slug(layer.name)}_"
            f"{uuid.uuid5(uuid.NAMESPACE_URL, key).hex[:12]}")


def _source(layer: Layer, base: Path) -> str:
    rel = _relative(layer.path, base)
    if layer.provider == "delimitedtext":
        return f"file:{quote(rel)}?{layer.uri or ''}"
    parts = [rel]
    if layer.sublayer:
        parts.append(f"layername={layer.sublayer}")
    if layer.subset:
        parts.append(f"subset={layer.subset}")  # must come last
    return "|".join(parts)


def _provider(layer: Layer) -> str:
    return layer.provider or ("gdal" if layer.kind == "raster" else "ogr")


def _geometry_kind(layer: Layer) -> str:
    style = layer.style or ""
    if 'type="marker"' in style:
        return "Point"
    if 'type="line"' in style:
        return "Line"
    return "Polygon"


def project_xml(layers: Sequence[Layer], project: Path, wkt: str, *, title: str,
                extent: tuple[float, float, float, float] | None = None) -> str:
    """The text of a QGIS project holding ``layers`` (top of the list drawn on top) in the
    CRS ``wkt``; ``extent`` (xmin, ymin, xmax, ymax) is the view it opens on."""
    ids: dict[int, str] = {}
    seen: set[str] = set()
    for layer in layers:
        lid, n = layer_id(layer), 1
        while lid in seen:
            n += 1
            lid = f"{layer_id(layer)}_{n}"
        seen.add(lid)
        ids[id(layer)] = lid
    groups: dict[str, list[Layer]] = {}
    for layer in layers:
        groups.setdefault(layer.group, []).append(layer)
    tree = []
    for group, members in groups.items():
        tree.append(f'    <layer-tree-group name={quoteattr(group)} checked="Qt::Checked" '
                    f'expanded="{int(any(m.visible for m in members))}">')
        for layer in members:
            checked = "Qt::Checked" if layer.visible else "Qt::Unchecked"
            tree.append(f'      <layer-tree-layer id="{ids[id(layer)]}" '
                        f"name={quoteattr(layer.name)} "
                        f"source={quoteattr(_source(layer, project.parent))} "
                        f'providerKey="{_provider(layer)}" checked="{checked}" expanded="0"/>')
        tree.append("    </layer-tree-group>")
    srs = spatialrefsys(wkt, "        ")
    maplayers = []
    for layer in layers:
        if layer.kind == "raster":
            head = '    <maplayer type="raster" hasScaleBasedVisibilityFlag="0">'
        else:
            labels = int(layer.labeling is not None)
            head = ('    <maplayer type="vector" hasScaleBasedVisibilityFlag="0" '
                    f'geometry="{_geometry_kind(layer)}" labelsEnabled="{labels}">')
        layer_srs = srs if layer.crs is None else spatialrefsys(layer.crs, "        ")
        maplayers.append(
            f"{head}\n      <id>{ids[id(layer)]}</id>\n"
            f"      <datasource>{_esc(_source(layer, project.parent))}</datasource>\n"
            f"      <layername>{_esc(layer.name)}</layername>\n"
            f"      <srs>\n{layer_srs}\n      </srs>\n"
            f'      <provider encoding="UTF-8">{_provider(layer)}</provider>\n'
            f"      {layer.style or ''}\n      {layer.labeling or ''}\n    </maplayer>")
    order = "\n".join(f"      <item>{ids[id(layer)]}</item>" for layer in layers)
    crs = CRS.from_user_input(wkt)
    auth = crs.to_authority(min_confidence=90)
    canvas = ""
    if extent is not None:
        xmin, ymin, xmax, ymax = (repr(float(v)) for v in extent)
        canvas = ('  <mapcanvas name="theMapCanvas" annotationsVisible="1">\n'
                  f"    <units>{'degrees' if crs.is_geographic else 'meters'}</units>\n"
                  f"    <extent><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax>"
                  f"<ymax>{ymax}</ymax></extent>\n    <rotation>0</rotation>\n"
                  f"    <destinationsrs>\n{spatialrefsys(wkt, '      ')}\n"
                  "    </destinationsrs>\n  </mapcanvas>\n")
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        f'<qgis projectname={quoteattr(title)} version="{QGIS_VERSION}">\n'
        '  <homePath path=""/>\n'
        f"  <title>{_esc(title)}</title>\n"
        f"  <projectCrs>\n{spatialrefsys(wkt, '    ')}\n  </projectCrs>\n"
        "  <layer-tree-group>\n    <customproperties/>\n" + "\n".join(tree) + "\n"
        f"    <custom-order enabled=\"0\">\n{order}\n    </custom-order>\n"
        "  </layer-tree-group>\n" + canvas +
        "  <projectlayers>\n" + "\n".join(maplayers) + "\n  </projectlayers>\n"
        "  <properties>\n    <Paths>\n      <Absolute type=\"bool\">false</Absolute>\n"
        "    </Paths>\n    <SpatialRefSys>\n"
        '      <ProjectionsEnabled type="int">1</ProjectionsEnabled>\n'
        f'      <ProjectCrs type="QString">{_esc(f"{auth[0]}:{auth[1]}" if auth else "")}'
        "</ProjectCrs>\n    </SpatialRefSys>\n  </properties>\n</qgis>\n")


def write_project(path: Path, layers: Sequence[Layer], wkt: str, *, title: str,
                  extent: tuple[float, float, float, float] | None = None) -> Path:
    """Write the QGIS project ``path`` (atomically)."""
    return io.write_text(path, project_xml(layers, path, wkt, title=title, extent=extent))


def recommended_name(run_dir: Path) -> str | None:
    """The recommended map as the maps stage recorded it (``maps/recommendation.json``, the
    map the targets are drawn on and the report names); before that, the member or rule with
    the best held-out cell ROC AUC."""
    record = run_dir / F("maps", "recommendation")
    try:
        return str(json.loads(record.read_text())["name"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    path = run_dir / F("ensemble", "comparison")
    if not path.is_file():
        return None
    comp = pd.read_csv(path, index_col=0)
    col = "cell_roc_auc_mean" if comp["cell_roc_auc_mean"].notna().any() else "roc_auc_mean"
    return str(comp[col].idxmax())


def write_map_package(run_dir: Path, config: object, wkt: str) -> Path:
    """Evidence styles (``maps/styles/evidence_<layer>.qml``) and the QGIS project
    ``maps/oremap.qgs``. Groups, top first: targets (labelled), known orebodies and barren
    records; the recommended map (area-percentile classes) and the ensemble's sliding-window
    map; the uncertainty maps; the geology inputs; the assays; every other map; the cells; the
    evidence layers. Shown when it opens: the targets, orebodies, barren records and the
    recommended map; everything else is listed, hidden."""
    maps_dir = run_dir / "maps"
    layers = _label_layers(run_dir, config)
    best = recommended_name(run_dir)
    listed: set[Path] = set()
    if best and (maps_dir / f"prob_{best}.tif").is_file():
        tif = maps_dir / f"prob_{best}.tif"
        write_style(tif, "probability")  # opened alone: the continuous ramp
        layers.append(Layer(f"recommended: {best}", tif, "raster", "Prospectivity",
                            style=area_class_pipe(finite_values(tif), indent="      ")))
        listed.add(tif)
    sliding = maps_dir / "prob_ensemble_continuous.tif"
    if sliding.is_file():
        layers.append(Layer("ensemble, sliding window", sliding, "raster", "Prospectivity",
                            style=_pipe_of(sliding, "probability"), visible=False))
        listed.add(sliding)
    for name in UNCERTAINTY_MAPS:
        tif = maps_dir / f"{name}.tif"
        if not tif.is_file():  # the seed map is the stability stage's, where it ran first
            tif = run_dir / "stability" / f"{name}.tif"
        if tif.is_file():
            layers.append(Layer(name.replace("_", " "), tif, "raster", "Uncertainty",
                                style=_pipe_of(tif, style_kind_of(name)), visible=False))
    layers += _input_layers(config)
    for tif in sorted(maps_dir.glob("prob_*.tif")):
        if tif not in listed:
            layers.append(Layer(tif.stem.removeprefix("prob_"), tif, "raster",
                                "Every model and rule", style=_pipe_of(tif, "probability"),
                                visible=False))
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
    return write_project(maps_dir / "oremap.qgs", layers, wkt, title=str(name),
                         extent=_extent(layers))


def _label_layers(run_dir: Path, config: object) -> list[Layer]:
    """The targets (labelled with their rank) and the label layers: known orebodies and
    barren records (with their ``where`` filters)."""
    layers: list[Layer] = []
    targets = run_dir / F("maps", "targets")
    if targets.is_file():
        field = _label_field(targets)
        layers.append(Layer("target areas", targets, "vector", "Targets and deposits",
                            style=vector_renderer("polygon", "none", "220,20,60,255",
                                                  width=0.8),
                            labeling=(label_xml(field, color="140,0,30,255", size=14)
                                      if field else None)))
    lab = config.labels  # type: ignore[attr-defined]
    layers.append(_vector_input("known orebodies", lab.orebodies, "Targets and deposits",
                                "255,215,0,255", "0,0,0,255"))
    for i, src in enumerate(lab.barren):
        layers.append(_vector_input(f"barren records {i + 1}", src, "Targets and deposits",
                                    "255,255,255,255", "60,60,60,255", marker="circle",
                                    size=1.6))
    return layers


def _label_field(targets: Path) -> str | None:
    """The targets' label column: ``label`` (roman numeral), else ``rank``."""
    import pyogrio

    try:
        columns = list(pyogrio.read_info(targets, layer="targets")["fields"])
    except Exception:  # noqa: BLE001 - no labels rather than no project
        return None
    return next((c for c in ("label", "rank", "rank_number") if c in columns), None)


def _input_layers(config: object) -> list[Layer]:
    """The geology sources of ``[[geology]]`` (each file and layer once, hidden) and the
    assay points of ``[geochem]`` (a CSV, hidden)."""
    layers: list[Layer] = []
    seen: dict[tuple[str, str | None, str | None], list[str]] = {}
    sources = {}
    for g in getattr(config, "geology", None) or []:
        key = (str(Path(g.path).resolve()), g.layer, _subset(g.where))
        seen.setdefault(key, []).append(g.name)
        sources.setdefault(key, g)
    for k, (key, src) in enumerate(sources.items()):
        users = seen[key]
        name = users[0] if len(users) == 1 else (src.layer or Path(src.path).stem)
        colour = _GEOLOGY_COLOURS[k % len(_GEOLOGY_COLOURS)]
        layers.append(_vector_input(name, src, "Geology", "none", colour, visible=False))
    geochem = getattr(config, "geochem", None)
    if geochem is not None and Path(geochem.path).is_file():
        crs = geochem.crs
        crs_id = _crs_param(crs) if crs else None
        query = (f"type=csv&delimiter=,&detectTypes=yes&xField={quote(geochem.x)}"
                 f"&yField={quote(geochem.y)}"
                 + (f"&crs={quote(crs_id, safe=':')}" if crs_id else "")
                 + "&spatialIndex=no&subsetIndex=no&watchFile=no")
        layers.append(Layer("assays", Path(geochem.path), "vector", "Geochemistry",
                            provider="delimitedtext", uri=query, visible=False, crs=crs,
                            style=vector_renderer("point", "70,130,180,255", "255,255,255,255",
                                                  marker="circle", size=1.6)))
    return layers


def _crs_param(crs: str) -> str:
    """A CRS as QGIS' ``createFromString`` reads it: ``EPSG:n`` where it has one, else WKT."""
    parsed = CRS.from_user_input(crs)
    auth = parsed.to_authority(min_confidence=90)
    return f"{auth[0]}:{auth[1]}" if auth else f"wkt:{parsed.to_wkt()}"


def _subset(where: dict[str, object] | None) -> str | None:
    """A config ``where`` (column equals, or is in, the value) as an OGR SQL filter."""
    if not where:
        return None

    def lit(v: object) -> str:
        if isinstance(v, bool):
            return str(int(v))
        if isinstance(v, int | float):
            return repr(v)
        return "'" + str(v).replace("'", "''") + "'"

    terms = []
    for column, value in where.items():
        col = '"' + column.replace('"', '""') + '"'
        if isinstance(value, list):
            terms.append(f"{col} IN ({', '.join(lit(v) for v in value)})")
        else:
            terms.append(f"{col} = {lit(value)}")
    return " AND ".join(terms)


def _vector_input(name: str, src: object, group: str, fill: str, outline: str, *,
                  visible: bool = True, marker: str = "star", size: float = 3.0) -> Layer:
    path = Path(src.path)  # type: ignore[attr-defined]
    sublayer = src.layer  # type: ignore[attr-defined]
    geometry, crs = _vector_info(path, sublayer)
    return Layer(name, path, "vector", group, sublayer=sublayer,
                 subset=_subset(getattr(src, "where", None)), visible=visible,
                 crs=crs or getattr(src, "crs", None),
                 style=_source_renderer(geometry, fill, outline, marker=marker, size=size))


def _vector_info(path: Path, layer: str | None) -> tuple[str, str | None]:
    """The geometry type and CRS (WKT) of a vector layer, read from its header."""
    import pyogrio

    try:
        info = pyogrio.read_info(path, layer=layer)
    except Exception:  # noqa: BLE001 - a style is a convenience; default symbology then
        return "", None
    return str(info.get("geometry_type") or ""), info.get("crs") or None


def _extent(layers: Sequence[Layer]) -> tuple[float, float, float, float] | None:
    for layer in layers:
        if layer.kind == "raster":
            with rasterio.open(layer.path) as src:
                return tuple(src.bounds)  # type: ignore[return-value]
    return None


def _pipe_of(tif: Path, kind: str) -> str:
    """The ``<pipe>`` of a map, after (re)writing its ``.qml`` beside it with ``kind``."""
    return _pipe_from_qml(write_style(tif, kind))


def _pipe_from_qml(qml: Path) -> str:
    text = qml.read_text()
    start, end = text.find("<pipe>"), text.find("</pipe>")
    return text[start:end + len("</pipe>")] if start >= 0 else ""


def _source_renderer(geometry: str, fill: str, outline: str, *, marker: str = "star",
                     size: float = 3.0) -> str:
    """A renderer for an input vector layer, by its geometry type (OGR's name)."""
    kind = geometry.upper().removeprefix("MULTI").split()[0] if geometry else ""
    if kind == "POINT":
        return vector_renderer("point", fill if fill != "none" else outline, outline,
                               marker=marker, size=size)
    if kind == "LINESTRING":
        return vector_renderer("line", fill, outline, width=0.6)
    return vector_renderer("polygon", "none", outline, width=0.6)
