"""Tests of oremap.train: loop, checkpoints, resume, determinism, parallel training."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from oremap import train as T
from oremap.errors import ConfigError, InputDataError, UnknownNameError
from oremap.models import list_models
from oremap.train import (
    HISTORY_COLUMNS,
    TrainSettings,
    choose_device,
    class_weights,
    epoch_order,
    load_trained,
    plot_loss_curves,
    predict_proba,
    train_model,
    train_models,
)

FAST = TrainSettings(epochs=3, lr=3e-3, lr_min=3e-4, profile="fast", device="cpu")


def separable(n: int = 64, c: int = 3, s: int = 16, seed: int = 0, positives: float = 0.5):
    """Channel 0 bright for class 1, dark for class 0, plus noise."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) < round(n * positives)).astype(np.int64)
    y = y[rng.permutation(n)]
    X = rng.normal(0, 0.5, size=(n, c, s, s)).astype(np.float32)
    X[:, 0] += np.where(y == 1, 1.0, -1.0)[:, None, None].astype(np.float32)
    return X, y


@pytest.fixture(scope="module")
def data():
    X, y = separable(64)
    Xt, yt = separable(32, seed=1)
    return X, y, Xt, yt


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ----------------------------------------------------------------- learning


@pytest.mark.parametrize("name", list_models())
def test_loss_decreases_on_separable_problem(name, data, tmp_path):
    X, y, _, _ = data
    settings = dataclasses.replace(FAST, epochs=5)
    result = train_model(name, X, y, out_dir=tmp_path, settings=settings, seed=0,
                         progress=False)
    h = result.history
    assert list(h["epoch"]) == [1, 2, 3, 4, 5]
    assert h["train_loss"].iloc[-1] < h["train_loss"].iloc[0]
    if name != "mobilenet_v2":  # depthwise nets learn slowest from 64 patches
        assert h["train_acc"].iloc[-1] > 0.9
    assert np.allclose(h["lr"].iloc[0], 3e-3)


def test_cosine_schedule_and_history_file(data, tmp_path):
    X, y, Xt, yt = data
    settings = dataclasses.replace(FAST, epochs=4, lr=1e-3, lr_min=1e-4)
    result = train_model("lenet", X, y, Xt, yt, out_dir=tmp_path, settings=settings, seed=1,
                         progress=False)
    csv = pd.read_csv(tmp_path / "lenet" / "history.csv")
    assert list(csv.columns) == HISTORY_COLUMNS
    assert list(csv["epoch"]) == [1, 2, 3, 4]
    expected = [1e-4 + 0.5 * 9e-4 * (1 + np.cos(np.pi * e / 4)) for e in range(4)]
    assert np.allclose(csv["lr"], expected)
    assert csv["test_acc"].between(0, 1).all() and csv["test_loss"].notna().all()
    assert (csv["samples_per_s"] > 0).all()
    pd.testing.assert_frame_equal(csv, result.history, check_dtype=False)
    assert result.best_epoch == int(csv["test_loss"].idxmin()) + 1
    best = torch.load(result.best_path, weights_only=True)
    assert best["epoch"] == result.best_epoch
    assert result.seconds == pytest.approx(csv["seconds"].sum())
    assert result.device == "cpu" and result.out_dir == tmp_path / "lenet"


def test_without_test_set_best_is_lowest_train_loss(data, tmp_path):
    X, y, _, _ = data
    result = train_model("lenet", X, y, out_dir=tmp_path, settings=FAST, seed=0,
                         progress=False)
    h = result.history
    assert h["test_loss"].isna().all() and h["test_acc"].isna().all()
    assert h["val_loss"].isna().all() and h["val_acc"].isna().all()
    assert result.best_epoch == int(h["train_loss"].idxmin()) + 1


def test_class_weights_inverse_frequency():
    w = class_weights(np.array([0, 0, 0, 1]))
    assert np.allclose(w, [4 / 6, 4 / 2])
    assert np.isclose((w[np.array([0, 0, 0, 1])]).mean(), 1.0)
    with pytest.raises(InputDataError, match="every class needs at least one sample"):
        class_weights(np.array([0, 0]))


def test_weighted_loss_is_used(data, tmp_path, monkeypatch):
    X, y = separable(40, positives=0.25)
    seen = {}
    original = T._Run.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        seen["weights"] = self.weights.clone()

    monkeypatch.setattr(T._Run, "__init__", spy)
    train_model("lenet", X, y, out_dir=tmp_path, settings=dataclasses.replace(FAST, epochs=1),
                seed=0, progress=False)
    assert torch.allclose(seen["weights"], torch.tensor([40 / 60, 40 / 20]))
    train_model("lenet", X, y, out_dir=tmp_path, seed=0, progress=False,
                settings=dataclasses.replace(FAST, epochs=1, imbalance="none"))
    assert torch.equal(seen["weights"], torch.ones(2))


def test_epoch_order_seeded_and_balanced_sampler():
    y = np.r_[np.zeros(900, np.int64), np.ones(100, np.int64)]
    a = epoch_order(y, "weighted_loss", seed=3, epoch=2)
    assert np.array_equal(a, epoch_order(y, "weighted_loss", seed=3, epoch=2))
    assert np.array_equal(np.sort(a), np.arange(1000))
    assert not np.array_equal(a, epoch_order(y, "weighted_loss", seed=3, epoch=3))
    b = epoch_order(y, "balanced_sampler", seed=3, epoch=2)
    assert np.array_equal(b, epoch_order(y, "balanced_sampler", seed=3, epoch=2))
    assert len(b) == 1000 and 0.45 < y[b].mean() < 0.55
    c = epoch_order(y, "pu_bagging", seed=3, epoch=2, pu_ratio=2.0)
    assert np.array_equal(c, epoch_order(y, "pu_bagging", seed=3, epoch=2, pu_ratio=2.0))
    # 1000 / (100 + 200) -> 3 bags, each every positive once and 200 unlabelled draws
    assert len(c) == 900 and (y[c] == 1).sum() == 300
    assert np.array_equal(np.unique(c[y[c] == 1], return_counts=True)[1], np.full(100, 3))


def test_balanced_sampler_trains(data, tmp_path):
    X, y = separable(48, positives=0.25)
    settings = dataclasses.replace(FAST, imbalance="balanced_sampler", epochs=4)
    h = train_model("lenet", X, y, out_dir=tmp_path, settings=settings, seed=0,
                    progress=False).history
    assert h["train_loss"].iloc[-1] < h["train_loss"].iloc[0]


def test_patience_stops_early(data, tmp_path, monkeypatch):
    X, y, Xt, yt = data
    losses = iter([0.5, 0.6, 0.7, 0.8, 0.9])
    monkeypatch.setattr(T._Run, "_evaluate", lambda self: (next(losses), 0.5))
    settings = dataclasses.replace(FAST, epochs=5, patience=2)
    result = train_model("lenet", X, y, Xt, yt, out_dir=tmp_path, settings=settings, seed=0,
                         progress=False)
    assert list(result.history["epoch"]) == [1, 2, 3]
    assert result.best_epoch == 1
    assert torch.load(result.last_path, weights_only=True)["finished"] is True


def test_single_sample_last_batch_is_merged():
    batches = T._split_batches(np.arange(33), 16)
    assert [len(b) for b in batches] == [16, 17]
    assert [len(b) for b in T._split_batches(np.arange(34), 16)] == [16, 16, 2]


# ----------------------------------------------------------------- determinism and resume


def test_same_seed_same_weights(data, tmp_path):
    X, y, Xt, yt = data
    for run in ("a", "b", "c"):
        train_model("vgg8", X, y, Xt, yt, out_dir=tmp_path / run, settings=FAST,
                    seed=5 if run != "c" else 6, progress=False)
    a, b, c = (weights(tmp_path / r / "vgg8" / "last.pt") for r in "abc")
    assert_same_weights(a, b)
    assert not torch.equal(a["classifier.6.weight"], c["classifier.6.weight"])


CHILD = """
import sys, time
from pathlib import Path
import numpy as np
import oremap.train as T
import oremap.train.loop
original = T._write_history
def stall(history, path):
    original(history, path)
    if len(history) == {k}:
        time.sleep(600)  # the parent kills us here
oremap.train.loop._write_history = stall
d = np.load({data!r})
T.train_model("lenet", d["X"], d["y"], d["Xt"], d["yt"], out_dir=Path({out!r}),
              settings=T.TrainSettings(**{settings!r}), seed=7, progress=False)
"""


def test_resume_after_kill_equals_uninterrupted(data, tmp_path):
    X, y, Xt, yt = data
    settings = dataclasses.replace(FAST, epochs=4)
    full = train_model("lenet", X, y, Xt, yt, out_dir=tmp_path / "full", settings=settings,
                       seed=7, progress=False)

    np.savez(tmp_path / "data.npz", X=X, y=y, Xt=Xt, yt=yt)
    code = CHILD.format(k=2, data=str(tmp_path / "data.npz"), out=str(tmp_path / "cut"),
                        settings=dataclasses.asdict(settings))
    child = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    last = tmp_path / "cut" / "lenet" / "last.pt"
    deadline = time.monotonic() + 90
    epoch = 0
    while epoch < 2 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.1)
        if last.is_file():
            epoch = torch.load(last, weights_only=True)["epoch"]
    child.kill()
    _, err = child.communicate()
    assert epoch == 2, err
    assert child.returncode != 0  # killed, not finished
    assert len(pd.read_csv(last.parent / "history.csv")) == 2

    resumed = train_model("lenet", X, y, Xt, yt, out_dir=tmp_path / "cut", settings=settings,
                          seed=7, resume=True, progress=False)
    assert_same_weights(weights(full.last_path), weights(resumed.last_path))
    assert_same_weights(weights(full.best_path), weights(resumed.best_path))
    assert list(resumed.history["epoch"]) == [1, 2, 3, 4]
    csv = pd.read_csv(last.parent / "history.csv")
    assert list(csv["epoch"]) == [1, 2, 3, 4]
    cols = ["lr", "train_loss", "train_acc", "test_loss", "test_acc"]
    pd.testing.assert_frame_equal(resumed.history[cols], full.history[cols])


def test_resume_finished_run_returns_without_training(data, tmp_path):
    X, y, _, _ = data
    first = train_model("lenet", X, y, out_dir=tmp_path, settings=FAST, seed=0,
                        progress=False)
    stamp = first.last_path.stat().st_mtime_ns
    again = train_model("lenet", X, y, out_dir=tmp_path, settings=FAST, seed=0, resume=True,
                        progress=False)
    assert first.last_path.stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(first.history, again.history)
    assert again.best_epoch == first.best_epoch


def test_restart_without_resume_does_not_duplicate_rows(data, tmp_path, caplog):
    X, y, _, _ = data
    train_model("lenet", X, y, out_dir=tmp_path, settings=FAST, seed=0, progress=False)
    with caplog.at_level(logging.WARNING, logger="oremap.train"):
        result = train_model("lenet", X, y, out_dir=tmp_path, settings=FAST, seed=0,
                             progress=False)
    assert "replacing the checkpoints" in caplog.text
    assert len(pd.read_csv(tmp_path / "lenet" / "history.csv")) == 3
    assert len(result.history) == 3


def test_resume_with_other_settings_raises(data, tmp_path):
    X, y, _, _ = data
    train_model("lenet", X, y, out_dir=tmp_path, settings=FAST, seed=0, progress=False)
    with pytest.raises(ConfigError, match="cannot resume .*settings.epochs: 3 on disk, 5 now"):
        train_model("lenet", X, y, out_dir=tmp_path, seed=0, resume=True, progress=False,
                    settings=dataclasses.replace(FAST, epochs=5))


def test_checkpoint_contents(data, tmp_path):
    X, y, _, _ = data
    result = train_model("vit", X, y, out_dir=tmp_path, settings=FAST, seed=2, progress=False,
                         model_kwargs={"patch_size": 4})
    ckpt = torch.load(result.last_path, weights_only=True)
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "epoch", "history", "meta",
            "best", "finished"} <= set(ckpt)
    assert set(ckpt["rng"]) >= {"torch", "numpy", "python", "sampler_seed"}
    meta = ckpt["meta"]
    assert (meta["name"], meta["profile"], meta["in_channels"], meta["input_size"],
            meta["num_classes"], meta["seed"]) == ("vit", "fast", 3, 16, 2, 2)
    assert meta["options"] == {"patch_size": 4}
    assert meta["settings"]["epochs"] == 3 and meta["torch_version"] == str(torch.__version__)
    assert not list((tmp_path / "vit").glob("*.tmp"))
    model = load_trained(tmp_path / "vit", which="last")
    assert model.pos_embedding.shape == (1, 17, 64)
    assert_same_weights(model.state_dict(), ckpt["model"])
    assert not model.training


# ----------------------------------------------------------------- prediction and plots


def test_predict_proba_and_memmap(data, tmp_path):
    X, y, Xt, yt = data
    train_model("lenet", X, y, out_dir=tmp_path, settings=dataclasses.replace(FAST, epochs=5),
                seed=0, progress=False)
    model = load_trained(tmp_path / "lenet")
    mm = np.lib.format.open_memmap(tmp_path / "Xt.npy", mode="w+", dtype=np.float32,
                                   shape=Xt.shape)
    mm[:] = Xt
    mm.flush()
    mm = np.load(tmp_path / "Xt.npy", mmap_mode="r")
    p = predict_proba(model, mm, batch_size=10)
    assert p.shape == (32,) and p.dtype == np.float32
    assert ((p >= 0) & (p <= 1)).all()
    assert np.allclose(p, predict_proba(model, Xt))
    assert ((p > 0.5) == yt).mean() > 0.9


def test_memmap_with_loader_workers_matches_in_memory(data, tmp_path, monkeypatch):
    X, y, _, _ = data
    path = tmp_path / "X.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    monkeypatch.setattr("oremap.train.data.MEMMAP_WORKER_MIN_BYTES", 0)
    assert T._loader_workers(mm, 8) == min(8, T.available_cores())
    assert T._loader_workers(X, 8) == 0
    settings = dataclasses.replace(FAST, epochs=2, workers=2)
    a = train_model("lenet", mm, y, out_dir=tmp_path / "mm", settings=settings, seed=0,
                    progress=False)
    b = train_model("lenet", X, y, out_dir=tmp_path / "mem", settings=settings, seed=0,
                    progress=False)
    assert_same_weights(weights(a.last_path), weights(b.last_path))


def test_portable_memmap_view_reopens_same_data(tmp_path):
    path = tmp_path / "raw.bin"
    full = np.arange(10 * 3 * 4 * 4, dtype=np.float32).reshape(10, 3, 4, 4)
    with open(path, "wb") as f:
        f.write(b"x" * 100)
        f.write(full.tobytes())
    mm = np.memmap(path, dtype=np.float32, mode="r", offset=100, shape=full.shape)
    view = mm[3:7]
    ref = T._portable(view)
    assert isinstance(ref, T._MappedArray)
    assert np.array_equal(ref.open(), full[3:7])
    assert T._portable(full) is full


def test_plot_loss_curves(data, tmp_path):
    X, y, Xt, yt = data
    result = train_model("lenet", X, y, Xt, yt, out_dir=tmp_path, settings=FAST, seed=0,
                         progress=False)
    path = tmp_path / "fig" / "loss.png"
    plot_loss_curves({"lenet": result.history, "again": result.history}, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5000
    with pytest.raises(InputDataError, match="no histories to plot"):
        plot_loss_curves({}, path)


def _legends(histories: dict[str, pd.DataFrame], tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The legend labels of each panel of :func:`plot_loss_curves`."""
    from oremap.train import figures

    drawn = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, *a, **k: drawn.append(fig))
    plot_loss_curves(histories, tmp_path / "loss.png")
    return [ax.get_legend_handles_labels()[1] for ax in drawn[0].axes if ax.get_visible()]


def test_history_and_curves_name_the_validation_set(data, tmp_path, caplog, monkeypatch):
    X, y, Xt, yt = data
    settings = dataclasses.replace(FAST, epochs=2)
    with caplog.at_level(logging.INFO, logger="oremap.train"):
        val = train_model("lenet", X, y, Xt, yt, out_dir=tmp_path / "val", settings=settings,
                          seed=0, progress=False, monitor="validation")
    assert "epoch 2/2: train loss" in caplog.text and ", validation loss " in caplog.text
    assert "test" not in caplog.text
    csv = pd.read_csv(tmp_path / "val" / "lenet" / "history.csv")
    assert csv["val_loss"].notna().all() and csv["val_acc"].between(0, 1).all()
    assert csv["test_loss"].isna().all() and csv["test_acc"].isna().all()
    assert val.best_epoch == int(csv["val_loss"].idxmin()) + 1
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="oremap.train"):
        test = train_model("lenet", X, y, Xt, yt, out_dir=tmp_path / "test", settings=settings,
                           seed=0, progress=False, monitor="test")
    assert ", test (paper's protocol) loss " in caplog.text and "validation" not in caplog.text
    assert test.history["val_loss"].isna().all() and test.history["test_loss"].notna().all()
    # the same crops scored either way: only the name differs
    assert np.allclose(val.history["val_loss"], test.history["test_loss"])
    assert _legends({"val": val.history, "test": test.history}, tmp_path, monkeypatch) == [
        ["train", "validation"], ["train", "test (paper's protocol)"]]


def test_without_held_out_crops_the_log_and_curves_show_training_only(data, tmp_path, caplog,
                                                                      monkeypatch):
    X, y, _, _ = data
    with caplog.at_level(logging.INFO, logger="oremap.train"):
        result = train_model("lenet", X, y, out_dir=tmp_path, seed=0, progress=False,
                             settings=dataclasses.replace(FAST, epochs=1))
    assert "lenet epoch 1/1: train loss" in caplog.text and "nan" not in caplog.text
    assert result.history[["val_loss", "test_loss"]].isna().all().all()
    assert _legends({"lenet": result.history}, tmp_path, monkeypatch) == [["train"]]


def test_resuming_an_older_validation_history_renames_its_columns(data, tmp_path):
    X, y, Xt, yt = data
    settings = dataclasses.replace(FAST, epochs=2)
    first = train_model("lenet", X, y, Xt, yt, out_dir=tmp_path, settings=settings, seed=0,
                        progress=False, monitor="validation")
    last = torch.load(first.last_path, weights_only=True)
    for row in last["history"]:  # as written before the rename
        row["test_loss"], row["test_acc"] = row.pop("val_loss"), row.pop("val_acc")
    torch.save(last, first.last_path)
    again = train_model("lenet", X, y, Xt, yt, out_dir=tmp_path, settings=settings, seed=0,
                        progress=False, monitor="validation", resume=True)
    pd.testing.assert_frame_equal(again.history, first.history)
    csv = pd.read_csv(tmp_path / "lenet" / "history.csv")
    assert csv["val_loss"].notna().all() and csv["test_loss"].isna().all()


def test_progress_bar_and_throughput_log(data, tmp_path, caplog):
    X, y, _, _ = data
    with caplog.at_level(logging.INFO, logger="oremap.train"):
        train_model("lenet", X, y, out_dir=tmp_path, settings=dataclasses.replace(FAST, epochs=1),
                    seed=0, progress=True)
    assert "lenet epoch 1/1" in caplog.text and "samples/s" in caplog.text


# ----------------------------------------------------------------- several models


def test_train_models_parallel_equals_sequential(data, tmp_path):
    X, y, Xt, yt = data
    np.save(tmp_path / "X.npy", X)
    mm = np.load(tmp_path / "X.npy", mmap_mode="r")
    settings = dataclasses.replace(FAST, epochs=2)
    names = ["lenet", "vgg8"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each of the two workers gets on <= 3 cores
    try:
        seq = train_models(names, X, y, Xt, yt, out_dir=tmp_path / "seq", settings=settings,
                           seed=4, progress=False)
    finally:
        torch.set_num_threads(threads)
    par = train_models(names, mm, y, Xt, yt, out_dir=tmp_path / "par", settings=settings,
                       seed=4, jobs=2, progress=False)
    assert list(par) == names
    for n in names:
        assert_same_weights(weights(seq[n].last_path), weights(par[n].last_path))
        assert par[n].out_dir == tmp_path / "par" / n


def test_train_models_argument_errors(data, tmp_path):
    X, y, _, _ = data
    common = dict(out_dir=tmp_path, settings=FAST, seed=0)
    with pytest.raises(UnknownNameError, match="unknown model\\(s\\) \\['lenet5'\\]"):
        train_models(["lenet5"], X, y, **common)
    with pytest.raises(ConfigError, match="names repeat"):
        train_models(["lenet", "lenet"], X, y, **common)
    with pytest.raises(ConfigError, match="jobs must be an integer >= 1"):
        train_models(["lenet"], X, y, jobs=0, **common)


# ----------------------------------------------------------------- input errors


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda X, y: (X[:0], y[:0]), "empty"),
        (lambda X, y: (X, np.zeros_like(y)), "only class 0"),
        (lambda X, y: (X, y[:-1]), "has 64 patches but y_train has shape \\(63,\\)"),
        (lambda X, y: (X[:, 0], y), "must be a 4-D array"),
        (lambda X, y: (X[:, :, :, :8], y), "must be square"),
        (lambda X, y: (X, y * 2), "labels 0 or 1"),
        (lambda X, y: (np.where(np.arange(64)[:, None, None, None] == 5, np.nan, X), y),
         "patches \\[5\\] contain NaN"),
    ],
)
def test_bad_training_arrays(make, match, data, tmp_path):
    X, y, _, _ = data
    Xb, yb = make(X, y)
    with pytest.raises(InputDataError, match=match):
        train_model("lenet", Xb, yb, out_dir=tmp_path, settings=FAST, seed=0, progress=False)


def test_bad_test_arrays(data, tmp_path):
    X, y, Xt, yt = data
    common = dict(out_dir=tmp_path, settings=FAST, seed=0, progress=False)
    with pytest.raises(InputDataError, match="both X_test and y_test"):
        train_model("lenet", X, y, Xt, None, **common)
    with pytest.raises(InputDataError, match="same \\(C, S, S\\)"):
        train_model("lenet", X, y, Xt[:, :2], yt, **common)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"batch_size": 1.5}, "batch_size must be an integer"),
        ({"lr_min": 1.0}, "lr_min <= lr"),
        ({"beta2": 1.0}, "beta1, beta2 < 1"),
        ({"workers": -1}, "workers must be >= 0"),
        ({"imbalance": "smote"}, "imbalance must be one of"),
        ({"patience": 0}, "patience must be None or an integer >= 1"),
    ],
)
def test_bad_settings(change, match, data, tmp_path):
    X, y, _, _ = data
    with pytest.raises(ConfigError, match=match):
        train_model("lenet", X, y, out_dir=tmp_path, seed=0, progress=False,
                    settings=dataclasses.replace(FAST, **change))


def test_bad_seed_name_profile(data, tmp_path):
    X, y, _, _ = data
    common = dict(out_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="seed must be a non-negative integer"):
        train_model("lenet", X, y, settings=FAST, seed=-1, **common)
    with pytest.raises(UnknownNameError, match="unknown model 'lenet5'"):
        train_model("lenet5", X, y, settings=FAST, seed=0, **common)
    with pytest.raises(UnknownNameError, match="unknown model profile 'huge'"):
        train_model("lenet", X, y, settings=dataclasses.replace(FAST, profile="huge"), seed=0,
                    **common)


def test_choose_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if expected == "cpu" and torch.backends.mps.is_available():
        expected = "mps"
    assert choose_device().type == expected
    assert choose_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="not a torch device"):
        choose_device("quantum")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="not available here"):
            choose_device("cuda")


def test_load_trained_errors(tmp_path):
    with pytest.raises(InputDataError, match="no checkpoint"):
        load_trained(tmp_path)
    with pytest.raises(UnknownNameError, match="unknown checkpoint 'middle'"):
        load_trained(tmp_path, which="middle")


def test_predict_proba_rejects_3d():
    with pytest.raises(InputDataError, match="4-D array"):
        predict_proba(torch.nn.Identity(), np.zeros((2, 3, 4), np.float32))


# --------------------------------------------------------------------------- dihedral augmentation


def test_dihedral_views_are_the_eight_rotations_and_reflections() -> None:
    from oremap.train import dihedral, dihedral_batch

    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    views = [dihedral(x, k) for k in range(8)]
    assert torch.equal(views[0], x)
    assert torch.equal(views[1], torch.rot90(x, 1, dims=(2, 3)))
    assert torch.equal(views[4], torch.flip(x, dims=(3,)))
    assert len({tuple(v[0, 0].flatten().tolist()) for v in views}) == 8  # all distinct
    turns = np.array([5, 2])
    mixed = dihedral_batch(x, turns)
    assert torch.equal(mixed[0], dihedral(x[:1], 5)[0])
    assert torch.equal(mixed[1], dihedral(x[1:], 2)[0])


def test_dihedral_training_is_seeded_and_its_predictions_orientation_free(tmp_path: Path) -> None:
    from oremap.train import dihedral, load_trained, predict_proba

    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 2, 16, 16)).astype(np.float32)
    y = np.array([0, 1] * 20)
    s = TrainSettings(epochs=2, batch_size=8, profile="fast", workers=0, augment="dihedral")
    a = train_model("lenet", x, y, out_dir=tmp_path / "a", settings=s, seed=3, progress=False)
    b = train_model("lenet", x, y, out_dir=tmp_path / "b", settings=s, seed=3, progress=False)
    plain = train_model("lenet", x, y, out_dir=tmp_path / "c", progress=False, seed=3,
                        settings=dataclasses.replace(s, augment="none"))
    assert a.history["train_loss"].tolist() == b.history["train_loss"].tolist()
    assert a.history["train_loss"].tolist() != plain.history["train_loss"].tolist()
    model = load_trained(tmp_path / "a" / "lenet", which="last")
    assert model.oremap_meta["settings"]["augment"] == "dihedral"
    turned = dihedral(torch.from_numpy(x), 3).numpy()
    np.testing.assert_allclose(predict_proba(model, x, tta=True),
                               predict_proba(model, turned, tta=True), atol=1e-6)
    assert not np.allclose(predict_proba(model, x), predict_proba(model, turned), atol=1e-6)
    with pytest.raises(ConfigError, match="augment"):
        train_model("lenet", x, y, out_dir=tmp_path / "a", seed=3, progress=False, resume=True,
                    settings=dataclasses.replace(s, augment="none"))


@pytest.mark.parametrize("name", ["lenet", "alexnet", "vgg8", "resnet50", "mobilenet_v2", "vit"])
def test_fast_inference_equals_the_plain_module(name: str) -> None:
    """predict_proba runs a BatchNorm-folded, channels_last copy on CPU: same probabilities
    within float32 round-off, for full and partial batches and with TTA; the copy follows
    the weights when they change."""
    from oremap.models import create
    from oremap.train import inference_model, predict_proba

    torch.manual_seed(0)
    model = create(name, in_channels=3, num_classes=2, input_size=32, profile="fast")
    model.train()
    model(torch.randn(8, 3, 32, 32))  # BatchNorm running statistics away from 0 and 1
    model.eval()
    x = np.random.default_rng(0).normal(size=(70, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        plain = torch.softmax(model(torch.from_numpy(x)), 1)[:, 1].numpy()
    fast = predict_proba(model, x, batch_size=64)
    np.testing.assert_allclose(fast, plain, atol=2e-6)
    tta = predict_proba(model, x[:5], tta=True)
    assert tta.shape == (5,) and np.isfinite(tta).all()
    first = inference_model(model, torch.device("cpu"))[0]
    assert inference_model(model, torch.device("cpu"))[0] is first  # cached
    with torch.no_grad():
        next(model.parameters()).mul_(1.5)  # in place, like an optimiser step
    rebuilt = inference_model(model, torch.device("cpu"))[0]
    assert rebuilt is model if first is model else rebuilt is not first
    has_bn = any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert (first is not model) == has_bn  # folded copy only where there is BatchNorm
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in first.modules())  # all folded
    with torch.no_grad():
        changed = torch.softmax(model(torch.from_numpy(x)), 1)[:, 1].numpy()
    np.testing.assert_allclose(predict_proba(model, x), changed, atol=2e-6)
    assert "_oremap_inference" not in dict(model.named_modules())  # not a registered submodule
