"""Benchmark of the evidence stage: IDW throughput, FFT buffer density, paper-scale memory.

Run: ``python benchmarks/evidence.py [--scale 1] [--workers 1] [--skip-paper] [--raster]``
(about 4 min; ``--raster`` adds about 2 min and needs 1 GiB of free disk; ``--only-raster``
runs the raster benchmark alone).

1. IDW of 2,000 random samples onto a 1,000 x 1,000 grid, 12 neighbours and all samples,
   against a plain numpy all-pairs baseline (computed on a subset of targets and scaled), on
   one thread and on every core (threads over blocks, identical results), and for 12
   neighbours against scipy's cKDTree query done plainly.
   Then the exact distance to 200 segments on 2,000 x 2,000 px against rasterising + scipy's
   Euclidean distance transform (approximate).
2. ``buffer_density`` by FFT against direct summation (shift-and-add over kernel offsets).
3. Peak memory and time of one paper-scale layer (He et al. 2024: 24,240 x 11,456 px; IDW with
   12 neighbours) built window by window to a GeoTIFF in a temporary folder, in a child
   process; ``--scale`` shrinks both sides (the result is extrapolated by pixel count).
4. ``--raster``: a synthetic 1 GiB float32 GeoTIFF (16,384 x 16,384 px of 10 m, EPSG:3035,
   tiled, uncompressed) warped by oremap's ``[[raster]]`` path (``average`` resampling, tile by
   tile) onto a Central-Lapland-sized district grid of 50 m in EPSG:3067 (1,680 x 1,400 px),
   in a child process: time and peak RSS, beside a plain ``rasterio.warp.reproject`` of the
   same band onto the same grid in one call (another child process), and the largest
   difference between the two.
"""

from __future__ import annotations

import argparse
import logging
import math
import multiprocessing as mp
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from oremap.evidence import GeochemLayerSpec, build_evidence, idw
from oremap.evidence.features import (
    buffer_density_map,
    distance_map,
    kernel,
    rasterise_features,
)
from oremap.grid import Grid
from oremap.limits import available_cores

PAPER_SHAPE = (11_456, 24_240)  # rows, cols
PIXEL = 10.0


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def numpy_all_pairs(xy, z, t, *, power=2.0, neighbours=None, chunk=500):
    """Baseline: dense distance matrix per chunk of targets, optional argpartition."""
    out = np.empty(len(t))
    for s in range(0, len(t), chunk):
        tt = t[s:s + chunk]
        d = np.sqrt(((tt[:, None, :] - xy[None, :, :]) ** 2).sum(-1))
        if neighbours is not None:
            idx = np.argpartition(d, neighbours - 1, axis=1)[:, :neighbours]
            d = np.take_along_axis(d, idx, axis=1)
            zz = z[idx]
        else:
            zz = np.broadcast_to(z, d.shape)
        w = 1.0 / d**power
        out[s:s + chunk] = (w * zz).sum(1) / w.sum(1)
    return out


def kdtree_plain(xy, z, t, k, power=2.0):
    """Anchor: ``cKDTree.query`` with k neighbours, then inverse-distance weights."""
    d, idx = cKDTree(xy).query(t, k=k)
    with np.errstate(divide="ignore"):
        w = 1.0 / d**power
    est = (w * z[idx]).sum(1) / w.sum(1)
    hit = d[:, 0] == 0
    est[hit] = z[idx[hit, 0]]
    return est


def bench_idw(workers: int) -> None:
    rng = np.random.default_rng(0)
    grid = Grid.from_bounds("EPSG:32650", (0, 0, 1000 * PIXEL, 1000 * PIXEL), PIXEL)
    xy = rng.uniform(grid.bounds[:2], grid.bounds[2:], (2000, 2))
    z = rng.lognormal(size=2000)
    targets = grid.centres()
    sub = targets[rng.choice(len(targets), 20_000, replace=False)]
    print(f"IDW: 2,000 samples -> {len(targets):,} targets (1,000 x 1,000 grid), "
          f"workers={workers}")
    for label, k in (("12 neighbours", 12), ("all samples", None)):
        ours, t_ours = _timed(idw, xy, z, targets, neighbours=k, workers=workers)
        if workers == 1:  # the same on every core the process may use (threads over blocks)
            many, t_many = _timed(idw, xy, z, targets, neighbours=k, workers=-1)
            print(f"  {label:14s} threads: 1 thread {t_ours:6.2f} s, {available_cores()} "
                  f"threads {t_many:6.2f} s, speed-up x{t_ours / t_many:4.2f}, identical "
                  f"{bool(np.array_equal(ours, many))}")
        if k is not None:  # anchor: scipy's k-d tree, done plainly (query, then weights)
            plain, t_plain = _timed(kdtree_plain, xy, z, targets, k)
            print(f"  {label:14s} oremap {t_ours:6.2f} s vs scipy cKDTree k = {k} done plainly "
                  f"{t_plain:6.2f} s: x{t_plain / t_ours:4.2f}   max |diff| "
                  f"{np.abs(plain - ours).max():.1e}")
        base, t_base = _timed(numpy_all_pairs, xy, z, sub, neighbours=k)
        check = idw(xy, z, sub, neighbours=k)
        rate_ours, rate_base = len(targets) / t_ours, len(sub) / t_base
        print(f"  {label:14s} oremap {rate_ours:12,.0f} targets/s ({t_ours:6.2f} s)   numpy "
              f"all-pairs {rate_base:10,.0f} targets/s (on {len(sub):,} targets, scaled: "
              f"{len(targets) / rate_base:6.1f} s)   speed-up x{rate_ours / rate_base:5.1f}   "
              f"max |diff| {np.abs(base - check).max():.1e}")


def direct_cone(amount: np.ndarray, radius: float, pixel: float) -> np.ndarray:
    """Direct summation: sum over kernel offsets of the shifted amount times K(offset)."""
    k = kernel(radius, (pixel, pixel), "cone")
    hy, hx = k.shape[0] // 2, k.shape[1] // 2
    h, w = amount.shape[0] - 2 * hy, amount.shape[1] - 2 * hx
    out = np.zeros((h, w))
    for i, j in zip(*np.nonzero(k), strict=True):
        out += k[i, j] * amount[i:i + h, j:j + w]
    return out


def bench_buffer_density() -> None:
    from shapely.geometry import LineString

    rng = np.random.default_rng(1)
    print("buffer_density (cone kernel): FFT convolution vs direct summation")
    for n, r_px in ((300, 15), (600, 30), (1000, 50)):
        grid = Grid.from_bounds("EPSG:32650", (0, 0, n * PIXEL, n * PIXEL), PIXEL)
        lines = [LineString(rng.uniform(-500, n * PIXEL + 500, (5, 2))) for _ in range(40)]
        radius = r_px * PIXEL
        fft, t_fft = _timed(buffer_density_map, lines, grid, radius=radius)
        amount, t_ras = _timed(rasterise_features, lines, grid,
                               halo=(math.ceil(r_px), math.ceil(r_px)))
        direct, t_dir = _timed(direct_cone, amount, radius, PIXEL)
        err = np.abs(fft - direct).max() / np.abs(direct).max()
        print(f"  {n} x {n} px, R = {r_px} px: FFT {t_fft:6.3f} s (incl. exact rasterising "
              f"{t_ras:.3f} s)   direct {t_dir + t_ras:7.3f} s   speed-up "
              f"x{(t_dir + t_ras) / t_fft:6.1f}   max rel diff {err:.1e}")


def bench_distance() -> None:
    """Exact distance to 200 random segments on 2,000 x 2,000 px, against rasterising the
    segments and scipy's Euclidean distance transform (approximate: distances to the centres
    of the pixels the segments cross)."""
    from scipy import ndimage
    from shapely.geometry import LineString

    rng = np.random.default_rng(2)
    n = 2000
    grid = Grid.from_bounds("EPSG:32650", (500_000, 7_000_000, 500_000 + n * PIXEL,
                                           7_000_000 + n * PIXEL), PIXEL)
    lines = [LineString(rng.uniform(grid.bounds[:2], grid.bounds[2:], (2, 2)))
             for _ in range(200)]

    def edt() -> np.ndarray:
        crossed = rasterise_features(lines, grid) > 0
        return ndimage.distance_transform_edt(~crossed, sampling=PIXEL)

    best = [min(_timed(fn)[1] for _ in range(3)) for fn in
            (lambda: distance_map(lines, grid), edt)]
    exact, approx = distance_map(lines, grid), edt()
    print(f"Exact distance to 200 segments, {n:,} x {n:,} px: oremap (exact) {best[0]:.3f} s, "
          f"rasterise + scipy EDT (approximate, max error {np.abs(approx - exact).max():.1f} m) "
          f"{best[1]:.3f} s: oremap / EDT time x{best[0] / best[1]:.2f}")


def _paper_child(scale: float, workers: int, block: int, queue) -> None:
    logging.disable(logging.INFO)
    rows, cols = (max(64, int(round(s * scale))) for s in PAPER_SHAPE)
    grid = Grid.from_bounds("EPSG:32650", (0, 0, cols * PIXEL, rows * PIXEL), PIXEL)
    rng = np.random.default_rng(2)
    xy = rng.uniform(grid.bounds[:2], grid.bounds[2:], (2000, 2))
    spec = GeochemLayerSpec("Au", xy, rng.lognormal(size=2000), "benchmark", neighbours=12,
                            log10=True, coverage_buffer=500.0)
    tracemalloc.start()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        m = build_evidence([spec], grid, Path(tmp), block=block, progress=False,
                           workers=workers)
        seconds = time.perf_counter() - t0
        size = (Path(tmp) / m.layers[0].path).stat().st_size
    _, peak = tracemalloc.get_traced_memory()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin"
                                                               else 1024)
    queue.put((rows, cols, seconds, peak, rss, size))


def bench_paper(scale: float, workers: int, block: int) -> None:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_paper_child, args=(scale, workers, block, queue))
    proc.start()
    rows, cols, seconds, peak, rss, size = queue.get()
    proc.join()
    px = rows * cols
    full = PAPER_SHAPE[0] * PAPER_SHAPE[1]
    print(f"Paper-scale layer (IDW, 12 neighbours, 2,000 samples, block {block}, "
          f"workers={workers}):")
    print(f"  ran {rows:,} x {cols:,} px = {px / 1e6:.1f} Mpx (scale {scale:g}) in "
          f"{seconds:.1f} s ({px / seconds / 1e6:.2f} Mpx/s), GeoTIFF {size / 2**20:.0f} MiB")
    print(f"  peak memory: tracemalloc {peak / 2**20:.0f} MiB, max RSS of the child "
          f"{rss / 2**20:.0f} MiB (bounded by the block, not the grid)")
    if px < full:
        print(f"  extrapolated to 24,240 x 11,456 px ({full / 1e6:.0f} Mpx): "
              f"{seconds * full / px / 60:.1f} min per layer, same peak memory")


RASTER_SIDE = 16_384  # px: 16,384^2 float32 = 1 GiB
RASTER_PIXEL = 10.0
RASTER_ORIGIN = (4_880_000.0, 5_090_000.0)  # EPSG:3035, upper-left: covers Central Lapland
DISTRICT = ("EPSG:3067", (346_000.0, 7_458_000.0, 416_000.0, 7_542_000.0), 50.0)


def write_big_raster(path: Path) -> Path:
    """A smooth field with short-wavelength texture, written strip by strip (never whole)."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    profile = dict(driver="GTiff", width=RASTER_SIDE, height=RASTER_SIDE, count=1,
                   dtype="float32", crs="EPSG:3035", nodata=-99999.0, tiled=True,
                   blockxsize=512, blockysize=512, BIGTIFF="YES",
                   transform=from_origin(*RASTER_ORIGIN, RASTER_PIXEL, RASTER_PIXEL))
    cols = np.arange(RASTER_SIDE, dtype=np.float32)
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, RASTER_SIDE, 512):
            rows = np.arange(r0, r0 + 512, dtype=np.float32)[:, None]
            strip = (100 * np.sin(cols / 900.0) * np.cos(rows / 700.0)
                     + 20 * np.sin((cols + 3 * rows) / 37.0)).astype(np.float32)
            dst.write(strip[None], window=Window(0, r0, RASTER_SIDE, 512))
    return path


def _district_grid() -> Grid:
    crs, bounds, pixel = DISTRICT
    return Grid.from_bounds(crs, bounds, pixel)


def _rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (
        1 if sys.platform == "darwin" else 1024)


def _raster_child(path: str, how: str, out: str, queue) -> None:
    logging.disable(logging.INFO)
    import rasterio
    from rasterio.crs import CRS as RioCRS
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    from oremap.evidence import RasterLayerSpec, load_stack

    grid = _district_grid()
    base_rss = _rss_bytes()
    t0 = time.perf_counter()
    if how == "oremap":
        build_evidence([RasterLayerSpec("big", Path(path), "benchmark", resampling="average")],
                       grid, Path(out), progress=False, previews=False, resume=False)
        seconds = time.perf_counter() - t0
        values = load_stack(Path(out))[0][0]
    else:
        values = np.full(grid.shape, np.nan, dtype=np.float32)
        with rasterio.open(path) as src:
            reproject(rasterio.band(src, 1), values, dst_transform=grid.transform,
                      dst_crs=RioCRS.from_wkt(grid.crs.to_wkt()),
                      resampling=Resampling.average, dst_nodata=np.nan)
        seconds = time.perf_counter() - t0
    np.save(Path(out) / f"{how}.npy", values)
    queue.put((seconds, _rss_bytes(), base_rss))


def bench_raster(keep: Path | None) -> None:
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        path = keep if keep is not None else Path(tmp) / "big.tif"
        if not path.exists():
            t0 = time.perf_counter()
            write_big_raster(path)
            print(f"Wrote {path} ({path.stat().st_size / 2**30:.2f} GiB) in "
                  f"{time.perf_counter() - t0:.1f} s")
        size = path.stat().st_size
        results = {}
        for how in ("plain", "oremap"):
            out = Path(tmp) / how
            out.mkdir()
            queue = ctx.Queue()
            proc = ctx.Process(target=_raster_child, args=(str(path), how, str(out), queue))
            proc.start()
            results[how] = queue.get()
            proc.join()
        diff = np.load(Path(tmp) / "oremap" / "oremap.npy") - np.load(
            Path(tmp) / "plain" / "plain.npy")
        grid = _district_grid()
        print(f"Raster evidence: a {size / 2**30:.2f} GiB GeoTIFF (EPSG:3035, 10 m) averaged "
              f"onto {grid.height:,} x {grid.width:,} px of 50 m in EPSG:3067:")
        for how, label in (("plain", "plain rasterio.warp.reproject, one call"),
                           ("oremap", "oremap [[raster]] (256 px tiles, GeoTIFF written)")):
            seconds, rss, base = results[how]
            print(f"  {label}: {seconds:.1f} s, peak RSS of the process {rss / 2**20:.0f} MiB "
                  f"({base / 2**20:.0f} MiB after imports)")
        print(f"  oremap / plain time x{results['oremap'][0] / results['plain'][0]:.2f}; "
              f"largest difference {np.nanmax(np.abs(diff)):.4g} (mean "
              f"{np.nanmean(np.abs(diff)):.2g}; values span about -120 .. 120); peak RSS "
              f"{'below' if results['oremap'][1] < 2**30 else 'ABOVE'} 1 GiB")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0,
                    help="fraction of each side of the 24,240 x 11,456 paper grid (default 1: "
                         "the full size, about 3 min on one core; 0.25 for a quick run)")
    ap.add_argument("--workers", type=int, default=1, help="k-d tree threads (-1: all)")
    ap.add_argument("--block", type=int, default=2048, help="window size in pixels")
    ap.add_argument("--skip-paper", action="store_true", help="skip the paper-scale layer")
    ap.add_argument("--raster", action="store_true",
                    help="also warp a synthetic 1 GiB GeoTIFF onto a district grid")
    ap.add_argument("--only-raster", action="store_true", help="only the raster benchmark")
    ap.add_argument("--raster-file", type=Path, default=None,
                    help="where to keep the 1 GiB GeoTIFF between runs (default: a temporary "
                         "file, deleted)")
    args = ap.parse_args(argv)
    print(f"numpy {np.__version__}; {mp.cpu_count()} CPU cores visible")
    if args.only_raster:
        bench_raster(args.raster_file)
        return
    bench_idw(args.workers)
    bench_distance()
    bench_buffer_density()
    if not args.skip_paper:
        bench_paper(args.scale, args.workers, args.block)
    if args.raster:
        bench_raster(args.raster_file)


if __name__ == "__main__":
    main()
