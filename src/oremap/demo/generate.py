"""The demo generator: orebodies, drilling, soil samples and geology from the hidden structures."""

from __future__ import annotations

import math
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.features
import shapely

from oremap.demo.area import (
    _ASSAYS,
    _CENTRE,
    _CORNER_U,
    _CORNER_V,
    _HEIGHT,
    _TARGET_NEGATIVES,
    _WIDTH,
    DEMO_BOUNDS,
    DEMO_CELL_COLS,
    DEMO_CELL_ROWS,
    DEMO_CELL_SIZE_M,
    DEMO_CRS,
    DEMO_FERTILITY_PIXEL_M,
    ELEMENTS,
    demo_grid,
)
from oremap.demo.geophysics import _magnetics, _radiometrics_k
from oremap.demo.structures import (
    _corner_distance,
    _extent_local,
    _fertility,
    _Structures,
    _structures,
)

__all__: list[str] = []


def _cell_boxes() -> np.ndarray:
    """Cells as shapely boxes in local metres, row-major from the top-left, shape (rows*cols,)."""
    dx, dy = DEMO_CELL_SIZE_M
    col, row = np.meshgrid(np.arange(DEMO_CELL_COLS), np.arange(DEMO_CELL_ROWS))
    u0 = col.ravel() * dx
    v1 = _HEIGHT - row.ravel() * dy
    return shapely.box(u0, v1 - dy, u0 + dx, v1)


def _to_map(geoms: list | np.ndarray) -> np.ndarray:
    """Shift local geometries to map coordinates of EPSG:32649."""
    moved = shapely.transform(np.asarray(geoms, dtype=object),
                              lambda xy: xy + np.asarray(DEMO_BOUNDS[:2]))
    return shapely.make_valid(moved)


def _gdf(records: list[dict], geoms: list) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(pd.DataFrame(records), geometry=list(_to_map(geoms)), crs=DEMO_CRS)


@dataclass
class _Demo:
    seed: int
    samples: pd.DataFrame
    geology: dict[str, gpd.GeoDataFrame]
    orebodies: gpd.GeoDataFrame
    drillholes: gpd.GeoDataFrame
    trenches: gpd.GeoDataFrame
    fertility: np.ndarray
    counts: dict[str, int]
    magnetics: np.ndarray  # on magnetics_grid(), NaN in the survey gap
    radiometrics_k: np.ndarray  # on radiometrics_grid(), NaN in the survey gap


def _build(seed: int) -> _Demo:
    rng = np.random.default_rng(seed)
    st = _structures(rng)
    grid = demo_grid(DEMO_FERTILITY_PIXEL_M)
    xy = grid.centres() - np.asarray(DEMO_BOUNDS[:2])
    fert = np.round(_fertility(st, xy[:, 0], xy[:, 1]).reshape(grid.shape), 2)
    orebodies, ore_records = _orebodies(st, rng)
    boxes = _cell_boxes()
    usable = shapely.contains(_extent_local(), boxes)
    positive = np.zeros(len(boxes), dtype=bool)
    for ob in orebodies:
        positive |= shapely.intersects(boxes, ob)
    holes, hole_rec, trenches, trench_rec = _drilling(st, rng, orebodies, boxes, usable,
                                                      positive, fert)
    negative = _negative_cells(boxes, orebodies, holes, hole_rec, trenches, trench_rec)
    counts = {"cells": len(boxes), "dropped": int((~usable).sum()),
              "positive": int((positive & usable).sum()),
              "negative": int((negative & usable).sum())}
    counts["unknown"] = counts["cells"] - counts["dropped"] - counts["positive"] - counts[
        "negative"]
    samples, geology = _soil_samples(st, rng), _geology(st, rng, fert)
    # the geophysics draws from a generator of its own, so the files above do not depend on it
    geo_rng = np.random.default_rng([seed, 7])
    magnetics = _magnetics(st, geo_rng)
    radiometrics_k = _radiometrics_k(st, geo_rng)
    return _Demo(
        seed=seed, samples=samples, geology=geology,
        orebodies=_gdf(ore_records, orebodies),
        drillholes=_gdf(hole_rec, holes), trenches=_gdf(trench_rec, trenches),
        fertility=fert, counts=counts, magnetics=magnetics, radiometrics_k=radiometrics_k,
    )


def _orebodies(st: _Structures, rng: np.random.Generator) -> tuple[list, list[dict]]:
    """Three lenses on the main shear zone's known shoots and one on a secondary fault."""
    geoms, records = [], []
    for centre, _ in st.main_shoots[st.known]:
        length = rng.uniform(85, 115)
        geoms.append(st.main.lens(st.frame, centre - length / 2, centre + length / 2,
                                  rng.uniform(5, 9), shift=rng.uniform(-5, 5)))
        records.append({"host_structure": "main shear zone (SZ1)"})
    name, centre, _ = st.fault_shoot
    length = rng.uniform(70, 90)
    geoms.append(st.secondary[name].lens(st.frame, centre - length / 2, centre + length / 2,
                                         rng.uniform(4, 7)))
    records.append({"host_structure": f"secondary fault {name}"})
    order = np.argsort([g.centroid.x for g in geoms])
    geoms = [geoms[i] for i in order]
    records = [{"name": f"OB{k + 1}", **records[i], "area_m2": round(geoms[k].area, 1)}
               for k, i in enumerate(order)]
    return geoms, records


def _drilling(st: _Structures, rng: np.random.Generator, orebodies: list, boxes: np.ndarray,
              usable: np.ndarray, positive: np.ndarray, fert: np.ndarray
              ) -> tuple[list, list[dict], list, list[dict]]:
    """Trenches, holes through the orebodies, near misses, then a barren hole pattern."""
    ore = shapely.union_all(orebodies)
    trenches = _trenches(st, rng, orebodies)
    holes = _ore_holes(st, rng, orebodies)
    negative = _negative_cells(boxes, orebodies, holes, None, trenches, None) & usable
    cell_fert = fert.reshape(DEMO_CELL_ROWS, 23, DEMO_CELL_COLS, 20).mean(axis=(1, 3)).ravel()
    free = np.flatnonzero(usable & ~positive & ~negative)
    want = min(len(free), _TARGET_NEGATIVES + int(rng.integers(-12, 13)) - int(negative.sum()))
    weights = np.clip(1.0 - 1.6 * cell_fert[free], 0.02, None) ** 2
    chosen = np.sort(rng.choice(free, size=max(want, 0), replace=False, p=weights / weights.sum()))
    dx, dy = DEMO_CELL_SIZE_M
    for cell in chosen:
        u0, v0 = np.asarray(boxes[cell].bounds[:2])
        for _ in range(1 + int(rng.random() < 0.3)):
            holes.append(shapely.Point(u0 + rng.uniform(2, dx - 2), v0 + rng.uniform(2, dy - 2)))
    hole_rec = [{"hole_id": f"ZK{k + 1:03d}",
                 "result": "mineralised" if ore.intersects(h) else "barren",
                 "depth_m": round(float(rng.uniform(40, 220)), 1)} for k, h in enumerate(holes)]
    trench_rec = [{"trench_id": f"TC{k + 1:02d}",
                   "result": "mineralised" if ore.intersects(tr) else "barren",
                   "length_m": round(tr.length, 1)} for k, tr in enumerate(trenches)]
    return holes, hole_rec, trenches, trench_rec


def _ore_holes(st: _Structures, rng: np.random.Generator, orebodies: list) -> list:
    """Two or three holes well inside each orebody, then one near miss beside each."""
    holes = []
    for ob in orebodies:
        inner = ob.buffer(-1.0)
        if inner.is_empty:
            inner = ob
        u0, v0, u1, v1 = inner.bounds
        want, found = int(rng.integers(2, 4)), 0
        for _ in range(1000):
            p = shapely.Point(rng.uniform(u0, u1), rng.uniform(v0, v1))
            if inner.contains(p):
                holes.append(p)
                found += 1
            if found == want:
                break
    ore = shapely.union_all(orebodies)
    normal = np.array(st.frame.to_uv(0.0, 1.0)) - np.asarray(_CENTRE)
    for ob in orebodies:
        c = np.asarray(ob.centroid.coords[0])
        p = shapely.Point(c + normal * rng.choice([-1, 1]) * rng.uniform(9, 14))
        if ore.distance(p) > 2.0:
            holes.append(p)
    return holes


def _trenches(st: _Structures, rng: np.random.Generator, orebodies: list) -> list:
    """Cross-strike trenches: two over orebodies, others over barren stretches of structures."""
    frame = st.frame
    sites = [tuple(float(a) for a in frame.to_st(*np.asarray(orebodies[k].centroid.coords[0])))
             for k in rng.choice(len(orebodies), size=2, replace=False)]
    shoots = st.main_shoots[:, 0]
    for _ in range(40):
        if len(sites) >= 5:
            break
        s = rng.uniform(-200, 400)
        if np.min(np.abs(shoots - s)) > 55:
            sites.append((s, float(st.main.t(s))))
    for s in (rng.uniform(-40, 120), rng.uniform(200, 380)):
        sites.append((s, float(st.second.t(s))))
    lines = []
    for s, t0 in sites:
        half = rng.uniform(15, 25)
        lines.append(shapely.LineString(np.column_stack(
            frame.to_uv(np.array([s, s + rng.uniform(-3, 3)]), np.array([t0 - half, t0 + half])))))
    lines = [shapely.intersection(ln, _extent_local()) for ln in lines]
    return [ln for ln in lines if isinstance(ln, shapely.LineString) and ln.length > 10.0]


def _negative_cells(boxes: np.ndarray, orebodies: list, holes: list, hole_rec: list | None,
                    trenches: list, trench_rec: list | None) -> np.ndarray:
    """Cells hit by a barren hole or trench and by no orebody (result None: decide by geometry)."""
    ore = shapely.union_all(orebodies)
    hit = np.zeros(len(boxes), dtype=bool)
    for items, recs in ((holes, hole_rec), (trenches, trench_rec)):
        for k, g in enumerate(items):
            barren = (recs[k]["result"] == "barren") if recs is not None else not ore.intersects(g)
            if barren:
                hit |= shapely.intersects(boxes, g)
    return hit & ~shapely.intersects(boxes, ore)


def _soil_samples(st: _Structures, rng: np.random.Generator) -> pd.DataFrame:
    """Soil samples on a jittered ~20 m grid outside the blank corner, with assays."""
    cols, rows = 41, 19
    u = np.repeat(np.linspace(0, _WIDTH, cols)[None, :], rows, axis=0)
    v = np.repeat(np.linspace(0, _HEIGHT, rows)[:, None], cols, axis=1)
    ju, jv = rng.uniform(-4, 4, u.shape), rng.uniform(-4, 4, v.shape)
    ju[:, [0, -1]] = 0.0  # samples on the west and east edges stay on them
    jv[[0, -1], :] = 0.0
    u, v = (u + ju).ravel(), (v + jv).ravel()
    keep = _corner_distance(u, v) > 3.0
    u, v = u[keep], v[keep]
    # a sampling line along the edge of the blank corner, its two ends on the edge itself
    n_edge = 16
    tau = np.linspace(0, 1, n_edge + 1)
    tau[1:-1] += rng.uniform(-0.01, 0.01, n_edge - 1)
    inward = np.array([1 / _CORNER_U, 1 / _CORNER_V]) / math.hypot(1 / _CORNER_U, 1 / _CORNER_V)
    offset = np.where((tau > 0) & (tau < 1), 1.5, 0.0)
    eu = _CORNER_U * tau + offset * inward[0]
    ev = _CORNER_V * (1 - tau) + offset * inward[1]
    u, v = np.concatenate([u, eu]), np.concatenate([v, ev])
    order = np.lexsort((u, -v))
    u, v = u[order], v[order]
    fert = _fertility(st, u, v)
    in_qs = shapely.contains_xy(shapely.union_all(st.sandstone), u, v)
    table = {"sample_id": [f"S{k + 1:04d}" for k in range(len(u))],
             "x": np.round(u + DEMO_BOUNDS[0], 2), "y": np.round(v + DEMO_BOUNDS[1], 2)}
    for name in ELEMENTS:
        a = _ASSAYS[name]
        litho = np.where(in_qs, -0.3, 0.0) if name in ("Cu", "Pb", "Zn", "W") else 0.0
        ln = (math.log(a.background) + a.gain * fert + litho
              + a.log_sd * rng.standard_normal(len(u)))
        value = np.round(np.exp(ln), a.decimals)
        table[name] = np.where(value < a.detection_limit, a.detection_limit / 2, value)
    return pd.DataFrame(table)


def _geology(st: _Structures, rng: np.random.Generator, fert: np.ndarray
             ) -> dict[str, gpd.GeoDataFrame]:
    """The geological map layers, clipped to the mapped extent."""
    extent = _extent_local()
    frame = st.frame
    clip = shapely.intersection
    shear = [clip(st.main.band(frame, rng.uniform(36, 44)), extent),
             clip(st.second.band(frame, rng.uniform(24, 30)), extent)]
    faults = [clip(c.line(frame), extent) for c in st.secondary.values()]
    faults += [clip(ln, extent) for ln in st.cross]
    fault_rec = [{"name": n, "kind": "secondary fault, parallel to SZ1"} for n in st.secondary]
    fault_rec += [{"name": f"C{k + 1}", "kind": "brittle cross fault (NNW)"}
                  for k in range(len(st.cross))]
    sand = [clip(p, extent) for p in st.sandstone]
    alteration = _alteration_local(fert, extent)
    return {
        "shear_zones": _gdf([{"name": "SZ1", "kind": "ductile shear zone", "role": "main"},
                             {"name": "SZ2", "kind": "ductile shear zone", "role": "subsidiary"}],
                            shear),
        "faults": _gdf(fault_rec, faults),
        "alteration_zones": _gdf(
            [{"name": f"A{k + 1}", "assemblage": "silicification-sericite-pyrite"}
             for k in range(len(alteration))], alteration),
        "quartz_sandstone": _gdf([{"name": f"QS{k + 1}", "unit": "metamorphic quartz sandstone"}
                                  for k in range(len(sand))], sand),
        "geology_extent": _gdf([{"name": "mapped area"}], [extent]),
    }


def _alteration_local(fert: np.ndarray, extent: shapely.Polygon) -> list:
    """Mapped alteration: where the 2 m mean fertility exceeds 0.42, smoothed, >= 300 m2."""
    rows, cols = fert.shape
    coarse = fert.reshape(rows // 2, 2, cols // 2, 2).mean(axis=(1, 3))
    mask = (coarse > 0.42).astype(np.uint8)
    transform = rasterio.Affine(2.0, 0.0, 0.0, 0.0, -2.0, _HEIGHT)
    polys = [shapely.geometry.shape(g) for g, val in rasterio.features.shapes(
        mask, mask=mask.astype(bool), transform=transform) if val == 1]
    polys = [shapely.intersection(p.simplify(2.5), extent) for p in polys]
    polys = [p for p in polys if p.area >= 300.0]
    return sorted(polys, key=lambda p: (p.centroid.x, p.centroid.y))
