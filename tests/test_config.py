"""Configuration: the example validates, every kind of bad file gets a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from oremap.config import config_from_dict, load_config, to_toml, tomllib
from oremap.demo import example_config_text
from oremap.errors import ConfigError


def _example(tmp_path: Path, text: str | None = None) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text if text is not None else example_config_text("data"))
    return path


def test_example_config_validates_and_resolves_paths(tmp_path: Path) -> None:
    cfg = load_config(_example(tmp_path))
    assert cfg.grid.cell_cols == 40 and cfg.grid.cell_rows == 16
    assert cfg.geochem is not None and cfg.geochem.elements[0] == "Au"
    assert cfg.geochem.path == (tmp_path / "data" / "soil_samples.csv").resolve()
    assert [g.name for g in cfg.geology] == ["shear_zones", "faults", "alteration_zones",
                                             "quartz_sandstone"]
    assert cfg.labels.barren[0].where == {"result": "barren"}
    assert len(cfg.members()) == 10


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    cfg = load_config(_example(tmp_path))
    again = config_from_dict(tomllib.loads(to_toml(cfg)))
    assert again == cfg


def test_unknown_key_names_path_and_suggests(tmp_path: Path) -> None:
    text = example_config_text("data").replace("epochs = 15", "epoch = 15")
    with pytest.raises(ConfigError, match=r"\[train.epoch\] unknown key \(did you mean 'epochs'"):
        load_config(_example(tmp_path, text))


def test_wrong_type_says_expected_and_given(tmp_path: Path) -> None:
    text = example_config_text("data").replace("batch_size = 16", 'batch_size = "big"')
    with pytest.raises(ConfigError, match=r"\[train.batch_size\].*integer.*got 'big'"):
        load_config(_example(tmp_path, text))


def test_unknown_model_suggests_name(tmp_path: Path) -> None:
    text = example_config_text("data").replace('"lenet", ', '"lenett", ')
    with pytest.raises(ConfigError, match="did you mean 'lenet'"):
        load_config(_example(tmp_path, text))


def test_missing_required_key(tmp_path: Path) -> None:
    text = example_config_text("data").replace('crs = "EPSG:32649"                  # UTM', "# ")
    with pytest.raises(ConfigError, match=r"\[grid.crs\] required key is missing"):
        load_config(_example(tmp_path, text))


def test_all_problems_listed_at_once(tmp_path: Path) -> None:
    text = (example_config_text("data").replace("epochs = 15", "epochs = 0")
            .replace("threshold = 0.5", "threshold = 2.0"))
    with pytest.raises(ConfigError, match="2 problem") as info:
        load_config(_example(tmp_path, text))
    assert "[train.epochs]" in str(info.value) and "[predict.threshold]" in str(info.value)


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_example(tmp_path, "a = [1,"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_cross_field_rules(tmp_path: Path) -> None:
    base = tomllib.loads(example_config_text("data"))
    bad = dict(base, samples=dict(base["samples"], folds=3))
    with pytest.raises(ConfigError, match="folds > 1 needs split = 'block'"):
        config_from_dict(bad)
    bad = dict(base, labels=dict(base["labels"], negatives="distance"))
    with pytest.raises(ConfigError, match="needs min_distance"):
        config_from_dict(bad)
    ok = dict(base, labels=dict(base["labels"], negatives="distance", min_distance=100.0))
    assert config_from_dict(ok).labels.ratio is None  # ratio optional: every far cell
    geology = [dict(base["geology"][0], measure="density")]
    geology[0].pop("radius")
    with pytest.raises(ConfigError, match="needs radius"):
        config_from_dict(dict(base, geology=geology))
    with pytest.raises(ConfigError, match="either cell_cols and cell_rows, or cell_size"):
        config_from_dict(dict(base, grid=dict(base["grid"], cell_size=[20.0, 23.0])))


def test_overrides(tmp_path: Path) -> None:
    cfg = load_config(_example(tmp_path), overrides={"train.epochs": 3, "seed": 7})
    assert cfg.train.epochs == 3 and cfg.seed == 7


def test_all_neighbours_and_target_threshold(tmp_path: Path) -> None:
    text = (example_config_text("data").replace("neighbours = 12", 'neighbours = "all"')
            .replace("target_top_fraction = 0.1", "target_threshold = 0.7"))
    cfg = load_config(_example(tmp_path, text))
    assert cfg.geochem is not None and cfg.geochem.n_neighbours() is None
    assert cfg.maps.target_threshold == 0.7 and cfg.maps.target_top_fraction is None
    default = load_config(_example(tmp_path))
    assert default.geochem is not None and default.geochem.n_neighbours() == 12
    assert default.maps.target_top_fraction == 0.1
    both = text.replace("target_threshold = 0.7",
                        "target_threshold = 0.7\ntarget_top_fraction = 0.2")
    with pytest.raises(ConfigError, match="not both"):
        load_config(_example(tmp_path, both))
    with pytest.raises(ConfigError, match="neighbours must be >= 1"):
        load_config(_example(tmp_path, text.replace('neighbours = "all"', "neighbours = 0")))


def test_learned_rules_and_patience_need_inner_validation() -> None:
    base = tomllib.loads(example_config_text("data"))
    assert config_from_dict(base).samples.validation == 0.2
    off = dict(base, samples=dict(base["samples"], validation=0))
    # the example lists stacking and top_k explicitly: refused without validation
    with pytest.raises(ConfigError, match="learn from the inner validation set, or out of "
                       "fold with cross-validation"):
        config_from_dict(off)
    # with cross-validation they learn out of fold, unless told to use inner validation
    folds = dict(off, samples=dict(off["samples"], folds=3, split="block"))
    assert "stacking" in config_from_dict(folds).ensemble.rules
    with pytest.raises(ConfigError, match="learn from the inner validation set"):
        config_from_dict(dict(folds, ensemble=dict(base["ensemble"], fit_on="validation")))
    ens = {k: v for k, v in base["ensemble"].items() if k != "rules"}
    c = config_from_dict(dict(off, ensemble=ens))  # by default: the paper's five only
    assert c.ensemble.rules == ["simple_average", "weighted_average", "majority_voting",
                                "plurality_voting", "weighted_voting"]
    with pytest.raises(ConfigError, match="patience stops on the inner validation loss"):
        config_from_dict(dict(off, ensemble=ens, train=dict(base["train"], patience=3)))
    assert config_from_dict(dict(base, train=dict(base["train"], patience=3))).train.patience == 3
