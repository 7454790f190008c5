"""Tests of oremap.train.pretrain: objectives, the trunk of every network, the cache, the
fine-tuning's start from it, and the wiring into train_members."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from oremap.config import config_from_dict
from oremap.errors import ConfigError, InputDataError
from oremap.members import train_member_task, train_members
from oremap.models import create, list_models, list_profiles
from oremap.train import (
    TrainSettings,
    area_scaling,
    find_head,
    load_pretrained,
    pretrain_model,
    pretrain_path,
    pretraining_indices,
    train_model,
    trunk_digest,
)
from oremap.train import pretrain as pretrain_module
from oremap.train.pretrain import nt_xent, patch_mask

SETTINGS = TrainSettings(lr=3e-3, lr_min=3e-4, batch_size=16, profile="fast", device="cpu")
ZERO, ONE = np.zeros(3, np.float32), np.ones(3, np.float32)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: these tiny batches gain nothing from more, and lose much when another
    process holds a core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def structured(n: int = 256, c: int = 3, s: int = 16, seed: int = 0) -> np.ndarray:
    """Crops drawn from 4 striped prototypes (other frequency and direction each) plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:s, 0:s] / s
    protos = np.stack([
        np.stack([np.sin(2 * np.pi * (k + 1) * (xx * np.cos(a) + yy * np.sin(a)) + ch)
                  for ch in range(c)])
        for k, a in zip(range(4), rng.uniform(0, np.pi, 4))])
    return (protos[rng.integers(0, 4, n)] + 0.1 * rng.normal(size=(n, c, s, s))).astype(
        np.float32)


def pretrain(X: np.ndarray, path: Path, method: str = "masked", *, name: str = "lenet",
             epochs: int = 1, seed: int = 0, **kw):
    return pretrain_model(name, X, center=ZERO[:X.shape[1]], scale=ONE[:X.shape[1]],
                          method=method, epochs=epochs, out_path=path,
                          settings=kw.pop("settings", SETTINGS), seed=seed, progress=False,
                          **kw)


# --------------------------------------------------------------------------- objectives


def levels(n: int = 64, c: int = 3, s: int = 16, seed: int = 0) -> np.ndarray:
    """Crops of one random level per layer plus a little noise."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, c, 1, 1)) + 0.1 * rng.normal(size=(n, c, s, s))).astype(
        np.float32)


@pytest.mark.parametrize(("method", "data", "epochs"), [("masked", levels, 6),
                                                        ("contrastive", structured, 10)])
def test_objective_lowers_its_loss_on_structured_crops(method, data, epochs, tmp_path,
                                                       monkeypatch):
    monkeypatch.setattr(pretrain_module, "PRETRAIN_BATCH_MIN", 16)  # 4 steps an epoch
    res = pretrain(data(64), tmp_path / "p.pt", method, epochs=epochs)
    loss = res.history["loss"].to_numpy()
    assert list(res.history["epoch"]) == list(range(1, epochs + 1)) and not res.reused
    assert loss[-1] < 0.95 * loss[0], loss  # 0.84 and 0.81 of it (0.81 - 0.91 over seeds)
    assert (tmp_path / "p.csv").is_file()


def test_patch_mask_hides_the_ratio_of_whole_patches():
    mask = patch_mask(5, 16, np.random.default_rng(0), patch=4, ratio=0.5)
    assert mask.shape == (5, 1, 16, 16) and mask.dtype == bool
    patches = mask[:, 0].reshape(5, 4, 4, 4, 4).transpose(0, 1, 3, 2, 4).reshape(5, 16, 16)
    assert (patches.all(axis=2) | ~patches.any(axis=2)).all()  # whole patches only
    assert (patches.all(axis=2).sum(axis=1) == 8).all()
    assert not (mask[0] == mask[1]).all()


def test_nt_xent_is_low_for_matching_views_and_high_for_random_ones():
    z = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    other = torch.randn(8, 16, generator=torch.Generator().manual_seed(1))
    assert nt_xent(z, z, 0.1) < 0.1 < nt_xent(z, other, 0.1)


# --------------------------------------------------------------------------- every network


@pytest.mark.parametrize("name", list_models())
def test_every_network_pretrains_and_its_trunk_loads(name, tmp_path):
    assert "fast" in list_profiles()
    X = np.random.default_rng(0).normal(size=(16, 3, 32, 32)).astype(np.float32)
    for method in ("masked", "contrastive"):
        t0 = time.perf_counter()
        res = pretrain(X, tmp_path / f"{method}.pt", method, name=name)
        assert time.perf_counter() - t0 < 20
        assert np.isfinite(res.history["loss"]).all()
        state = load_pretrained(res.path)
        model = create(name, in_channels=3, num_classes=2, input_size=32, profile="fast")
        head = find_head(model, 3, 32)
        assert state["head"] == head
        assert isinstance(model.get_submodule(head), torch.nn.Linear)
        own = set(model.state_dict())
        assert set(state["trunk"]) == {k for k in own if not k.startswith(head + ".")}


# --------------------------------------------------------------------------- fine-tuning


def test_fine_tuning_starts_from_the_trunk_and_a_fresh_head(tmp_path):
    X = structured(32, s=32)
    y = np.arange(32) % 2
    res = pretrain(X, tmp_path / "pre" / "vgg8.pt", name="vgg8")
    state = load_pretrained(res.path)
    # a learning rate far below float32 resolution: the weights stay where they started
    still = dataclasses.replace(SETTINGS, epochs=1, lr=1e-30, lr_min=1e-30)
    out = train_model("vgg8", X, y, out_dir=tmp_path / "ft", settings=still, seed=7,
                      progress=False, pretrained=res.path)
    tuned = torch.load(out.last_path, weights_only=True)
    torch.manual_seed(7)
    fresh = create("vgg8", in_channels=3, num_classes=2, input_size=32, profile="fast")
    head = state["head"]
    conv = next(k for k in state["trunk"] if k.endswith("weight") and state["trunk"][k].ndim == 4)
    assert torch.equal(tuned["model"][conv], state["trunk"][conv])
    assert not torch.equal(tuned["model"][conv], fresh.state_dict()[conv])
    assert not any(k.startswith(head + ".") for k in state["trunk"])
    assert torch.equal(tuned["model"][f"{head}.weight"], fresh.state_dict()[f"{head}.weight"])
    assert tuned["meta"]["pretrain"] == {"method": "masked", "epochs": 1, "seed": 0,
                                         "digest": trunk_digest(state["trunk"])}


def test_pretrained_file_of_another_network_is_refused(tmp_path):
    X = structured(16, s=32)
    res = pretrain(X, tmp_path / "lenet.pt")
    with pytest.raises(InputDataError, match="made for another network.*name: 'lenet'"):
        train_model("vgg8", X, np.arange(16) % 2, out_dir=tmp_path, settings=SETTINGS, seed=0,
                    progress=False, pretrained=res.path)
    with pytest.raises(InputDataError, match="no pretraining file"):
        train_model("lenet", X, np.arange(16) % 2, out_dir=tmp_path, settings=SETTINGS,
                    seed=0, progress=False, pretrained=tmp_path / "missing.pt")


def test_resume_follows_the_pretraining(tmp_path, caplog):
    X = structured(32)
    y = np.arange(32) % 2
    a = pretrain(X, tmp_path / "a.pt").path
    b = pretrain(X, tmp_path / "b.pt", seed=1).path
    s = dataclasses.replace(SETTINGS, epochs=1)
    kw = dict(out_dir=tmp_path / "ft", settings=s, seed=0, progress=False)
    first = train_model("lenet", X, y, pretrained=a, **kw)
    again = train_model("lenet", X, y, pretrained=a, resume=True, **kw)
    assert again.history.equals(first.history)  # finished and matching: not retrained
    with pytest.raises(ConfigError, match="pretrain: .*'seed': 0.* on disk"):
        train_model("lenet", X, y, pretrained=b, resume=True, **kw)
    with pytest.raises(ConfigError, match="pretrain: .* on disk, None now"):
        train_model("lenet", X, y, resume=True, **kw)
    with caplog.at_level("INFO", logger="oremap.train"):
        train_model("lenet", X, y, pretrained=b, resume="matching", **kw)
    assert "training afresh" in caplog.text
    meta = torch.load(tmp_path / "ft" / "lenet" / "last.pt", weights_only=True)["meta"]
    assert meta["pretrain"]["digest"] == load_pretrained(b)["digest"]


def test_run_without_pretraining_records_nothing_new(tmp_path):
    X = structured(32)
    y = np.arange(32) % 2
    s = dataclasses.replace(SETTINGS, epochs=1)
    one = train_model("lenet", X, y, out_dir=tmp_path / "a", settings=s, seed=0, progress=False)
    two = train_model("lenet", X, y, out_dir=tmp_path / "b", settings=s, seed=0, progress=False,
                      pretrained=None)
    wa = torch.load(one.last_path, weights_only=True)
    wb = torch.load(two.last_path, weights_only=True)
    assert "pretrain" not in wa["meta"] and wa["meta"] == wb["meta"]
    assert all(torch.equal(wa["model"][k], wb["model"][k]) for k in wa["model"])
    # a checkpoint of a run before pretraining existed (no key) resumes as before
    again = train_model("lenet", X, y, out_dir=tmp_path / "a", settings=s, seed=0,
                        progress=False, resume=True)
    assert again.history.equals(one.history)


# --------------------------------------------------------------------------- cache, determinism


def test_cache_is_reused_only_when_everything_matches(tmp_path):
    X = structured(32)
    path = tmp_path / "lenet.pt"
    first = pretrain(X, path)
    digest = load_pretrained(path)["digest"]
    assert not first.reused and pretrain(X, path).reused
    assert load_pretrained(path)["digest"] == digest
    changed = X.copy()
    changed[3, 1, 2, 2] += 1.0
    assert not pretrain(changed, path).reused
    assert not pretrain(changed, path, "contrastive").reused
    assert not pretrain(changed, path, "contrastive", epochs=2).reused
    assert not pretrain(changed, path, "contrastive", epochs=2, seed=3).reused
    assert not pretrain(changed, path, "contrastive", epochs=2, seed=3,
                        indices=np.arange(1, 32)).reused
    assert pretrain(changed, path, "contrastive", epochs=2, seed=3,
                    indices=np.arange(1, 32)).reused
    path.write_bytes(b"damaged")
    assert not pretrain(X, path).reused


def test_two_pretrainings_with_one_seed_are_identical(tmp_path):
    X = structured(48)
    for method in ("masked", "contrastive"):
        a = load_pretrained(pretrain(X, tmp_path / f"a_{method}.pt", method, epochs=2).path)
        b = load_pretrained(pretrain(X, tmp_path / f"b_{method}.pt", method, epochs=2).path)
        c = load_pretrained(pretrain(X, tmp_path / f"c_{method}.pt", method, epochs=2,
                                     seed=1).path)
        assert a["digest"] == b["digest"] != c["digest"]
        assert a["history"] == [{**r, "seconds": a["history"][i]["seconds"]}
                                for i, r in enumerate(b["history"])]


# --------------------------------------------------------------------------- checks


def test_bad_method_epochs_and_scaling_are_refused(tmp_path):
    X = structured(8)
    for method in ("none", "simclr"):
        with pytest.raises(ConfigError, match="must be 'masked' or 'contrastive'"):
            pretrain(X, tmp_path / "p.pt", method)
    with pytest.raises(ConfigError, match="pretrain_epochs must be an integer >= 1"):
        pretrain(X, tmp_path / "p.pt", epochs=0)
    with pytest.raises(InputDataError, match="one value per layer"):
        pretrain_model("lenet", X, center=np.zeros(2), scale=np.ones(2), method="masked",
                       epochs=1, out_path=tmp_path / "p.pt", settings=SETTINGS, seed=0)
    with pytest.raises(InputDataError, match="scale finite and > 0"):
        pretrain_model("lenet", X, center=ZERO, scale=np.array([1, 0, 1]), method="masked",
                       epochs=1, out_path=tmp_path / "p.pt", settings=SETTINGS, seed=0)
    with pytest.raises(InputDataError, match="at least 2 crops"):
        pretrain(X, tmp_path / "p.pt", indices=np.array([0]))
    bad = X.copy()
    bad[5, 0, 0, 0] = np.nan
    with pytest.raises(InputDataError, match=r"crops \[5\] contain NaN"):
        pretrain(bad, tmp_path / "p.pt")


def _config(**train):
    return config_from_dict({
        "grid": {"crs": "EPSG:32649", "bounds": [0.0, 0.0, 640.0, 640.0], "pixel_size": 10.0,
                 "cell_cols": 4, "cell_rows": 4},
        "geology": [{"name": "faults", "path": "faults.gpkg", "measure": "distance"}],
        "labels": {"orebodies": {"path": "ore.gpkg"}, "barren": [{"path": "barren.gpkg"}]},
        "train": train}, source="test.toml")


def test_config_keys_and_messages():
    t = _config().train
    assert (t.pretrain, t.pretrain_epochs) == ("none", 10)
    t = _config(pretrain="contrastive", pretrain_epochs=3).train
    assert (t.pretrain, t.pretrain_epochs) == ("contrastive", 3)
    with pytest.raises(ConfigError, match=r"\[train.pretrain\] Input should be 'none', "
                                          r"'masked' or 'contrastive' \(got 'simclr'\)"):
        _config(pretrain="simclr")
    with pytest.raises(ConfigError, match=r"\[train.pretrain_epochs\]"):
        _config(pretrain_epochs=0)


def test_crops_and_scaling_of_the_area():
    centre = np.zeros(10, bool)
    centre[[1, 4, 5, 9]] = True
    assert pretraining_indices(centre, 0).tolist() == [1, 4, 5, 9]
    few = pretraining_indices(centre, 0, cap=2)
    assert len(few) == 2 and set(few) <= {1, 4, 5, 9} and (np.diff(few) > 0).all()
    assert few.tolist() == pretraining_indices(centre, 0, cap=2).tolist()
    center, scale = area_scaling(np.array([[0.0, 1], [2, 3], [10, 5]]),
                                 np.array([[1.0, 1], [2, 4], [3, 9]]))
    assert center.tolist() == [2, 3] and scale.tolist() == [2, 4]


# --------------------------------------------------------------------------- train_members


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory) -> Path:
    from oremap.grid import Grid
    from oremap.samples import CropSpec, Label, build_samples, make_cells

    grid = Grid.from_bounds("EPSG:32649", (500000.0, 3000000.0, 501600.0, 3001440.0), 10.0)
    cells = make_cells(grid, cols=8, rows=6)
    rng = np.random.default_rng(0)
    stack = rng.normal(size=(3, *grid.shape)).astype(np.float32)
    labels = np.full(len(cells), int(Label.UNKNOWN))
    labels[[0, 5, 10, 19, 27, 30, 36, 45]] = Label.POSITIVE
    labels[[2, 7, 12, 14, 17, 22, 25, 33, 38, 40, 43, 47]] = Label.NEGATIVE
    cells["label"], cells["reason"] = labels, ""
    out = tmp_path_factory.mktemp("samples")
    build_samples(stack, ["a", "b", "c"], grid, cells, out_dir=out, progress=False,
                  crops=CropSpec(size=16, positive=(50, 4, 4), negative=(2, 8, 8)),
                  split="block", block_size=2, folds=2)
    return out


def test_train_members_pretrains_once_and_the_task_path_agrees(sample_dir, tmp_path, caplog):
    from oremap.samples import load_sample_set

    config = _config(models=["lenet"], profile="fast", epochs=1, pretrain="masked",
                     pretrain_epochs=1)
    train = tmp_path / "train"
    with caplog.at_level("INFO", logger="oremap"):
        train_members(config, sample_dir, train, seed=0, progress=False)
    state = load_pretrained(pretrain_path(train, "lenet"))
    ss = load_sample_set(sample_dir)
    assert state["meta"]["n_crops"] == int(ss.centre.sum()) == 48  # one crop per usable cell
    for fold in (0, 1):
        meta = torch.load(train / f"fold{fold}" / "lenet" / "last.pt", weights_only=True)["meta"]
        assert meta["pretrain"]["digest"] == state["digest"]
    local = torch.load(train / "fold1" / "lenet" / "last.pt", weights_only=True)["model"]
    train_member_task(config, sample_dir, train, 1, "lenet", 0, False, torch.get_num_threads())
    task = torch.load(train / "fold1" / "lenet" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(local[k], task[k]) for k in local)
    caplog.clear()
    with caplog.at_level("INFO", logger="oremap"):
        train_members(config, sample_dir, train, seed=0, progress=False, resume="matching")
    assert "reusing the masked pretraining" in caplog.text
    off = config.model_copy(update={"train": config.train.model_copy(update={"pretrain": "none"})})
    train_members(off, sample_dir, train, seed=0, progress=False, resume="matching")
    assert not (train / "pretrain").exists()
    meta = torch.load(train / "fold0" / "lenet" / "last.pt", weights_only=True)["meta"]
    assert "pretrain" not in meta
