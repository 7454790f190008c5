"""The run folder never lies, never loses a user's file, and fails cleanly (issue: run integrity).

One small run (2 elements, 2 geology layers, LeNet + logistic regression, 1 epoch, no
continuous maps) is made once per module; each test works on its own copy. CLI cases run the
real ``oremap`` console script in a subprocess.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from oremap import contract, demo, io, pipeline
from oremap.config import dump_toml, load_config
from oremap.demo import write_demo
from oremap.errors import ConfigError, RunFolderError, StageNotReadyError
from oremap.runinfo import LOCK_OWNER, MARKER, RunDir
from oremap.train import TrainSettings, train_model

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

OREMAP = str(Path(sys.executable).parent / "oremap")


def _config_dict(data: Path, **edits: Any) -> dict[str, Any]:
    d = tomllib.loads(demo.example_config_text(str(data), quick=True))
    d.pop("truth")
    d["grid"]["pixel_size"] = 1.0
    d["geochem"]["elements"] = ["Au", "As"]
    d["geology"] = d["geology"][:2]
    d["samples"].update(crop_size=16, positive={"n": 4, "a": 2, "b": 3},
                        negative={"n": 1, "a": 4, "b": 7})
    d["train"].update(models=["lenet"], baselines=["logistic"], epochs=1)
    d["maps"]["continuous"] = False
    d["maps"]["permutation_repeats"] = 1
    for key, value in edits.items():
        section, leaf = key.split(".")
        d[section][leaf] = value
    return d


def _write_config(path: Path, data: Path, **edits: Any) -> Path:
    path.write_text(dump_toml(_config_dict(data, **edits)))
    return path


def _cli(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([OREMAP, *[str(a) for a in args]], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def _assert_clean_failure(res: subprocess.CompletedProcess[str], *fragments: str) -> str:
    text = " ".join((res.stdout + res.stderr).split())
    assert res.returncode == 2, text
    assert "Traceback" not in text, text
    for f in fragments:
        assert " ".join(f.split()) in text, f"{f!r} not in: {text}"
    return text


def _sha(path: Path) -> str:
    return io.file_digest(path)["sha256"]


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): _sha(p) for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("integrity")
    data = write_demo(root / "data", seed=0).root
    cfg = _write_config(root / "base.toml", data)
    run_dir = root / "run"
    pipeline.run(load_config(cfg), run_dir, progress=False, config_path=cfg)
    return {"root": root, "data": data, "config": cfg, "run": run_dir}


@pytest.fixture()
def run_copy(base: dict[str, Path], tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(base["run"], dst)
    # The stored config names absolute inputs; the copy is a complete run folder of its own.
    return dst


# --------------------------------------------------------------------------- contract table


def test_contract_table_is_consistent() -> None:
    for name, st in contract.STAGES.items():
        assert set(st.needs) <= set(contract.ORDER[:contract.ORDER.index(name)]), name
        for rel in st.files.values():
            assert rel.split("/")[0] in st.folders, (name, rel)
    folders = [f for st in contract.STAGES.values() for f in st.folders]
    assert len(folders) == len(set(folders)), "each folder has one owner"
    assert tuple(pipeline.STAGE_FUNCTIONS) == contract.ORDER


def _leaf_keys(model: Any, prefix: str = "") -> list[str]:
    from pydantic import BaseModel

    keys = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        inner = next((a for a in (ann, *getattr(ann, "__args__", ()))
                      if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if inner is not None and prefix == "" and name not in ("geochem", "labels", "truth"):
            keys += _leaf_keys(inner, f"{name}.")
        else:
            keys.append(prefix + name)
    return keys


def test_every_config_key_is_read_by_some_stage_or_declared_without_effect() -> None:
    """A key in no stage's slice would let a changed setting reuse a stale result."""
    from oremap.config import Config

    covered = set(contract.NO_EFFECT)
    for st in contract.STAGES.values():
        covered |= set(st.config)

    def is_covered(key: str) -> bool:
        parts = key.split(".")
        return any(".".join(parts[:i]) in covered for i in range(1, len(parts) + 1))

    missing = [k for k in _leaf_keys(Config) if not is_covered(k)]
    assert missing == []


# --------------------------------------------------------------------------- silent wrong results


def test_rerun_with_changed_elements_retrains_instead_of_reusing_networks(
        base: dict[str, Path], run_copy: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    last = run_copy / "train" / "fold0" / "lenet" / "last.pt"
    before = _sha(last)
    cfg = _write_config(tmp_path / "cu.toml", base["data"], **{"geochem.elements": ["Au", "Cu"]})
    with caplog.at_level("INFO", logger="oremap"):
        pipeline.run(load_config(cfg), run_copy, progress=False, config_path=cfg)
    assert "not retraining" not in caplog.text
    assert "evidence layers: removed As; added Cu" in caplog.text
    assert _sha(last) != before
    samples = contract.complete_manifest(run_copy, "samples")
    train = contract.complete_manifest(run_copy, "train")
    assert train["inputs"]["upstream"]["samples"] == samples["digest"]
    assert train["layers"] == ["Au", "Cu", "shear_zones", "faults", "magnetics",
                               "magnetics_gradient", "potassium"]
    # and a rerun with nothing changed reuses everything but the report
    caplog.clear()
    with caplog.at_level("INFO", logger="oremap"):
        pipeline.run(load_config(cfg), run_copy, progress=False, config_path=cfg)
    for name in contract.MAIN[:-1]:
        assert f"stage {name}: up to date, reused" in caplog.text


def test_rerun_with_changed_power_recomputes_from_evidence_on(
        base: dict[str, Path], run_copy: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    cfg = _write_config(tmp_path / "p3.toml", base["data"], **{"geochem.power": 3.0})
    config = load_config(cfg)
    st = contract.status(run_copy, "evidence", config)
    assert not st.current and st.describe() == "config geochem.power: 2.0 -> 3.0"
    with caplog.at_level("INFO", logger="oremap"):
        pipeline.run(config, run_copy, progress=False, config_path=cfg)
    for name in ("samples", "train", "evaluate", "predict", "ensemble", "maps"):
        assert f"stage {name}: recomputing" in caplog.text
    assert all(contract.status(run_copy, s, config).current for s in contract.MAIN)


def test_changed_input_file_makes_the_stage_stale(base: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(base["data"], data)
    cfg = _write_config(tmp_path / "c.toml", data)
    run_dir = tmp_path / "run"
    config = load_config(cfg)
    pipeline.run(config, run_dir, stages=("evidence",), progress=False, config_path=cfg)
    assert contract.status(run_dir, "evidence", config).current
    csv = data / "soil_samples.csv"
    csv.write_text(csv.read_text().replace(",", ",", 1) + "\n")
    st = contract.status(run_dir, "evidence", config)
    assert not st.current and f"input file {csv} changed" in st.describe()


def test_changed_member_list_keeps_only_checkpoints_that_match_exactly(
        base: dict[str, Path], run_copy: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    last = run_copy / "train" / "fold0" / "lenet" / "last.pt"
    before = _sha(last)
    cfg = _write_config(tmp_path / "woe.toml", base["data"],
                        **{"train.baselines": ["logistic", "woe"]})
    with caplog.at_level("INFO", logger="oremap"):
        pipeline.run(load_config(cfg), run_copy, progress=False, config_path=cfg)
    assert "stage train: recomputing (config train.baselines: [\"logistic\"] ->" in caplog.text
    assert "lenet: finished run found" in caplog.text  # same samples, settings, seed
    assert _sha(last) == before
    assert (run_copy / "train" / "fold0" / "woe" / "model.pkl").is_file()
    cfg = _write_config(tmp_path / "none.toml", base["data"], **{"train.baselines": []})
    pipeline.run(load_config(cfg), run_copy, progress=False, config_path=cfg)
    assert sorted(p.name for p in (run_copy / "train" / "fold0").iterdir()) == ["lenet"]
    train = contract.complete_manifest(run_copy, "train")
    assert not any("logistic" in k or "woe" in k for k in train["outputs"])


def test_stage_refuses_inputs_from_another_config(base: dict[str, Path], run_copy: Path,
                                                 tmp_path: Path) -> None:
    other = _write_config(tmp_path / "other.toml", base["data"],
                          **{"geochem.elements": ["Au", "As", "Cu"]})
    maps_before = _snapshot(run_copy / "maps")
    res = _cli("evidence", run_copy, "--config", other)
    assert res.returncode == 0, res.stderr
    for stage in ("train", "maps", "predict"):
        res = _cli(stage, run_copy)
        _assert_clean_failure(res, "the outputs of stage 'samples'", "not current",
                              "evidence layers: added Cu",
                              f"oremap run {run_copy / 'config.toml'} --out {run_copy}")
    assert _snapshot(run_copy / "maps") == maps_before  # nothing half-written
    with pytest.raises(StageNotReadyError, match="stage 'samples'"):
        pipeline.run_maps(load_config(other), run_copy, progress=False)


def test_train_resume_only_on_the_same_sample_set(base: dict[str, Path], run_copy: Path,
                                                  tmp_path: Path) -> None:
    other = _write_config(tmp_path / "o.toml", base["data"], **{"geochem.power": 3.0})
    config = load_config(other)
    pipeline.run_evidence(config, run_copy, progress=False)
    pipeline.run_samples(config, run_copy, progress=False)
    with pytest.raises(ConfigError, match="cannot resume training .*stage 'samples' was "
                                          "recomputed since"):
        pipeline.run_train(config, run_copy, resume=True, progress=False)


def test_checkpoint_resume_checks_the_samples_not_only_their_counts(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 3, 16, 16)).astype(np.float32)
    y = np.array([0, 1] * 12)
    settings = TrainSettings(epochs=1, batch_size=8, profile="fast", workers=0)
    train_model("lenet", x, y, out_dir=tmp_path, settings=settings, seed=0, progress=False)
    x2 = x.copy()
    x2[:, 1] += 1.0  # same counts and shapes, other values (another layer)
    with pytest.raises(ConfigError, match="samples differ"):
        train_model("lenet", x2, y, out_dir=tmp_path, settings=settings, seed=0, resume=True,
                    progress=False)
    again = train_model("lenet", x, y, out_dir=tmp_path, settings=settings, seed=0,
                        resume=True, progress=False)
    assert len(again.history) == 1


# --------------------------------------------------------------------------- data loss


def test_overwrite_never_deletes_the_project_folder(base: dict[str, Path], tmp_path: Path) -> None:
    project = tmp_path / "PROJECT"
    shutil.copytree(base["data"], project / "data")
    cfg = _write_config(project / "my.toml", project / "data")
    (project / "notes.txt").write_text("my notes")
    before = _snapshot(project)
    res = _cli("run", cfg, "--out", project, "--overwrite")
    _assert_clean_failure(res, f"--out {project} holds the configuration file")
    assert _snapshot(project) == before


def test_overwrite_refuses_a_folder_oremap_did_not_make(base: dict[str, Path],
                                                        tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.docx").write_text("years of work")
    res = _cli("run", base["config"], "--out", mine, "--overwrite")
    _assert_clean_failure(res, f"{mine} is not empty (thesis.docx)", "not made by oremap")
    assert (mine / "thesis.docx").read_text() == "years of work"
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.docx"]


def test_overwrite_clears_only_what_oremap_wrote(run_copy: Path) -> None:
    (run_copy / "my_notes.txt").write_text("keep me")
    left = RunDir(run_copy).clear()
    assert left == ["my_notes.txt"]
    kept = sorted(p.name for p in run_copy.iterdir() if not p.name.startswith(".oremap.lock"))
    assert kept == [MARKER, "my_notes.txt"]


def test_out_holding_the_config_is_refused_and_config_untouched(base: dict[str, Path],
                                                                tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    cfg = project / "config.toml"
    text = "# my carefully commented config\n" + dump_toml(_config_dict(base["data"]))
    cfg.write_text(text)
    res = _cli("run", "config.toml", "--out", ".", cwd=project)
    _assert_clean_failure(res, "holds the configuration file")
    assert cfg.read_text() == text
    assert sorted(p.name for p in project.iterdir()) == ["config.toml"]


def test_out_holding_an_input_is_refused(base: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="holds the input"):
        pipeline.run(load_config(base["config"]), base["data"], progress=False)


def test_second_process_is_refused_while_the_lock_is_held(run_copy: Path) -> None:
    before = _snapshot(run_copy / "evidence")
    with RunDir(run_copy).locked():
        owner = json.loads((run_copy / LOCK_OWNER).read_text())
        assert owner["pid"] == os.getpid()
        res = _cli("evidence", run_copy)
        _assert_clean_failure(res, f"run folder {run_copy} is in use by process {os.getpid()}")
        with RunDir(run_copy).locked():  # re-entrant within the process
            pass
    assert _snapshot(run_copy / "evidence") == before
    assert not (run_copy / LOCK_OWNER).exists()


def test_temporary_names_are_unique_per_process_and_call(tmp_path: Path) -> None:
    target = tmp_path / "Au.tif"
    a, b = io.temporary_sibling(target), io.temporary_sibling(target)
    assert a != b and str(os.getpid()) in a.name and a.suffix == ".tif"
    assert io.is_temporary(a) and not io.is_temporary(target)
    # two writers of one file never rename each other's half-written file
    errors: list[BaseException] = []

    def write(text: str) -> None:
        try:
            for _ in range(50):
                io.write_text(target, text * 1000)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(c,)) for c in "xy"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert target.read_text() in ("x" * 1000, "y" * 1000)
    assert [p.name for p in tmp_path.iterdir()] == ["Au.tif"]


def test_truncated_layer_is_recomputed_on_resume(base: dict[str, Path], run_copy: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    layer = run_copy / "evidence" / "layers" / "Au.tif"
    good = layer.read_bytes()
    layer.write_bytes(good[: len(good) // 2])
    res = _cli("samples", run_copy)
    _assert_clean_failure(res, "evidence/layers/Au.tif has", "bytes", "were written")
    config = load_config(run_copy / "config.toml")
    with caplog.at_level("INFO", logger="oremap"):
        pipeline.run(config, run_copy, progress=False)
    assert "evidence layer Au: " in caplog.text and "changed or damaged" in caplog.text
    assert "evidence layer As: unchanged, kept" in caplog.text
    assert layer.read_bytes() == good  # deterministic: the same layer again


def test_truncated_checkpoint_is_a_clear_error_and_resume_retrains_that_member(
        run_copy: Path) -> None:
    last = run_copy / "train" / "fold0" / "lenet" / "last.pt"
    logistic = run_copy / "train" / "fold0" / "logistic" / "model.pkl"
    last.write_bytes(last.read_bytes()[:100])
    res = _cli("evaluate", run_copy)
    _assert_clean_failure(res, "train/fold0/lenet/last.pt has 100 bytes",
                          f"oremap train {run_copy}")
    res = _cli("train", run_copy, "--resume")
    assert res.returncode == 0, res.stderr
    assert "is damaged" in res.stderr and "retraining this model" in res.stderr
    assert last.stat().st_size > 100 and logistic.is_file()
    assert contract.status(run_copy, "train", load_config(run_copy / "config.toml")).current


def test_stale_temporary_files_are_removed_when_a_stage_starts(run_copy: Path) -> None:
    junk = run_copy / "ensemble" / ".table2.999999-deadbeef.tmp.csv"
    junk.write_text("half")
    old_style = run_copy / "ensemble" / "ensemble.csv.tmp"
    old_style.write_text("half")
    pipeline.run_ensemble(load_config(run_copy / "config.toml"), run_copy, progress=False)
    assert not junk.exists() and not old_style.exists()


def test_stored_config_with_control_characters_cannot_happen(base: dict[str, Path],
                                                             tmp_path: Path) -> None:
    d = _config_dict(base["data"])
    d["name"] = "a\nb"
    cfg = tmp_path / "c.toml"
    cfg.write_text(dump_toml(d))
    res = _cli("run", cfg, "--out", tmp_path / "run")
    _assert_clean_failure(res, "[name]", "control character")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- clean errors


def test_read_only_run_folder_names_folder_and_permission(run_copy: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if Path(p) == run_copy else real(p, m))
    with pytest.raises(RunFolderError, match=f"run folder {run_copy} is not writable"):
        RunDir(run_copy).claim()


def test_cli_turns_a_full_disk_into_a_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from oremap import cli

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "X.npy"))

    monkeypatch.setattr(pipeline, "run_stage", full)
    for argv, shows_traceback in ((["oremap", "samples", str(tmp_path)], False),
                                  (["oremap", "-v", "samples", str(tmp_path)], True)):
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
        assert exit_info.value.code == 2
        err = " ".join(capsys.readouterr().err.split())
        assert f"the disk is full (writing {tmp_path / 'X.npy'})" in err
        assert ("Traceback" in err) is shows_traceback


def test_cli_missing_config_and_missing_run_folder_are_messages(tmp_path: Path) -> None:
    _assert_clean_failure(_cli("run", tmp_path / "nope.toml"), "nope.toml does not exist")
    _assert_clean_failure(_cli("maps", tmp_path / "nowhere"), "holds no config.toml")
    _assert_clean_failure(_cli("run", tmp_path), "is a folder")


def test_preflight_is_logged_before_any_work(base: dict[str, Path], tmp_path: Path) -> None:
    res = _cli("run", base["config"], "--out", tmp_path / "run")
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stderr.split())
    assert text.index("pre-flight:") < text.index("stage evidence")
    assert "368 x 800" in text or "368 rows x 800" in text


def test_a_second_demo_in_the_same_folder_is_refused_before_writing_data(tmp_path: Path) -> None:
    run_dir = tmp_path / "run_quick"
    RunDir(run_dir).claim()
    with RunDir(run_dir).locked():
        res = _cli("demo", "--quick", "--out", tmp_path)
        _assert_clean_failure(res, f"run folder {run_dir} is in use by process {os.getpid()}")
    assert not (tmp_path / "data").exists()
