"""The run folder: its marker, its lock, the resolved config and run.json (versions, timings).

What each stage reads and writes is the stage contract in :mod:`oremap.contract`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import platform
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from oremap import __version__, contract, io
from oremap.config import Config, load_config, to_toml
from oremap.contract import RUN_FILES, STAGES, input_paths
from oremap.errors import ConfigError, RunFolderError, StageNotReadyError
from oremap.io import read_json, write_json, write_text

__all__ = [
    "LOCK",
    "LOCK_OWNER",
    "MARKER",
    "RunDir",
    "check_out_folder",
    "load_run_config",
    "stage",
    "stage_folder",
    "versions",
    "with_stability_seeds",
]

log = logging.getLogger("oremap")

#: Marks a folder made by oremap: the only kind ``--overwrite`` may clear.
MARKER = ".oremap-run"
#: The lock file, and the file naming the process that holds the lock.
LOCK = ".oremap.lock"
LOCK_OWNER = ".oremap.lock.json"


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
    """A run folder: marker, lock, ``config.toml``, ``run.json`` and one folder per stage."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def stage(self, name: str) -> Path:
        """Folder ``name`` of a stage (created)."""
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    # ------------------------------------------------------------------ ownership

    @property
    def marked(self) -> bool:
        """Whether oremap made this folder (it carries the run marker)."""
        return (self.root / MARKER).is_file()

    def claim(self) -> None:
        """Make sure the folder is oremap's: create and mark it, or refuse a foreign folder.

        A new or empty folder is marked; so is a run folder of an oremap version before the
        marker (it holds oremap's run.json). Any other non-empty folder is refused, so oremap
        never writes among, or later deletes, files it did not create.
        """
        if self.root.exists() and not self.root.is_dir():
            raise RunFolderError(f"run folder {self.root} is a file; choose a folder for --out")
        if self.marked:
            _check_writable(self.root)
            return
        entries = sorted(p.name for p in self.root.iterdir()) if self.root.exists() else []
        legacy = _legacy_run(self.root)
        if entries and not legacy:
            shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
            raise RunFolderError(
                f"{self.root} is not empty ({shown}) and was not made by oremap (no {MARKER} "
                "marker); oremap writes and may later delete files in its run folder, so it "
                "must be a new or empty folder. Choose another --out, e.g. "
                f"{self.root / 'oremap_run'}.")
        self.root.mkdir(parents=True, exist_ok=True)
        _check_writable(self.root)
        write_json(self.root / MARKER, {"created_by": "oremap", "oremap": __version__,
                                        "created": _now(), "adopted": bool(legacy)})

    def clear(self) -> list[str]:
        """Delete what oremap wrote here (``--overwrite``); returns the names left alone.

        Only a marked folder is cleared, and only the stage folders of the contract, the
        resolved config and run.json: anything else someone put there stays.
        """
        if not self.marked:
            raise RunFolderError(
                f"--overwrite refused: {self.root} carries no {MARKER} marker, so oremap did "
                "not make it and will not delete anything in it.")
        owned = {f for s in STAGES.values() for f in s.folders} | set(RUN_FILES.values())
        left = []
        for entry in sorted(self.root.iterdir()):
            if entry.name in owned:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            elif entry.name not in (MARKER, LOCK, LOCK_OWNER):
                left.append(entry.name)
        if left:
            log.warning("--overwrite: left %s in %s (not written by oremap)", left, self.root)
        return left

    # ------------------------------------------------------------------ lock

    @contextlib.contextmanager
    def locked(self) -> Iterator[RunDir]:
        """Hold the run folder's lock (re-entrant within a process).

        A second process on the same folder gets a RunFolderError naming the process that holds
        the lock. The lock is an OS file lock (``filelock``): it dies with its process, so a
        killed run never leaves the folder locked.
        """
        import filelock

        self.root.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(self.root / LOCK, timeout=0, is_singleton=True,
                                 thread_local=False)
        outer = not lock.is_locked
        try:
            lock.acquire()
        except filelock.Timeout:
            raise RunFolderError(_held_message(self.root)) from None
        except PermissionError as exc:
            raise RunFolderError(f"cannot lock run folder {self.root}: {exc.strerror} (check "
                                 "the folder's permissions)") from None
        try:
            if outer:
                write_json(self.root / LOCK_OWNER, {
                    "pid": os.getpid(), "host": socket.gethostname(),
                    "command": " ".join(sys.argv), "since": _now()})
            yield self
        finally:
            if outer:
                (self.root / LOCK_OWNER).unlink(missing_ok=True)
            lock.release()

    # ------------------------------------------------------------------ run.json

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


def _legacy_run(root: Path) -> bool:
    """A run folder written by an oremap version before the marker (its run.json says so)."""
    try:
        info = read_json(root / RUN_FILES["info"])
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and "oremap" in info.get("versions", {})


def _check_writable(root: Path) -> None:
    if not os.access(root, os.W_OK | os.X_OK):
        raise RunFolderError(f"run folder {root} is not writable by this user (permission "
                             "denied); choose another --out or fix its permissions.")


def _held_message(root: Path) -> str:
    try:
        owner = read_json(root / LOCK_OWNER)
        who = (f"process {owner['pid']} on {owner['host']} (`{owner['command']}`, since "
               f"{owner['since']})")
    except (OSError, ValueError, KeyError, TypeError):
        who = "another oremap process"
    return (f"run folder {root} is in use by {who}; wait for it to finish or stop it. Two "
            "processes must not write one run folder.")


def check_out_folder(config: Config, run_dir: Path, config_path: Path | None = None) -> None:
    """Refuse a run folder that holds the configuration file or any input file.

    oremap writes (and with --overwrite deletes) inside its run folder, so the user's own files
    must not live there. The stored ``config.toml`` of an oremap run folder is allowed.
    """

    root = Path(run_dir).resolve()
    own = {"config.toml"}
    found = []
    if config_path is not None:
        cp = Path(config_path).resolve()
        stored = cp.parent == root and cp.name in own and (root / MARKER).is_file()
        if _inside(cp, root) and not stored:
            found.append(f"the configuration file {cp}")
    for p in input_paths(config.model_dump(mode="json")):
        if _inside(Path(p).resolve(), root):
            found.append(f"the input {p}")
    if found:
        raise ConfigError(
            f"--out {run_dir} holds {found[0]}" + (f" and {len(found) - 1} more input(s)"
                                                  if len(found) > 1 else "") +
            "; oremap writes (and with --overwrite deletes) files in its run folder, so it "
            f"must not hold your own files. Use a new folder, e.g. --out {root / 'oremap_run'}.")


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def load_run_config(run_dir: Path, config_path: Path | None = None) -> Config:
    """The configuration of a run folder, or the one in ``config_path``."""

    run_dir = Path(run_dir)
    if config_path is not None:
        return load_config(config_path)
    path = run_dir / RUN_FILES["config"]
    if not path.exists():
        raise StageNotReadyError(
            f"{run_dir} holds no config.toml; start with `oremap run CONFIG --out {run_dir}` or "
            "pass --config CONFIG.")
    return load_config(path)


# --------------------------------------------------------------------------- stage execution


def stage(name: str) -> Callable[[Callable[..., Path]], Callable[..., Path]]:
    """Make ``run_<name>`` keep the stage contract of :mod:`oremap.contract`.

    The wrapped function runs only in a folder oremap owns, under the run folder's lock, after
    checking that every stage it depends on is complete, intact and current for this
    configuration (else a StageNotReadyError names what changed and the command that
    recomputes it). It starts from an empty stage folder, except to resume (evidence layers
    always, whose reuse checks spec hash and checksum; training with ``resume=True``, only on
    the same inputs), and records its inputs and its outputs' checksums in ``stage.json``.
    """
    def decorate(fn: Callable[..., Path]) -> Callable[..., Path]:
        @functools.wraps(fn)
        def wrapper(config: Config, run_dir: Path, **kwargs: Any) -> Path:
            rd = RunDir(run_dir)
            rd.claim()
            with rd.locked():
                return _execute(name, fn, config, rd, kwargs)

        wrapper.stage_name = name  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _execute(name: str, fn: Callable[..., Path], config: Config, rd: RunDir,
             kwargs: dict[str, Any]) -> Path:
    spec = STAGES[name]
    if name == "stability" and kwargs.get("seeds"):
        config = with_stability_seeds(config, int(kwargs["seeds"]))
    inputs = contract.require_current(rd.root, name, config)
    previous = contract.read_manifest(rd.root, name)
    same = previous is not None and previous.get("fingerprint") == inputs.fingerprint
    if name == "evidence":
        keep = True
    elif name == "train" and kwargs.get("resume"):
        if previous is not None and not same and kwargs["resume"] is True:
            what = "; ".join(contract.changes(previous.get("inputs", {}), inputs))
            raise ConfigError(
                f"cannot resume training in {rd.root}: it was started on other inputs ({what}). "
                f"Run `oremap train {rd.root}` without --resume to train afresh.")
        keep = True
    else:
        keep = spec.resumable and same
    if not keep:
        contract.clear(rd.root, name)
    for folder in spec.folders:
        io.remove_temporary_files(rd.root / folder)
    contract.begin(rd.root, name, inputs)
    try:
        out = fn(config, rd.root, **kwargs)
    except BaseException:
        _drop_if_empty(rd.root, name)
        raise
    layers = None
    if name == "evidence":
        layers = io.read_json(rd.root / contract.file("evidence", "stack"))["names"]
    contract.finish(rd.root, name, inputs, layers=layers)
    return out


def _drop_if_empty(root: Path, name: str) -> None:
    """After a failed stage, remove its folders if they hold nothing but the manifest.

    A stage that failed before writing anything (bad input) leaves no trace; one that had
    finished part of its work (evidence layers, training checkpoints) keeps it to resume.
    """
    if not contract.output_files(root, name):
        contract.clear(root, name)


def with_stability_seeds(config: Config, seeds: int) -> Config:
    """``config`` with ``[ensemble] stability_seeds = seeds``."""
    return config.model_copy(update={
        "ensemble": config.ensemble.model_copy(update={"stability_seeds": seeds})})


def stage_folder(run: RunDir, stage: str) -> Path:
    """The (first) folder of ``stage`` in the run folder."""
    return run.root / STAGES[stage].folder
