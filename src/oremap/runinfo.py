"""The run directory contract: resolved config, run.json with versions and stage timings."""

from __future__ import annotations

import contextlib
import logging
import platform
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from oremap import __version__
from oremap.config import Config, to_toml
from oremap.errors import StageNotReadyError
from oremap.io import read_json, write_json, write_text

log = logging.getLogger("oremap")

STAGES = ("evidence", "samples", "train", "evaluate", "predict", "ensemble", "maps", "report")


def versions() -> dict[str, str]:
    """Versions of oremap and the libraries whose behaviour shapes the results."""
    import geopandas
    import numpy
    import rasterio
    import sklearn
    import torch

    return {"oremap": __version__, "python": platform.python_version(),
            "torch": torch.__version__, "numpy": numpy.__version__,
            "rasterio": rasterio.__version__, "geopandas": geopandas.__version__,
            "scikit-learn": sklearn.__version__}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunDir:
    """A run folder: ``config.toml``, ``run.json`` and one sub-folder per stage."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def stage(self, name: str) -> Path:
        """Folder of stage ``name`` (created)."""
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def require(self, name: str, marker: str, *, needed_by: str) -> Path:
        """Folder of an earlier stage, or a clear error if that stage has not been run."""
        path = self.root / name
        if not (path / marker).exists():
            raise StageNotReadyError(
                f"stage {needed_by!r} needs the outputs of stage {name!r} ({path / marker} is "
                f"missing); run `oremap {name} {self.root}` first (or `oremap run CONFIG "
                f"--out {self.root}` for every stage)."
            )
        return path

    @property
    def info_path(self) -> Path:
        return self.root / "run.json"

    def info(self) -> dict[str, Any]:
        return read_json(self.info_path) if self.info_path.exists() else {}

    def start(self, config: Config, *, device: str | None = None) -> None:
        """Write the resolved config and (re)start run.json, keeping earlier stage timings."""
        self.root.mkdir(parents=True, exist_ok=True)
        write_text(self.root / "config.toml", to_toml(config))
        info = self.info()
        info.update(name=config.name, seed=config.seed, versions=versions(),
                    device=device or info.get("device", "cpu"), started=_now())
        info.setdefault("stages", {})
        info.pop("finished", None)
        write_json(self.info_path, info)

    def record(self, stage: str, seconds: float, **extra: Any) -> None:
        info = self.info()
        info.setdefault("stages", {})[stage] = {"seconds": round(seconds, 3), "finished": _now(),
                                                **extra}
        write_json(self.info_path, info)

    def finish(self) -> None:
        info = self.info()
        info["finished"] = _now()
        write_json(self.info_path, info)

    @contextlib.contextmanager
    def timed(self, stage: str) -> Iterator[dict[str, Any]]:
        """Time a stage and record it in run.json when it completes."""
        extra: dict[str, Any] = {}
        t0 = time.perf_counter()
        log.info("stage %s: started", stage)
        yield extra
        seconds = time.perf_counter() - t0
        self.record(stage, seconds, **extra)
        log.info("stage %s: done in %.1f s", stage, seconds)
