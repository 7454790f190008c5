"""Sliding-window maps: windows over the evidence stack, map tiles, the members' maps."""

from __future__ import annotations

import threading
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from oremap import contract
from oremap.compute import run_tasks, set_threads, thread_map
from oremap.config import Config
from oremap.ensemble import read_weights
from oremap.errors import DroppedDataWarning, InputDataError
from oremap.evidence import EvidenceManifest, load_stack_auto
from oremap.evidence.stack import LazyStack
from oremap.grid import Grid
from oremap.inputs import context_stack
from oremap.maps.raster import describe_map, write_probability_map
from oremap.members import ensemble_members, load_member
from oremap.names import member_cost
from oremap.predict import map_inputs
from oremap.progress import progress as progress_bar
from oremap.runinfo import RunDir, stage_folder
from oremap.samples import load_sample_set

__all__ = [
    "PredictFn",
    "continuous_maps",
    "member_continuous_maps",
    "member_window_predictor",
    "sliding_window_map",
    "window_map_task",
    "window_tile",
    "window_tiles",
    "write_continuous_maps",
]

PredictFn = Callable[[np.ndarray], np.ndarray]


def sliding_window_map(predict_fn: PredictFn, stack: np.ndarray | LazyStack, grid: Grid, *,
                       size: int = 32, stride: int = 8, batch: int = 256,
                       strip_rows: int | None = None, rows: tuple[int, int] | None = None,
                       progress: bool = True) -> tuple[np.ndarray, Grid]:
    """Map P(ore) by sliding a ``size`` px window at ``stride`` px over the evidence stack.

    Window (i, j) has its upper-left pixel at row ``i * stride``, column ``j * stride`` of the
    stack, for every window that fits wholly inside it. Its prediction becomes output pixel
    (i, j), a ``stride`` x ``stride`` px block centred on the window centre. The output grid
    thus has pixel size ``stride * grid.pixel_size`` and its upper-left corner at
    ``(xmin + (size - stride) / 2 * dx, ymax - (size - stride) / 2 * dy)``, so window centres
    are output pixel centres; a margin of ``(size - stride) / 2`` px (plus the remainder of
    ``(W - size) / stride``) along the edges has no value because no window is centred there.

    The stack is read in horizontal strips (``strip_rows`` output rows plus a halo of
    ``size - stride`` px), so memory is bounded by one strip even for a
    :class:`~oremap.evidence.LazyStack` larger than memory. Batches are the same as for the
    whole array (valid windows in raster order, ``batch`` at a time, across strips), so the
    result does not depend on ``strip_rows``.

    Parameters
    ----------
    predict_fn : callable
        Takes raw crops, a (k, C, size, size) float32 array with k <= ``batch``, and returns
        (k,) probabilities of ore (NumPy array or anything ``np.asarray`` accepts, e.g. a CPU
        tensor).
    stack : (C, H, W) float32 array or LazyStack
        Co-registered evidence layers on ``grid``; NaN marks nodata.
    grid : Grid
        Grid of the stack.
    size, stride : int
        Window side and step, in pixels, >= 1.
    batch : int
        Windows per ``predict_fn`` call, >= 1; memory use is ``batch * C * size**2`` floats.
    strip_rows : int or None
        Output rows (rows of windows) per strip, >= 1; None picks about 64 MiB of stack per
        strip.
    rows : (start, stop) or None
        Only output rows ``start`` to ``stop - 1`` (a tile of the map: the block of those rows
        is returned, on its own grid); batches start afresh at ``start``, so a map assembled
        from tiles does not depend on which process computed each (see
        :func:`window_tiles`). None: every row.
    progress : bool
        Show a progress bar (:func:`oremap.progress.progress`).

    Returns
    -------
    probability : (n_rows, n_cols) float64 array
        NaN for windows touching a nodata pixel (counted in a ``DroppedDataWarning``).
    out_grid : Grid
        Grid of ``probability``, same CRS and nodata as ``grid``.

    Raises
    ------
    InputDataError
        If the stack is not (C, H, W) on ``grid``, a size is < 1, the window does not fit, or
        ``predict_fn`` returns the wrong number of values.
    """
    prob, out_grid, dropped = _sliding_window(predict_fn, stack, grid, size=size,
                                              stride=stride, batch=batch,
                                              strip_rows=strip_rows, rows=rows,
                                              progress=progress)
    if dropped:
        warnings.warn(f"sliding_window_map: {dropped} of {prob.size} windows touch nodata "
                      "pixels and are NaN in the map", DroppedDataWarning, stacklevel=2)
    return prob, out_grid


def window_tiles(grid: Grid, *, size: int, stride: int, block: int) -> list[tuple[int, int]]:
    """The tiles of a sliding-window map: ``(start, stop)`` output rows, ``block // stride``
    rows each (at least one), so that a tile reads about ``block`` rows of the stack."""
    n_rows = (grid.height - size) // stride + 1
    step = max(1, block // stride)
    return [(i, min(n_rows, i + step)) for i in range(0, max(n_rows, 0), step)]


def _sliding_window(predict_fn: PredictFn, stack: np.ndarray | LazyStack, grid: Grid, *,
                    size: int, stride: int, batch: int, strip_rows: int | None,
                    rows: tuple[int, int] | None, progress: bool
                    ) -> tuple[np.ndarray, Grid, int]:
    """:func:`sliding_window_map`, and the number of windows dropped for nodata (not
    warned)."""
    if not isinstance(stack, LazyStack):
        stack = np.asarray(stack)
    _check_window_args(stack, grid, size, stride, batch)
    if strip_rows is not None and (isinstance(strip_rows, bool) or strip_rows < 1):
        raise InputDataError(f"strip_rows must be >= 1 rows of windows, got {strip_rows!r}.")
    n_all = (grid.height - size) // stride + 1
    n_cols = (grid.width - size) // stride + 1
    first, stop = (0, n_all) if rows is None else (int(rows[0]), int(rows[1]))
    if not 0 <= first < stop <= n_all:
        raise InputDataError(f"rows must be (start, stop) with 0 <= start < stop <= {n_all} "
                             f"(the map's rows of windows); got {rows!r}.")
    n_rows = stop - first
    whole = _window_grid(grid, size, stride, n_all, n_cols)
    dx, dy = whole.pixel_size
    top = whole.bounds[3] - first * dy
    out_grid = Grid(whole.crs, (whole.bounds[0], top - n_rows * dy, whole.bounds[2], top),
                    whole.pixel_size, whole.nodata)
    if strip_rows is None:
        row_bytes = max(1, 4 * stack.shape[0] * grid.width * stride)
        strip_rows = max(1, _STRIP_BYTES // row_bytes)
    prob = np.full((n_rows, n_cols), np.nan)
    pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (crops, rows, cols)
    n_pending = n_valid = 0
    with progress_bar(n_rows * n_cols, "sliding-window map", "window", disable=not progress,
                      transient=True) as bar:
        for i0 in range(first, stop, strip_rows):
            i1 = min(stop, i0 + strip_rows)
            strip = stack[:, i0 * stride:(i1 - 1) * stride + size, :]
            ok = _complete_windows(np.isfinite(strip).all(axis=0), size, stride, i1 - i0,
                                   n_cols)
            rr, cc = np.nonzero(ok)
            n_valid += len(rr)
            bar.update((i1 - i0) * n_cols - len(rr))
            views = sliding_window_view(strip, (size, size), axis=(1, 2))[:, ::stride, ::stride]
            start = 0
            while start < len(rr):
                take = min(batch - n_pending, len(rr) - start)
                r, c = rr[start:start + take], cc[start:start + take]
                crops = np.ascontiguousarray(np.moveaxis(views[:, r, c], 0, 1),
                                             dtype=np.float32)
                pending.append((crops, r + i0 - first, c))
                n_pending += take
                start += take
                if n_pending == batch:
                    _predict_batch(predict_fn, pending, prob)
                    bar.update(n_pending)
                    pending, n_pending = [], 0
            del strip, views
        if pending:
            _predict_batch(predict_fn, pending, prob)
            bar.update(n_pending)
    return prob, out_grid, n_rows * n_cols - n_valid


#: Stack bytes per strip of :func:`sliding_window_map` when ``strip_rows`` is None.
_STRIP_BYTES = 64 * 1024**2


def _predict_batch(predict_fn: PredictFn,
                   pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                   prob: np.ndarray) -> None:
    """Predict the pending crops as one batch and write them into ``prob``."""
    crops = pending[0][0] if len(pending) == 1 else np.concatenate([p[0] for p in pending])
    r = np.concatenate([p[1] for p in pending])
    c = np.concatenate([p[2] for p in pending])
    p = np.asarray(predict_fn(crops), dtype=np.float64).reshape(-1)
    if p.shape != (len(r),):
        raise InputDataError(
            f"predict_fn returned {p.size} values for {len(r)} crops; it must return "
            "one probability per crop, shape (k,)."
        )
    prob[r, c] = p


def _check_window_args(stack: np.ndarray, grid: Grid, size: int, stride: int,
                       batch: int) -> None:
    if stack.ndim != 3 or stack.shape[1:] != grid.shape:
        raise InputDataError(
            f"stack must be (C, H, W) with (H, W) = grid shape {grid.shape}; got {stack.shape}."
        )
    if size < 1 or stride < 1 or batch < 1:
        raise InputDataError(f"size, stride and batch must be >= 1; got {size}, {stride}, "
                             f"{batch}.")
    if size > grid.height or size > grid.width:
        raise InputDataError(f"window of {size} px does not fit in the {grid.height} x "
                             f"{grid.width} px stack; use a smaller size.")


def _window_grid(grid: Grid, size: int, stride: int, n_rows: int, n_cols: int) -> Grid:
    dx, dy = grid.pixel_size
    margin = (size - stride) / 2.0
    xmin = grid.bounds[0] + margin * dx
    ymax = grid.bounds[3] - margin * dy
    return Grid(grid.crs, (xmin, ymax - n_rows * stride * dy, xmin + n_cols * stride * dx, ymax),
                (stride * dx, stride * dy), grid.nodata)


def _complete_windows(valid: np.ndarray, size: int, stride: int, n_rows: int,
                      n_cols: int) -> np.ndarray:
    """(n_rows, n_cols) bool: window has no invalid pixel (summed-area table, O(H W))."""
    sat = np.zeros((valid.shape[0] + 1, valid.shape[1] + 1), dtype=np.int64)
    sat[1:, 1:] = np.cumsum(np.cumsum(~valid, axis=0), axis=1)
    r0 = np.arange(n_rows)[:, None] * stride
    c0 = np.arange(n_cols)[None, :] * stride
    bad = sat[r0 + size, c0 + size] - sat[r0, c0 + size] - sat[r0 + size, c0] + sat[r0, c0]
    return bad == 0


def member_continuous_maps(members: Sequence[str], stack: np.ndarray | LazyStack | None,
                           grid: Grid,
                           sample_set: Any, train_dir: Path, *, size: int, stride: int,
                           block: int = 2048, progress: bool = True, tasks: Any = None
                           ) -> dict[str, tuple[np.ndarray, Grid]]:
    """Sliding-window P(ore) maps of every member: the mean over its fold models.

    Each fold's model sees windows normalised with that fold's scaling. Each (member, fold)
    map is computed tile by tile (:func:`window_tiles` of ``block`` stack rows); the tiles
    run side by side (:func:`oremap.compute.thread_map`) on an array. ``tasks``: a function
    mapping the (member, fold, tile) units to their ``(block of the map, windows dropped)``
    (each a Dask task, see :func:`oremap.pipeline.run_maps`; ``stack`` is then not read and
    may be None). The tiles are assembled and the folds summed in the same order either way,
    so the maps are the same. Windows touching nodata are counted in one
    ``DroppedDataWarning``.
    """
    tiles = window_tiles(grid, size=size, stride=stride, block=block)
    units = [(name, fold, tile) for name in members for fold in range(sample_set.n_folds)
             for tile in tiles]
    if tasks is not None:
        done = dict(zip(units, tasks(units)))
    else:
        # side by side on an array; a LazyStack reads through one cache: one after the other
        workers = 1 if isinstance(stack, LazyStack) else None
        loaded = _Members(sample_set, train_dir)
        with progress_bar(len(units), "sliding-window maps", "tile",
                          disable=not progress) as bar:
            def one(unit: tuple[str, int, tuple[int, int]]) -> tuple[np.ndarray, int]:
                name, fold, tile = unit
                out = window_tile(loaded.predict(name, fold), stack, grid, size=size,
                                  stride=stride, rows=tile)
                bar.update()
                return out

            done = dict(zip(units, thread_map(one, units, workers=workers,
                                              costs=[member_cost(u[0]) for u in units])))
    n_rows = (grid.height - size) // stride + 1
    n_cols = (grid.width - size) // stride + 1
    out_grid = _window_grid(grid, size, stride, n_rows, n_cols)
    out: dict[str, tuple[np.ndarray, Grid]] = {}
    for name in members:
        acc = None
        for fold in range(sample_set.n_folds):
            arr = np.concatenate([done[(name, fold, tile)][0] for tile in tiles])
            acc = arr if acc is None else acc + arr
        out[name] = (acc / sample_set.n_folds, out_grid)
    if members:
        dropped = sum(done[(members[0], 0, tile)][1] for tile in tiles)
        if dropped:
            warnings.warn(f"sliding-window maps: {dropped} of {n_rows * n_cols} windows touch "
                          "nodata pixels and are NaN in every map", DroppedDataWarning,
                          stacklevel=2)
    return out


class _Members:
    """The fold models of a sample set, each loaded once (thread-safe), as functions of raw
    crops normalised with their fold's scaling."""

    def __init__(self, sample_set: Any, train_dir: Path):
        self.ss, self.train_dir = sample_set, Path(train_dir)
        self.fns: dict[tuple[str, int], PredictFn] = {}
        self.lock = threading.Lock()

    def predict(self, name: str, fold: int) -> PredictFn:
        with self.lock:
            if (name, fold) not in self.fns:
                self.fns[(name, fold)] = member_window_predictor(name, fold, self.ss,
                                                                 self.train_dir)
            return self.fns[(name, fold)]


def member_window_predictor(name: str, fold: int, sample_set: Any,
                            train_dir: Path) -> PredictFn:
    """P(ore) of raw crops from one member's fold model, normalised with that fold's
    scaling."""
    fn = load_member(name, Path(train_dir) / f"fold{fold}")

    def predict(x: np.ndarray) -> np.ndarray:
        return fn(sample_set.normalise(x, fold))

    return predict


def window_tile(predict: PredictFn, stack: np.ndarray | LazyStack, grid: Grid, *, size: int,
                stride: int, rows: tuple[int, int]) -> tuple[np.ndarray, int]:
    """One tile (rows of windows ``rows``) of a sliding-window map, and the number of its
    windows that touch nodata."""
    prob, _, dropped = _sliding_window(predict, stack, grid, size=size, stride=stride,
                                       batch=256, strip_rows=None, rows=rows, progress=False)
    return prob, dropped


def write_continuous_maps(maps: Mapping[str, tuple[np.ndarray, Grid]],
                          ensemble_members: Sequence[str], weights: np.ndarray,
                          out: Path) -> tuple[np.ndarray, Grid]:
    """Write ``prob_<member>_continuous.tif`` and the weighted ensemble map.

    Returns the ensemble map and its grid.
    """
    for name, (arr, g2) in maps.items():
        band, tags = describe_map(name, continuous=True)
        write_probability_map(out / f"prob_{name}_continuous.tif", arr, g2, band_name=band,
                              tags=tags)
    stacked = np.stack([maps[m][0] for m in ensemble_members])
    ens = np.tensordot(weights, stacked, axes=1)
    g2 = maps[ensemble_members[0]][1]
    write_probability_map(out / "prob_ensemble_continuous.tif", ens, g2,
                          band_name="P(ore) weighted average of the members (sliding window)",
                          tags={"quantity": "P(ore)", "kind": "rule",
                                "name": "weighted_average", "support": "sliding window",
                                "members": ",".join(ensemble_members)})
    return ens, g2


def window_map_task(config: Config, root: Path, name: str, fold: int, tile: tuple[int, int],
                    threads: int) -> tuple[np.ndarray, int]:
    """One tile of one (member, fold) sliding-window map as a Dask task, read from the
    (shared) run folder ``root`` and computed exactly as locally, with ``threads`` torch
    threads: the block of the map and its windows dropped for nodata."""

    set_threads(threads)
    stack, sgrid, ss = map_inputs(config, Path(root))
    predict = member_window_predictor(name, fold, ss, stage_folder(RunDir(root), "train"))
    return window_tile(predict, stack, sgrid, size=config.samples.crop_size,
                            stride=config.maps.stride, rows=tuple(tile))


def continuous_maps(config: Config, run: RunDir, out: Path, *, progress: bool,
                     client: Any = None) -> tuple[np.ndarray, Grid]:
    """Sliding-window maps of every member and their weighted ensemble (a finer view beside
    the recommended cell map, on which the targets are drawn);
    with a Dask ``client`` each (member, fold, tile) is a task (:func:`window_map_task`)."""

    tasks = None
    if client is None:
        stack, names, sgrid = load_stack_auto(stage_folder(run, "evidence"))
        stack = context_stack(config, stack, names, sgrid)[0]
    else:  # the tasks read the stack themselves; here only its grid is needed

        stack, sgrid = None, EvidenceManifest.read(stage_folder(run, "evidence")).grid

        def tasks(units: Sequence[tuple[str, int, tuple[int, int]]]) -> list[Any]:
            tag = uuid.uuid4().hex[:8]
            return run_tasks(client, window_map_task,
                             [(config, run.root, name, fold, tile,
                               config.compute.threads_per_worker)
                              for name, fold, tile in units],
                             keys=[f"oremap-map-{tag}-{name}-fold{fold}-rows{tile[0]}"
                                   for name, fold, tile in units],
                             desc="sliding-window maps (Dask)", progress=progress,
                             costs=[member_cost(name) for name, _, _ in units])

    cont = member_continuous_maps(
        config.members(), stack, sgrid, load_sample_set(stage_folder(run, "samples")),
        stage_folder(run, "train"), size=config.samples.crop_size, stride=config.maps.stride,
        block=config.grid.block, progress=progress, tasks=tasks)

    ens_members = ensemble_members(config)
    weights = read_weights(run.root / contract.file("ensemble", "weights"), ens_members)
    return write_continuous_maps(cont, ens_members, weights, out)
