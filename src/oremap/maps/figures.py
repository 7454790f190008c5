"""Map figures: prospectivity, panels and uncertainty, with scale bar, north arrow, targets."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import matplotlib
import numpy as np
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.colors import Colormap, ListedColormap
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from matplotlib.offsetbox import AnchoredOffsetbox
from matplotlib.patches import Patch
from matplotlib.text import Text
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

from oremap import io
from oremap.errors import InputDataError
from oremap.grid import Grid
from oremap.maps.colour import (
    AREA_CLASS_COLOURS,
    AREA_CLASSES,
    AREA_REST_COLOUR,
    PROSPECTIVITY_CMAP,
    area_percentile_breaks,
)
from oremap.maps.targets import TARGET_LABEL_GID, label_targets_on_axes, to_grid_crs

__all__ = ["area_classes", "place_labels", "plot_decision_map", "plot_panels",
           "plot_prospectivity", "plot_thumbnails", "plot_uncertainty"]


_UNIT_ABBREV = {"metre": "m", "meter": "m", "kilometre": "km", "degree": "°", "foot": "ft",
                "US survey foot": "ftUS"}


def _axis_labels(grid: Grid) -> tuple[str, str]:
    """("Easting (m)", "Northing (m)") or the CRS's own axis names and units."""
    x_label, y_label = "x", "y"
    for axis in grid.crs.axis_info:
        unit = _UNIT_ABBREV.get(axis.unit_name, axis.unit_name)
        label = f"{axis.name} ({unit})"
        if axis.direction.lower() in ("east", "west"):
            x_label = label
        elif axis.direction.lower() in ("north", "south"):
            y_label = label
    return x_label, y_label


def _nice_length(span: float) -> float:
    """A 1, 2 or 5 x 10^k length close to a fifth of ``span``."""
    target = span / 5.0
    k = np.floor(np.log10(target))
    for m in (5.0, 2.0, 1.0):
        if m * 10**k <= target:
            return float(m * 10**k)
    return float(10**k)


def _add_scale_bar(ax: Axes, grid: Grid) -> None:
    """Scale bar in map units (projected CRSs only: a degree is no fixed length)."""
    if not grid.crs.is_projected:
        return
    unit = grid.crs.axis_info[0].unit_name
    length = _nice_length(grid.bounds[2] - grid.bounds[0])
    if unit in ("metre", "meter") and length >= 1000:
        label = f"{length / 1000:g} km"
    else:
        label = f"{length:g} {_UNIT_ABBREV.get(unit, unit)}"
    bar = AnchoredSizeBar(ax.transData, length, label, loc="lower left", pad=0.4,
                          borderpad=0.5, sep=3, frameon=True, size_vertical=0,
                          fontproperties={"size": 8})
    bar.patch.set_alpha(0.8)
    ax.add_artist(bar)


def _add_north_arrow(ax: Axes) -> None:
    """Grid-north arrow (the grid is north-up) in the upper-right corner."""
    text = ax.annotate("N", xy=(0.95, 0.97), xytext=(0, -32), xycoords="axes fraction",
                       textcoords="offset points", ha="center", va="center", fontsize=10,
                       fontweight="bold", gid=_NORTH_GID,
                       arrowprops={"facecolor": "black", "edgecolor": "white", "width": 3,
                                   "headwidth": 9, "headlength": 8})
    text.set_path_effects([patheffects.withStroke(linewidth=2.5, foreground="white")])


_NORTH_GID = "oremap-north-arrow"
#: Offsets (in label heights) tried, in order, for a label that would cover something.
_LABEL_OFFSETS = [(0, 0), (0, 1.4), (0, -1.4), (1.6, 0), (-1.6, 0), (1.5, 1.3), (-1.5, 1.3),
                  (1.5, -1.3), (-1.5, -1.3), (0, 2.6), (0, -2.6), (2.9, 0), (-2.9, 0),
                  (2.6, 2.4), (-2.6, 2.4), (2.6, -2.4), (-2.6, -2.4), (0, 3.8), (0, -3.8)]


def place_labels(fig: Figure) -> int:
    """Move target labels so that none covers another label, the north arrow or the scale
    bar (a leader line joins a moved label to its target); returns how many still overlap.

    Runs after the layout is fixed; candidate positions are tried in :data:`_LABEL_OFFSETS`
    order, the best-ranked labels first.
    """
    fig.draw_without_rendering()
    renderer = fig._get_renderer()  # noqa: SLF001 - the layout's renderer, for text extents
    left = 0
    for ax in fig.axes:
        labels = [t for t in ax.texts if t.get_gid() == TARGET_LABEL_GID]
        if not labels:
            continue
        frame = ax.get_window_extent(renderer)
        taken = [t.get_window_extent(renderer).expanded(1.15, 1.3)
                 for t in ax.texts if t.get_gid() == _NORTH_GID]
        taken += [a.get_window_extent(renderer) for a in ax.artists
                  if isinstance(a, AnchoredOffsetbox)]
        for label in labels:
            height = label.get_fontsize() * 1.5
            best = None
            for dx, dy in _LABEL_OFFSETS:
                label.set_position((dx * height, dy * height))
                box = _text_box(label, renderer)
                inside = (box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0
                          and box.y1 <= frame.y1)
                if inside and not any(box.overlaps(t) for t in taken):
                    best = box
                    break
            if best is None:
                label.set_position((0, 0))
                best = _text_box(label, renderer)
                left += 1
            taken.append(best)
    return left


def _text_box(label: Any, renderer: Any) -> Any:
    """Window extent of an annotation's text and its box, without its leader line."""
    label.update_positions(renderer)
    return Text.get_window_extent(label, renderer).expanded(1.3, 1.4)


def _check_map(array: np.ndarray, grid: Grid, what: str) -> np.ndarray:
    arr = np.asarray(array, dtype=np.float64)
    if arr.shape != grid.shape:
        raise InputDataError(f"{what} has shape {arr.shape} but the grid is {grid.shape}; "
                             "pass the map's own grid (e.g. from cell_grid).")
    return arr


def _draw_map(ax: Axes, arr: np.ndarray, grid: Grid, cmap: Colormap, vmin: float,
              vmax: float, title: str, orebodies: gpd.GeoDataFrame | None,
              cells: gpd.GeoDataFrame | None,
              targets: gpd.GeoDataFrame | None) -> tuple[AxesImage, list]:
    """Draw one map panel; return the image and legend handles for what was overlaid."""
    xmin, ymin, xmax, ymax = grid.bounds
    image = ax.imshow(arr, cmap=cmap, vmin=vmin, vmax=vmax, extent=(xmin, xmax, ymin, ymax),
                      origin="upper", interpolation="nearest")
    handles: list = []
    if np.isnan(arr).any():
        handles.append(Patch(facecolor=cmap.get_bad(), edgecolor="0.5", label="no data"))
    if cells is not None and len(cells):
        to_grid_crs(cells, grid, "cells").boundary.plot(ax=ax, color="0.25", linewidth=0.3)
        handles.append(Line2D([], [], color="0.25", linewidth=0.6, label="cells"))
    if targets is not None and len(targets):
        label_targets_on_axes(ax, to_grid_crs(targets, grid, "targets"))
        handles.append(Line2D([], [], color="black", linewidth=1.2, linestyle="--",
                              label="target area"))
    if orebodies is not None and len(orebodies):
        handles.extend(_draw_orebodies(ax, to_grid_crs(orebodies, grid, "orebodies")))
    _finish_map_axes(ax, grid, title, fontsize=10)
    return image, handles


def _finish_map_axes(ax: Axes, grid: Grid, title: str, *, fontsize: float) -> None:
    """The grid's extent at equal aspect, plain map-unit ticks and axis labels, the title (if
    any), a scale bar and a north arrow."""
    xmin, ymin, xmax, ymax = grid.bounds
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymin, ymax)
    ax.set_aspect("equal")
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.tick_params(labelsize=7)
    x_label, y_label = _axis_labels(grid)
    ax.set_xlabel(x_label, fontsize=8)
    ax.set_ylabel(y_label, fontsize=8)
    if title:
        ax.set_title(title, fontsize=fontsize)
    _add_scale_bar(ax, grid)
    _add_north_arrow(ax)


#: Geology overlay colours: no red or orange, which mean ore on the map.
_OVERLAY_COLOURS = ("0.1", "#6a3d9a", "#1f78b4", "#33a02c", "#8c6d31", "#17becf")


def _draw_overlays(ax: Axes, grid: Grid, overlays: Mapping[str, gpd.GeoDataFrame]) -> list:
    """Input geology over the map, one legend handle per layer; barren records (a name
    starting with "barren") as :func:`_draw_barren` draws them."""
    barren = [g for n, g in overlays.items() if n.startswith("barren")]
    geology = {n: g for n, g in overlays.items() if not n.startswith("barren")}
    handles: list = _draw_barren(ax, barren, grid) if barren else []
    for (name, gdf), colour in zip(geology.items(), _OVERLAY_COLOURS * 10, strict=False):
        if gdf is None or not len(gdf):
            continue
        gdf = to_grid_crs(gdf, grid, name)
        kinds = set(gdf.geom_type)
        if kinds <= {"Point", "MultiPoint"}:
            gdf.plot(ax=ax, marker="o", color="white", edgecolor=colour, markersize=14,
                     linewidth=0.8, zorder=4)
            handles.append(Line2D([], [], marker="o", color=colour, markerfacecolor="white",
                                  linestyle="none", label=name))
        else:
            lines = gdf.boundary if kinds <= {"Polygon", "MultiPolygon"} else gdf
            lines.plot(ax=ax, color=colour, linewidth=0.5, alpha=0.8, zorder=3)
            handles.append(Line2D([], [], color=colour, linewidth=0.8, label=name))
    return handles


def _draw_orebodies(ax: Axes, orebodies: gpd.GeoDataFrame) -> list:
    kinds = orebodies.geom_type
    points = orebodies[kinds.isin(["Point", "MultiPoint"])]
    others = orebodies[~kinds.isin(["Point", "MultiPoint"])]
    if len(points):
        points.plot(ax=ax, marker="*", color="white", edgecolor="black", markersize=90,
                    linewidth=0.8, zorder=5)
    if len(others):
        others.boundary.plot(ax=ax, color="black", linewidth=1.2, zorder=5)
        others.boundary.plot(ax=ax, color="white", linewidth=0.5, zorder=6)
    handles = []  # legend symbols as drawn: stars for points, white-on-black outlines else
    if len(points):
        handles.append(Line2D([], [], marker="*", color="black", markerfacecolor="white",
                              markersize=10, linestyle="none",
                              label="known orebody" if not len(others) else
                              "known orebody (point)"))
    if len(others):
        handles.append(Line2D([], [], color="black", linewidth=2.4,
                              path_effects=[patheffects.Stroke(linewidth=2.4,
                                                               foreground="black"),
                                            patheffects.Stroke(linewidth=1.0,
                                                               foreground="white")],
                              label="known orebody" if not len(points) else
                              "known orebody (outline)"))
    return handles


def _map_figure(arrays: Mapping[str, np.ndarray], grid: Grid, path: str | os.PathLike, *,
                title: str, orebodies: gpd.GeoDataFrame | None, cells: gpd.GeoDataFrame | None,
                targets: gpd.GeoDataFrame | None, vmin: float, vmax: float, legend_label: str,
                cmap: Colormap, ncols: int, panel: float = 4.6,
                overlays: Mapping[str, gpd.GeoDataFrame] | None = None) -> Path:
    names = list(arrays)
    ncols = max(1, min(ncols, len(names)))
    nrows = -(-len(names) // ncols)
    aspect = min(max(grid.height / grid.width, 0.3), 2.0)  # keep figures printable
    fig = Figure(figsize=(panel * ncols + 1.2, max(3.0, panel * aspect) * nrows + 0.8),
                 layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        arr = _check_map(arrays[name], grid, f"map {name!r}")
        panel_title = name if len(names) > 1 else title
        image, handles = _draw_map(ax, arr, grid, cmap, vmin, vmax, panel_title, orebodies,
                                   cells, targets)
        handles += _draw_overlays(ax, grid, overlays or {})
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    bar = fig.colorbar(image, ax=list(axes.flat), shrink=0.8)
    bar.set_label(legend_label)
    if len(names) > 1:
        fig.suptitle(title)
    _add_legend(fig, handles)
    if targets is not None and len(targets):
        place_labels(fig)
    return io.save_figure(fig, path)


def _add_legend(fig: Figure, handles: list) -> None:
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8,
                   frameon=False)


def plot_prospectivity(array: np.ndarray, grid: Grid, path: str | os.PathLike, *, title: str,
                       orebodies: gpd.GeoDataFrame | None = None,
                       cells: gpd.GeoDataFrame | None = None,
                       targets: gpd.GeoDataFrame | None = None, vmin: float = 0.0,
                       vmax: float = 1.0, legend_label: str = "P(ore)",
                       cmap: Colormap | str | None = None,
                       overlays: Mapping[str, gpd.GeoDataFrame] | None = None) -> Path:
    """Draw a prospectivity map (low blue, medium green, high red) and save it, 1,200 px wide.

    Parameters
    ----------
    array : (rows, cols) array on ``grid``
        P(ore) or another score; NaN pixels are drawn light grey ("no data").
    grid : Grid
        Grid of ``array`` (e.g. from :func:`cell_grid` or :func:`sliding_window_map`).
    path : path
        Output image (PNG by extension), written atomically.
    title : str
    orebodies : GeoDataFrame or None
        Known orebodies: points as white stars, polygons as outlines.
    cells : GeoDataFrame or None
        Cell polygons drawn as a thin grey grid.
    targets : GeoDataFrame or None
        Target areas from :func:`oremap.targets.target_areas`: dashed outlines labelled with
        their ``rank`` (I, II, ...).
    vmin, vmax : float
        Colour scale limits.
    legend_label : str
        Colour bar label.
    cmap : Colormap, name or None
        Default :data:`PROSPECTIVITY_CMAP` (see :func:`prospectivity_cmap` for why).
    overlays : mapping of name -> GeoDataFrame, or None
        Input geology drawn over the map (faults and shear zones as thin dark lines, polygons
        as outlines, points such as drill holes as small circles), each named in the legend.

    The figure has a colour bar, a legend of the overlays, a scale bar (projected CRSs), a
    grid-north arrow and map coordinates with the CRS's axis names and units; target labels
    never cover each other, the arrow or the scale bar. Vector layers in another CRS are
    reprojected to the grid's CRS.

    Raises
    ------
    InputDataError
        If ``array`` does not match ``grid``.
    CRSMismatchError
        If an overlay has no CRS.
    """
    return _map_figure({title: array}, grid, path, title=title, orebodies=orebodies,
                       cells=cells, targets=targets, vmin=vmin, vmax=vmax,
                       legend_label=legend_label, cmap=_cmap(cmap), ncols=1, panel=8.8,
                       overlays=overlays)


def plot_panels(arrays: Mapping[str, np.ndarray], grid: Grid, path: str | os.PathLike, *,
                title: str = "Prospectivity by model", orebodies: gpd.GeoDataFrame | None = None,
                cells: gpd.GeoDataFrame | None = None, targets: gpd.GeoDataFrame | None = None,
                vmin: float = 0.0, vmax: float = 1.0, legend_label: str = "P(ore)",
                cmap: Colormap | str | None = None, ncols: int = 3) -> Path:
    """One map panel per entry of ``arrays`` (model name -> (rows, cols) map) in one figure.

    Panels share the colour scale and colour bar; other arguments as for
    :func:`plot_prospectivity`; ``ncols`` panels per row.

    Raises
    ------
    InputDataError
        If ``arrays`` is empty or a map does not match ``grid``.
    """
    if not arrays:
        raise InputDataError("plot_panels needs at least one map; got an empty mapping.")
    return _map_figure(dict(arrays), grid, path, title=title, orebodies=orebodies, cells=cells,
                       targets=targets, vmin=vmin, vmax=vmax, legend_label=legend_label,
                       cmap=_cmap(cmap), ncols=ncols)


def plot_uncertainty(std: np.ndarray, entropy: np.ndarray, grid: Grid,
                     path: str | os.PathLike, *, title: str = "Model disagreement",
                     orebodies: gpd.GeoDataFrame | None = None,
                     cells: gpd.GeoDataFrame | None = None,
                     targets: gpd.GeoDataFrame | None = None,
                     first: tuple[str, str] = ("Std of P(ore)", "std"),
                     first_max: float | None = None) -> Path:
    """Two panels: std of P(ore) across models and vote entropy (bits), both (rows, cols).

    Both use the uncertainty ramp of the QGIS styles (:func:`oremap.maps.colour.ramp`, reversed
    "magma": light = agreement, dark = disagreement); the first panel's scale runs from 0 to
    ``first_max`` (the QGIS style's fixed range, e.g. 50 percentile points for the rank
    uncertainty) or else to its largest value (at least 0.05), the entropy scale from 0 to
    1 bit. ``first``: title and colour-bar label of the first panel (another disagreement
    measure, e.g. the rank uncertainty).

    Raises
    ------
    InputDataError
        If either array does not match ``grid``.
    """
    s = _check_map(std, grid, "std")
    e = _check_map(entropy, grid, "entropy")
    cmap = matplotlib.colormaps["magma_r"].with_extremes(bad=(0.85, 0.85, 0.85, 1.0))
    s_max = first_max if first_max is not None else \
        max(float(np.nanmax(s)) if np.isfinite(s).any() else 0.0, 0.05)
    aspect = min(max(grid.height / grid.width, 0.3), 2.0)  # keep figures printable
    fig = Figure(figsize=(11.0, max(3.0, 4.6 * aspect) + 0.8), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, arr, name, top, label in ((axes[0], s, first[0], s_max, first[1]),
                                      (axes[1], e, "Vote entropy", 1.0, "entropy (bits)")):
        image, handles = _draw_map(ax, arr, grid, cmap, 0.0, top, name, orebodies, cells,
                                   targets)
        fig.colorbar(image, ax=ax, shrink=0.8).set_label(label)
    fig.suptitle(title)
    _add_legend(fig, handles)
    return io.save_figure(fig, path)


def _cmap(cmap: Colormap | str | None) -> Colormap:
    if cmap is None:
        return PROSPECTIVITY_CMAP
    if isinstance(cmap, str):
        return matplotlib.colormaps.get_cmap(cmap)  # ValueError for unknown names, as before
    return cmap


def area_classes(prob: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Each pixel's area-percentile class (0: top 5 % of the study area, 1: top 10 %, 2: top
    20 %, 3: the rest; NaN where ``prob`` is NaN) and the P(ore) breaks of the classes."""
    p = np.asarray(prob, dtype=np.float64)
    breaks = area_percentile_breaks(p)
    out = np.full(p.shape, float(len(AREA_CLASSES)))
    for k in reversed(range(len(AREA_CLASSES))):
        if np.isfinite(breaks[k]):
            out[p >= breaks[k]] = k
    out[~np.isfinite(p)] = np.nan
    return out, breaks


def _draw_known(ax: Axes, orebodies: gpd.GeoDataFrame) -> list:
    """Known deposits in gold with a black edge: points as stars, polygons outlined."""
    kinds = orebodies.geom_type
    points = orebodies[kinds.isin(["Point", "MultiPoint"])]
    others = orebodies[~kinds.isin(["Point", "MultiPoint"])]
    if len(others):
        others.plot(ax=ax, facecolor="#f2c12e", edgecolor="black", linewidth=0.9, zorder=5)
    if len(points):
        points.plot(ax=ax, marker="*", color="#f2c12e", edgecolor="black", markersize=110,
                    linewidth=0.8, zorder=6)
    if not len(orebodies):
        return []
    return [Line2D([], [], marker="*" if len(points) else "s", color="black",
                   markerfacecolor="#f2c12e", markersize=11 if len(points) else 8,
                   linestyle="none", label="known deposit")]


def _draw_barren(ax: Axes, barren: list[gpd.GeoDataFrame], grid: Grid) -> list:
    """Barren records (e.g. barren drill holes): dark grey crosses, polygons white with a dark
    outline; never red, which means ore on the map."""
    drawn = False
    for gdf in barren:
        if gdf is None or not len(gdf):
            continue
        gdf = to_grid_crs(gdf, grid, "barren records")
        kinds = gdf.geom_type
        points = gdf[kinds.isin(["Point", "MultiPoint"])]
        lines = gdf[kinds.isin(["LineString", "MultiLineString"])]
        polygons = gdf[kinds.isin(["Polygon", "MultiPolygon"])]
        if len(polygons):
            polygons.plot(ax=ax, facecolor="white", edgecolor="0.2", linewidth=0.7, zorder=4)
        if len(lines):
            lines.plot(ax=ax, color="0.3", linewidth=0.8, zorder=4)
        if len(points):
            points.plot(ax=ax, marker="x", color="0.3", markersize=9, linewidth=0.6,
                        alpha=0.8, zorder=4)
        drawn = True
    if not drawn:
        return []
    return [Line2D([], [], marker="x", color="0.3", markersize=5, linestyle="none",
                   label="barren record")]


def plot_decision_map(prob: np.ndarray, grid: Grid, path: str | os.PathLike, *,
                      targets: gpd.GeoDataFrame | None,
                      orebodies: gpd.GeoDataFrame | None,
                      barren: list[gpd.GeoDataFrame] | None = None,
                      title: str = "") -> Path:
    """The map to decide on: the recommended P(ore) map drawn by area-percentile class.

    The top 5, 10 and 20 % of the study area (by P(ore), :data:`AREA_CLASSES`) in
    :data:`AREA_CLASS_COLOURS`, the rest light grey, no-data white; target areas as dashed
    outlines with their labels (column ``label`` or ``rank``: I, II, ...), known deposits in
    gold with a black edge, barren records as dark grey crosses (polygons white with a dark
    outline); a legend with the P(ore) break of each class, axes in map units, a scale bar and
    a north arrow. A compact figure (7 x 4.5 in at 100 dpi, 256 colours), for the first screen
    of the report.

    Parameters
    ----------
    prob : (rows, cols) array on ``grid``
        P(ore) (or any score: only its ranking matters); NaN outside the study area.
    grid : Grid
    path : path
        Output PNG, written atomically.
    targets, orebodies : GeoDataFrame or None
    barren : list of GeoDataFrame or None
        Barren records (points or polygons), in any CRS.
    title : str

    Raises
    ------
    InputDataError
        If ``prob`` does not match ``grid``.
    """
    arr = _check_map(prob, grid, "the decision map")
    classes, breaks = area_classes(arr)
    colours = [*AREA_CLASS_COLOURS, AREA_REST_COLOUR]
    cmap = ListedColormap(colours).with_extremes(bad="white")
    aspect = min(max(grid.height / grid.width, 0.3), 2.0)
    fig = Figure(figsize=(7.0, min(4.5, max(2.6, 5.0 * aspect + 0.9))), layout="constrained")
    ax = fig.subplots()
    xmin, ymin, xmax, ymax = grid.bounds
    ax.imshow(classes, cmap=cmap, vmin=-0.5, vmax=len(colours) - 0.5, origin="upper",
              extent=(xmin, xmax, ymin, ymax), interpolation="nearest")
    handles: list = []
    previous = 0
    for k, share in enumerate(AREA_CLASSES):
        where = f", P \u2265 {breaks[k]:.2f}" if np.isfinite(breaks[k]) else ""
        span = f"top {share} %" if k == 0 else f"top {previous}\u2013{share} %"
        handles.append(Patch(facecolor=colours[k], edgecolor="0.5", linewidth=0.5,
                             label=f"{span}{where}"))
        previous = share
    handles.append(Patch(facecolor=AREA_REST_COLOUR, edgecolor="0.5", linewidth=0.5,
                         label="rest of the area"))
    if targets is not None and len(targets):
        label_targets_on_axes(ax, to_grid_crs(targets, grid, "targets"), fontsize=8)
        handles.append(Line2D([], [], color="black", linewidth=1.2, linestyle="--",
                              label="target area"))
    if orebodies is not None and len(orebodies):
        handles += _draw_known(ax, to_grid_crs(orebodies, grid, "orebodies"))
    handles += _draw_barren(ax, list(barren or []), grid)
    _finish_map_axes(ax, grid, title, fontsize=9.5)
    fig.legend(handles=handles, loc="outside right upper", fontsize=7.5, frameon=False,
               title="share of the study area", title_fontsize=7.5)
    if targets is not None and len(targets):
        place_labels(fig)
    return io.save_figure(fig, path, dpi=100)


def plot_thumbnails(arrays: Mapping[str, np.ndarray], path: str | os.PathLike, *,
                    captions: Mapping[str, str] | None = None, ncols: int = 6,
                    width: float = 11.5, cmap: str = "viridis") -> Path:
    """Small multiples: one thumbnail per map (name -> 2-D array, e.g. decimated evidence
    layers) in one figure, each stretched between its own 2nd and 98th percentiles (dark =
    low), titled with its name and, below, its caption; no axes. NaN is light grey.

    Raises
    ------
    InputDataError
        If ``arrays`` is empty.
    """
    if not arrays:
        raise InputDataError("plot_thumbnails needs at least one map; got an empty mapping.")
    names = list(arrays)
    ncols = max(1, min(ncols, len(names)))
    nrows = -(-len(names) // ncols)
    first = np.asarray(arrays[names[0]])
    aspect = min(max(first.shape[0] / max(first.shape[1], 1), 0.3), 1.5)
    panel = width / ncols
    fig = Figure(figsize=(width, nrows * (panel * aspect + 0.45)), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    colour_map = matplotlib.colormaps[cmap].with_extremes(bad=(0.88, 0.88, 0.88, 1.0))
    for ax, name in zip(axes.flat, names, strict=False):
        arr = np.asarray(arrays[name], dtype=np.float64)
        finite = arr[np.isfinite(arr)]
        lo, hi = (np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0))
        ax.imshow(arr, cmap=colour_map, vmin=lo, vmax=hi if hi > lo else lo + 1,
                  interpolation="nearest")
        ax.set_title(name, fontsize=8, pad=2)
        caption = (captions or {}).get(name, "")
        if caption:
            ax.set_xlabel(caption, fontsize=6.5, labelpad=1)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    return io.save_figure(fig, path, dpi=100)
