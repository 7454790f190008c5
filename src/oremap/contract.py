"""The run folder contract: what each stage consumes and writes, and whether a result is current.

One table, :data:`STAGES`, names every stage, the stages whose files it reads (``needs``), the
configuration keys it reads (``config``), the folders it owns and its named output files. The
pipeline, the CLI and the report take stage names, folders and file names from here.

Every stage writes ``<folder>/stage.json`` (its *stage manifest*): ``status`` ("running" while
it works, "complete" when done), the inputs it consumed (the configuration keys it reads with
their values, the output digest of every upstream stage, the SHA-256 of every input file it
reads, the evidence layer names in order) and their ``fingerprint``, and when complete the size
and SHA-256 of every file it wrote and their ``digest``. A stage is *current* when its manifest
is complete, its outputs are intact and its recorded fingerprint equals the one computed now
from the configuration, the upstream manifests and the input files; ``oremap run`` recomputes
what is not current and reuses the rest, a single-stage command refuses to run on inputs that
are not current and says what changed and which command recomputes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from oremap import __version__, io
from oremap.errors import StageNotReadyError
from oremap.stages import (
    MAIN,
    NO_EFFECT,
    ORDER,
    RUN_FILES,
    STAGES,
    Stage,
    ancestors,
    descendants,
    file,
    stage_missing,
)

__all__ = [
    "Inputs",
    "MAIN",
    "MANIFEST",
    "NO_EFFECT",
    "ORDER",
    "RUN_FILES",
    "STAGES",
    "Stage",
    "Status",
    "ancestors",
    "begin",
    "changes",
    "clear",
    "complete_manifest",
    "config_values",
    "damaged_outputs",
    "descendants",
    "describe_layer_change",
    "digest",
    "file",
    "finish",
    "input_files",
    "input_paths",
    "inputs_now",
    "manifest_path",
    "output_files",
    "read_manifest",
    "require_current",
    "stage_missing",
    "status",
]

log = logging.getLogger("oremap")

MANIFEST = "stage.json"


# --------------------------------------------------------------------------- manifests


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def manifest_path(root: Path, stage: str) -> Path:
    return Path(root) / STAGES[stage].folder / MANIFEST


def read_manifest(root: Path, stage: str) -> dict[str, Any] | None:
    """The stage manifest of ``stage``, or None if the stage never started (or it is unreadable)."""
    path = manifest_path(root, stage)
    if not path.is_file():
        return None
    try:
        data = io.read_json(path)
    except (OSError, ValueError):
        log.warning("%s is unreadable; treating stage %s as not run", path, stage)
        return None
    return data if isinstance(data, dict) and data.get("stage") == stage else None


def complete_manifest(root: Path, stage: str) -> dict[str, Any] | None:
    m = read_manifest(root, stage)
    return m if m is not None and m.get("status") == "complete" else None


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Inputs:
    """What a stage consumes: config values, upstream digests, input files, layer names."""

    config: dict[str, Any]
    upstream: dict[str, str]
    files: dict[str, str]
    layers: list[str] | None

    @property
    def fingerprint(self) -> str:
        return _hash({"config": self.config, "upstream": self.upstream, "files": self.files})

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "upstream": self.upstream, "files": self.files,
                "layers": self.layers}


def config_values(config: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """``{dotted key: value}`` for ``keys`` of a configuration (JSON values, paths as text)."""
    # Unset optional keys (None) are left out, so that a key added in a later version with a
    # default of "not set" does not make every earlier result stale.
    data = config.model_dump(mode="json", exclude_none=True)
    out = {}
    for key in keys:
        node: Any = data
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        out[key] = node
    return out


def input_paths(node: Any, key: str = "") -> Iterator[str]:
    """Every input file named in a (JSON-dumped) configuration: ``path`` and ``truth`` values."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("path", "truth") and isinstance(v, str):
                yield v
            else:
                yield from input_paths(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from input_paths(v, key)
    elif key == "truth" and isinstance(node, str):
        yield node


def input_files(values: dict[str, Any]) -> dict[str, str]:
    """SHA-256 of every input file named by ``path``/``truth`` keys in ``values``.

    A file that is missing or unreadable gets a marker instead of a digest (the stage itself
    then fails with a clear message when it opens it).
    """
    out = {}
    for key, value in values.items():
        paths = list(input_paths({key.rsplit(".", 1)[-1]: value}))
        for p in paths:
            try:
                out[p] = digest(p)["sha256"]
            except OSError as exc:
                out[p] = f"unreadable: {type(exc).__name__}"
    return dict(sorted(out.items()))


def inputs_now(root: Path, stage: str, config: Any) -> Inputs:
    """What ``stage`` would consume now; StageNotReadyError if a needed stage is not complete."""
    spec = STAGES[stage]
    values = config_values(config, spec.config)
    upstream, layers = {}, None
    for need in (*spec.needs, *spec.optional):
        m = complete_manifest(root, need)
        if m is None:
            if need in spec.optional:
                continue
            _require_complete(root, stage, need)
        upstream[need] = m["digest"]
        if layers is None and m.get("layers") is not None:
            layers = list(m["layers"])
    return Inputs(values, upstream, input_files(values), layers)


def changes(old: Mapping[str, Any], new: Inputs) -> list[str]:
    """Plain-language differences between recorded inputs ``old`` and ``new``."""
    out = []
    old_cfg = old.get("config", {})
    for key in sorted(set(old_cfg) | set(new.config)):
        out += [f"config {k}: {_short(a)} -> {_short(b)}"
                for k, a, b in _leaf_changes(key, old_cfg.get(key), new.config.get(key))]
    old_up = old.get("upstream", {})
    for s in sorted(set(old_up) | set(new.upstream)):
        if old_up.get(s) != new.upstream.get(s):
            out.append(f"stage {s!r} was recomputed since" if s in old_up and s in new.upstream
                       else f"stage {s!r} output {'added' if s in new.upstream else 'gone'}")
    old_files = old.get("files", {})
    for p in sorted(set(old_files) | set(new.files)):
        if old_files.get(p) != new.files.get(p):
            what = ("changed" if p in old_files and p in new.files else
                    "is new" if p in new.files else "is no longer used")
            out.append(f"input file {p} {what}")
    if old.get("layers") is not None and new.layers is not None and old["layers"] != new.layers:
        out.append(describe_layer_change(old["layers"], new.layers))
    return out


def _leaf_changes(key: str, a: Any, b: Any) -> Iterator[tuple[str, Any, Any]]:
    """``(dotted key, old, new)`` for every differing leaf of two JSON values."""
    if a == b:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            yield from _leaf_changes(f"{key}.{k}", a.get(k), b.get(k))
    elif (isinstance(a, list) and isinstance(b, list) and len(a) == len(b)
          and any(isinstance(x, dict) for x in a)):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from _leaf_changes(f"{key}[{i}]", x, y)
    else:
        yield key, a, b


def describe_layer_change(old: list[str], new: list[str]) -> str:
    """``evidence layers: removed As; added Cu`` (or ``reordered``)."""
    removed = [x for x in old if x not in new]
    added = [x for x in new if x not in old]
    parts = ([f"removed {', '.join(removed)}"] if removed else []) + (
        [f"added {', '.join(added)}"] if added else [])
    return "evidence layers: " + ("; ".join(parts) if parts else
                                  f"reordered {old} -> {new}")


def _short(v: Any, n: int = 80) -> str:
    text = json.dumps(v, default=str)
    return text if len(text) <= n else text[:n - 3] + "..."


# --------------------------------------------------------------------------- outputs


def output_files(root: Path, stage: str) -> list[Path]:
    """Every file the stage wrote (its folders, less manifests and temporary files)."""
    files = []
    for folder in STAGES[stage].folders:
        base = Path(root) / folder
        if base.is_dir():
            files += [f for f in base.rglob("*") if f.is_file() and f.name != MANIFEST
                      and not io.is_temporary(f)]
    return sorted(files)


def damaged_outputs(root: Path, manifest: Mapping[str, Any]) -> list[str]:
    """Outputs recorded in ``manifest`` that are missing or differ in size or SHA-256."""
    problems = []
    for rel, rec in manifest.get("outputs", {}).items():
        path = Path(root) / rel
        if not path.is_file():
            problems.append(f"{rel} is missing")
        elif path.stat().st_size != rec["bytes"]:
            problems.append(f"{rel} has {path.stat().st_size} bytes, {rec['bytes']} were written")
        elif digest(path)["sha256"] != rec["sha256"]:
            problems.append(f"{rel} was modified after it was written (checksum differs)")
    return problems


_DIGESTS: dict[Path, tuple[tuple[int, int, int], dict[str, Any]]] = {}


def digest(path: str | Path) -> dict[str, Any]:
    """:func:`oremap.io.file_digest`, hashed once per process while the file is unchanged.

    One ``oremap run`` checks the same files (the crops, the evidence layers) for several
    stages; a file whose inode, size and modification time are those it had when it was last
    hashed in this process is not read again. A truncation or a rewrite changes them.
    """
    path = Path(path).resolve()
    st = path.stat()
    key = (st.st_ino, st.st_size, st.st_mtime_ns)
    cached = _DIGESTS.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    result = io.file_digest(path)
    _DIGESTS[path] = (key, result)
    return result


def begin(root: Path, stage: str, inputs: Inputs) -> None:
    """Record that ``stage`` started on ``inputs`` (status "running")."""
    io.write_json(manifest_path(root, stage), {
        "stage": stage, "status": "running", "fingerprint": inputs.fingerprint,
        "inputs": inputs.to_dict(), "layers": inputs.layers, "started": _now()})


def finish(root: Path, stage: str, inputs: Inputs, *,
           layers: list[str] | None = None) -> dict[str, Any]:
    """Record the finished ``stage``: outputs with size and SHA-256, and their digest."""

    root = Path(root)
    outputs = {f.relative_to(root).as_posix(): digest(f)
               for f in output_files(root, stage)}
    started = (read_manifest(root, stage) or {}).get("started", _now())
    manifest = {"stage": stage, "status": "complete", "oremap": __version__,
                "fingerprint": inputs.fingerprint, "inputs": inputs.to_dict(),
                "layers": layers if layers is not None else inputs.layers,
                "outputs": outputs, "digest": _hash(outputs), "started": started,
                "finished": _now()}
    io.write_json(manifest_path(root, stage), manifest)
    return manifest


def clear(root: Path, stage: str) -> None:
    """Delete the folders ``stage`` owns (only ever called inside a marked run folder)."""
    for folder in STAGES[stage].folders:
        path = Path(root) / folder
        if path.is_dir():
            shutil.rmtree(path)


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class Status:
    """Whether a stage's result can be reused, and if not, why."""

    stage: str
    current: bool
    reasons: tuple[str, ...]
    same_inputs: bool  # the recorded fingerprint (even of an unfinished run) matches

    def describe(self) -> str:
        return "; ".join(self.reasons)


def status(root: Path, stage: str, config: Any, *, verify: bool = True) -> Status:
    """Compare what ``stage`` recorded with what it would consume now.

    Raises StageNotReadyError when a stage it needs is not complete.
    """
    now = inputs_now(root, stage, config)
    m = read_manifest(root, stage)
    if m is None:
        return Status(stage, False, ("it has not been run",), False)
    same = m.get("fingerprint") == now.fingerprint
    reasons = [] if same else changes(m.get("inputs", {}), now) or ["its inputs differ"]
    if m.get("status") != "complete":
        reasons.append("it did not finish")
    elif verify:
        reasons += damaged_outputs(root, m)
    return Status(stage, not reasons, tuple(reasons), same)


def require_current(root: Path, stage: str, config: Any) -> Inputs:
    """Check every stage ``stage`` depends on is complete, intact and current; its inputs.

    Optional stages (the report's) are checked when present. Raises StageNotReadyError naming
    the first stage that is missing or not current, what changed, and the commands that
    recompute it.
    """
    root = Path(root)
    spec = STAGES[stage]
    for need in reversed(spec.needs):  # the latest need names the whole missing chain
        _require_complete(root, stage, need)
    present = [s for s in spec.optional if complete_manifest(root, s) is not None]
    check = set(ancestors(stage)) | set(present)
    for s in present:
        check |= set(ancestors(s))
    direct = set(spec.needs) | set(present)
    for up in [s for s in ORDER if s in check]:
        _require_complete(root, stage, up)
        st = status(root, up, config, verify=up in direct)
        if not st.current:
            after = " then ".join(f"`oremap {s} {root}`" for s in [up, *descendants(up)]
                                  if s in check)
            raise StageNotReadyError(
                f"stage {stage!r} cannot run: the outputs of stage {up!r} in {root} are not "
                f"current ({st.describe()}). Recompute what is stale with `oremap run "
                f"{root / RUN_FILES['config']} --out {root}` (it reuses what still matches), or "
                f"run {after} first.")
    return inputs_now(root, stage, config)


def _require_complete(root: Path, stage: str, need: str) -> None:
    if complete_manifest(root, need) is not None:
        return
    chain = [s for s in ORDER if (s == need or s in ancestors(stage))
             and complete_manifest(root, s) is None]
    first = chain[0]
    started = read_manifest(root, first) is not None
    names = ", ".join(repr(s) for s in chain)
    raise stage_missing(
        first, f"stage {stage!r} needs the outputs of stage{'s' if len(chain) > 1 else ''} "
        f"{names}; stage {first!r} {'did not finish' if started else 'has not been run'} in "
        f"{root} ({manifest_path(root, first)} {'is not complete' if started else 'not found'})",
        root)
