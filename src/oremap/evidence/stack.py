"""Reading the evidence stack: whole, by window, or lazily in cached strips."""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from oremap import io
from oremap.errors import InputDataError
from oremap.evidence.manifest import MANIFEST, EvidenceManifest
from oremap.grid import Grid
from oremap.stages import stage_missing

__all__ = [
    "DEFAULT_MAX_BYTES",
    "LazyStack",
    "is_stack",
    "load_stack",
    "load_stack_auto",
    "open_stack",
]

log = logging.getLogger("oremap.evidence")


# --------------------------------------------------------------------------- loading


def load_stack(evidence_dir: Path, *, window: Window | None = None
               ) -> tuple[np.ndarray, list[str], Grid]:
    """Read the evidence layers as one array.

    Parameters
    ----------
    evidence_dir : Path
        Folder written by :func:`build_evidence`.
    window : rasterio Window or None
        Part of the grid to read; default the whole grid (mind the memory: 4 bytes per
        pixel and layer).

    Returns
    -------
    stack : (C, H, W) float32 array
        NaN where a layer has no data.
    names : list of str
        Layer names, in channel order.
    grid : Grid
        The grid of the returned pixels.

    Raises
    ------
    StageNotReadyError
        If ``stack.json`` or a layer file is missing or the stack is incomplete.
    InputDataError
        If a layer's grid differs from the manifest's.
    """
    manifest = _complete_manifest(evidence_dir)
    grid = manifest.grid if window is None else manifest.grid.subgrid(window)
    return _read_layers(Path(evidence_dir), manifest, window, grid), manifest.names, grid


def _complete_manifest(evidence_dir: Path) -> EvidenceManifest:
    """The manifest of a finished stack; StageNotReadyError if it is absent or incomplete."""
    manifest = EvidenceManifest.read(Path(evidence_dir))
    if not manifest.complete:
        raise stage_missing(
            "evidence", f"{Path(evidence_dir) / MANIFEST} is incomplete (an earlier build "
            "stopped; running the stage again resumes it)", Path(evidence_dir).parent)
    return manifest


def _read_layers(evidence_dir: Path, manifest: EvidenceManifest, window: Window | None,
                 grid: Grid, layers: Sequence[int] | None = None) -> np.ndarray:
    """Layers ``layers`` (default all) of ``window`` as a (len(layers), h, w) float32 array."""
    records = manifest.layers if layers is None else [manifest.layers[i] for i in layers]
    out = np.empty((len(records), grid.height, grid.width), dtype=np.float32)
    for i, rec in enumerate(records):
        path = evidence_dir / rec.path
        if not path.exists():
            raise stage_missing(
                "evidence", f"evidence layer {rec.name!r}: {path} is missing", evidence_dir.parent)
        arr, g = io.read_raster(path, window=window)
        if arr.shape != grid.shape or not np.allclose(g.bounds, grid.bounds, rtol=0,
                                                      atol=1e-6 * max(grid.pixel_size)):
            raise InputDataError(
                f"evidence layer {rec.name!r}: {path} has shape {arr.shape} and bounds "
                f"{list(g.bounds)}, the stack's grid {grid.shape} and {list(grid.bounds)}; "
                "rebuild the evidence.")
        out[i] = arr
    return out


# --------------------------------------------------------------------------- lazy loading

#: Stacks up to this size (bytes, float32) are read whole by :func:`load_stack_auto`.
DEFAULT_MAX_BYTES = 2 * 1024**3


class LazyStack:
    """The evidence stack read on demand: ``stack[:, r0:r1, c0:c1]`` reads only that window.

    Behaves like the (C, H, W) float32 array of :func:`load_stack` for basic slicing (NaN
    for nodata, same values) without holding it in memory. Reads go through a small LRU cache
    of horizontal strips of ``strip_rows`` rows (all columns, all layers), so windows read in
    raster order (cells, crops) read each strip once; a request spanning more strips than the
    cache holds is read directly. The layer files are opened for each read only, so there is
    nothing to leak; :meth:`close` (or leaving a ``with`` block) empties the cache.

    Parameters
    ----------
    evidence_dir : Path
        Folder written by :func:`build_evidence`.
    strip_rows : int
        Rows per cached strip, >= 1 (256 matches the GeoTIFF tiles of oremap's layers).
    cache_strips : int
        Strips kept, >= 1. Memory: ``cache_strips * strip_rows * W * C * 4`` bytes, e.g.
        3 x 256 rows x 24,240 px x 14 layers = 1.0 GiB.

    Attributes
    ----------
    shape : (C, H, W) tuple of int
    ndim : int
        3.
    dtype : numpy dtype
        float32.
    layer_names : list of C str
    grid : Grid
    strip_reads, direct_reads : int
        Strips read from disk so far, and requests read directly (bypassing the cache).

    Raises
    ------
    StageNotReadyError
        If ``stack.json`` is missing or the stack incomplete (a missing layer file is
        reported when it is read).
    InputDataError
        If ``strip_rows`` or ``cache_strips`` is < 1.
    """

    ndim = 3
    dtype = np.dtype(np.float32)

    def __init__(self, evidence_dir: Path, *, strip_rows: int = 256,
                 cache_strips: int = 3) -> None:
        for name, value in (("strip_rows", strip_rows), ("cache_strips", cache_strips)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputDataError(f"LazyStack: {name} must be a whole number >= 1, got "
                                     f"{value!r}.")
        self.evidence_dir = Path(evidence_dir)
        self._manifest = _complete_manifest(self.evidence_dir)
        self.grid: Grid = self._manifest.grid
        self.layer_names: list[str] = self._manifest.names
        self.shape = (len(self.layer_names), self.grid.height, self.grid.width)
        self.strip_rows, self.cache_strips = int(strip_rows), int(cache_strips)
        self.strip_reads = self.direct_reads = 0
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return (f"LazyStack({str(self.evidence_dir)!r}, shape={self.shape}, "
                f"strip_rows={self.strip_rows}, cache_strips={self.cache_strips})")

    def __enter__(self) -> LazyStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop the cached strips (the stack stays usable; later reads refill the cache)."""
        self._cache.clear()

    @property
    def nbytes(self) -> int:
        """Size of the whole stack as float32, bytes (what :func:`load_stack` would hold)."""
        return 4 * math.prod(self.shape)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError(
            f"a LazyStack ({self.nbytes / 1024**3:.2f} GiB) is not turned into an array "
            "implicitly; read windows with stack[:, r0:r1, c0:c1], or use load_stack() for "
            "the whole array.")

    def __getitem__(self, key: Any) -> np.ndarray:
        """``stack[layers, rows, cols]`` with int or step-1 slices; a new float32 array."""
        layers, rows, cols = self._parse_key(key)
        r0, r1 = rows
        c0, c1 = cols
        n_layers = len(range(self.shape[0])[layers]) if isinstance(layers, slice) else None
        if r1 <= r0 or c1 <= c0:
            shape = (max(r1 - r0, 0), max(c1 - c0, 0))
            return np.empty(shape if n_layers is None else (n_layers, *shape), np.float32)
        k0, k1 = r0 // self.strip_rows, (r1 - 1) // self.strip_rows
        if k1 - k0 + 1 > self.cache_strips:
            window = Window(c0, r0, c1 - c0, r1 - r0)
            index = range(self.shape[0])[layers]
            self.direct_reads += 1
            out = _read_layers(self.evidence_dir, self._manifest, window,
                               self.grid.subgrid(window),
                               list(index) if n_layers is not None else [index])
            return out if n_layers is not None else out[0]
        parts = []
        for k in range(k0, k1 + 1):
            s0 = k * self.strip_rows
            strip = self._strip(k)
            parts.append(strip[layers, max(r0, s0) - s0:min(r1, s0 + strip.shape[1]) - s0,
                               c0:c1])
        axis = 0 if n_layers is None else 1
        return np.array(parts[0]) if len(parts) == 1 else np.concatenate(parts, axis=axis)

    def _parse_key(self, key: Any) -> tuple[int | slice, tuple[int, int], tuple[int, int]]:
        if not isinstance(key, tuple):
            key = (key,)
        if len(key) > 3:
            raise IndexError(f"LazyStack is 3-D (C, H, W); got {len(key)} indices.")
        key = key + (slice(None),) * (3 - len(key))
        layers = key[0]
        if isinstance(layers, (int, np.integer)) and not isinstance(layers, bool):
            if not -self.shape[0] <= layers < self.shape[0]:
                raise IndexError(f"layer {layers} is out of range for {self.shape[0]} layers.")
            layers = int(layers) % self.shape[0]
        elif not isinstance(layers, slice):
            raise IndexError(
                f"LazyStack supports an int or a slice for the layer axis, got {layers!r}.")
        spans = []
        for axis, k in ((1, key[1]), (2, key[2])):
            if not isinstance(k, slice) or k.step not in (None, 1):
                raise IndexError(
                    f"LazyStack supports only step-1 slices along rows and columns, got {k!r}; "
                    "read a window, then index the array.")
            start, stop, _ = k.indices(self.shape[axis])
            spans.append((start, stop))
        return layers, spans[0], spans[1]

    def _strip(self, k: int) -> np.ndarray:
        """Strip ``k`` (rows k*strip_rows onwards, all layers and columns), from the cache."""
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        r0 = k * self.strip_rows
        window = Window(0, r0, self.shape[2], min(self.strip_rows, self.shape[1] - r0))
        strip = _read_layers(self.evidence_dir, self._manifest, window,
                             self.grid.subgrid(window))
        self.strip_reads += 1
        self._cache[k] = strip
        while len(self._cache) > self.cache_strips:
            self._cache.popitem(last=False)
        return strip


def open_stack(evidence_dir: Path, *, strip_rows: int = 256, cache_strips: int = 3
               ) -> LazyStack:
    """Open the evidence stack for windowed reading (see :class:`LazyStack`)."""
    return LazyStack(evidence_dir, strip_rows=strip_rows, cache_strips=cache_strips)


def load_stack_auto(evidence_dir: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                    strip_rows: int = 256, cache_strips: int = 3
                    ) -> tuple[np.ndarray | LazyStack, list[str], Grid]:
    """The evidence stack in memory if it is small, else a :class:`LazyStack`.

    Parameters
    ----------
    evidence_dir : Path
        Folder written by :func:`build_evidence`.
    max_bytes : int
        Largest stack (``C * H * W * 4`` bytes) read whole; default 2 GiB.
    strip_rows, cache_strips : int
        Cache of the :class:`LazyStack` when the stack is larger.

    Returns
    -------
    stack : (C, H, W) float32 array or LazyStack
    names : list of str
    grid : Grid

    Raises
    ------
    StageNotReadyError, InputDataError
        As :func:`load_stack`.
    """
    manifest = _complete_manifest(evidence_dir)
    nbytes = 4 * len(manifest.layers) * manifest.grid.height * manifest.grid.width
    if nbytes <= max_bytes:
        return load_stack(evidence_dir)
    lazy = LazyStack(evidence_dir, strip_rows=strip_rows, cache_strips=cache_strips)
    log.info("evidence stack of %.2f GiB exceeds %.2f GiB: read in strips of %d rows",
             nbytes / 1024**3, max_bytes / 1024**3, strip_rows)
    return lazy, lazy.layer_names, lazy.grid


def is_stack(obj: object) -> bool:
    """True for what the stages accept as an evidence stack: an ndarray or a LazyStack."""
    return isinstance(obj, (np.ndarray, LazyStack))
