"""The evidence stack's manifest: ``stack.json``, its layer records and the grid in JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pyproj import CRS

from oremap import io
from oremap.errors import InputDataError
from oremap.grid import Grid
from oremap.stages import stage_missing

__all__ = [
    "ALGORITHM_VERSION",
    "MANIFEST",
    "EvidenceManifest",
    "LayerRecord",
    "grid_from_dict",
    "grid_to_dict",
]

MANIFEST = "stack.json"
#: Bump when a change of the algorithms changes layer values, so resumed runs recompute.
ALGORITHM_VERSION = 1


@dataclass(frozen=True)
class LayerRecord:
    """What ``stack.json`` records about one layer (paths relative to the evidence folder).

    ``n_used`` / ``n_dropped`` count samples (geochemistry; ``n_duplicates`` merged into
    others) or input geometries (geology). ``min``, ``max``, ``mean`` are over the pixels with
    data; ``coverage_fraction`` is the share of pixels inside coverage, ``valid_fraction``
    the share with a value (less where an IDW radius leaves covered pixels without samples).
    """

    name: str
    kind: str
    measure: str
    units: str
    path: str
    preview: str | None
    source: str
    parameters: dict[str, Any]
    spec_hash: str
    min: float | None
    max: float | None
    mean: float | None
    coverage_fraction: float
    valid_fraction: float
    n_used: int
    n_dropped: int
    n_duplicates: int = 0
    seconds: float = 0.0
    bytes: int | None = None
    sha256: str | None = None

    def intact(self, out_dir: Path) -> bool:
        """Whether the layer's GeoTIFF is still the file that was written (size and SHA-256)."""
        path = Path(out_dir) / self.path
        if self.sha256 is None or not path.is_file() or path.stat().st_size != self.bytes:
            return False
        return io.file_digest(path)["sha256"] == self.sha256

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerRecord:
        """Inverse of ``dataclasses.asdict``."""
        return cls(**d)


@dataclass(frozen=True)
class EvidenceManifest:
    """The evidence stack on disk: grid, layers in order, and whether all were written."""

    out_dir: Path
    grid: Grid
    layers: tuple[LayerRecord, ...]
    complete: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """Layer names in stack order."""
        return [r.name for r in self.layers]

    def layer(self, name: str) -> LayerRecord:
        """The record of layer ``name``."""
        for r in self.layers:
            if r.name == name:
                return r
        raise InputDataError(f"no evidence layer {name!r}; the stack has {self.names}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form written to ``stack.json``."""
        return {"format": "oremap-evidence", "algorithm_version": ALGORITHM_VERSION,
                "complete": self.complete, "grid": grid_to_dict(self.grid),
                "names": self.names, "layers": [asdict(r) for r in self.layers], **self.extra}

    @classmethod
    def read(cls, evidence_dir: Path) -> EvidenceManifest:
        """Read ``evidence_dir/stack.json``; StageNotReadyError if it is absent."""
        evidence_dir = Path(evidence_dir)
        path = evidence_dir / MANIFEST
        if not path.exists():
            raise stage_missing("evidence", f"{path} does not exist",
                                             evidence_dir.parent)
        d = io.read_json(path)
        try:
            return cls(evidence_dir, grid_from_dict(d["grid"]),
                       tuple(LayerRecord.from_dict(r) for r in d["layers"]),
                       bool(d.get("complete", False)))
        except (KeyError, TypeError) as exc:
            raise InputDataError(f"{path} is not an oremap evidence manifest ({exc}); "
                                 "delete it and rebuild the evidence.") from None


def grid_to_dict(grid: Grid) -> dict[str, Any]:
    """A Grid as JSON-ready values (CRS as WKT)."""
    return {"crs": grid.crs.to_wkt(), "bounds": list(grid.bounds),
            "pixel_size": list(grid.pixel_size), "nodata": grid.nodata,
            "width": grid.width, "height": grid.height}


def grid_from_dict(d: dict[str, Any]) -> Grid:
    """Inverse of :func:`grid_to_dict`."""
    return Grid(CRS.from_wkt(d["crs"]), tuple(d["bounds"]), tuple(d["pixel_size"]),
                d["nodata"])
