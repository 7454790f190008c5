"""One source for names and limits: the configuration accepts what the registries and the
training loop accept, and nothing else.

Names: every model, baseline and ensemble rule the configuration accepts is registered, and
every registered one is accepted; an unknown name gets a "did you mean" hint. Limits: for every
bound of ``[train]`` (declared once in :mod:`oremap.limits`), a value just outside is rejected
by the configuration and by the training loop's settings check, and a value just inside is
accepted by both.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, get_args

import numpy as np
import pytest

from oremap import limits, names
from oremap.baselines import BASELINES, fit_baseline, list_baselines
from oremap.config import Config, TrainConfig, config_from_dict
from oremap.ensemble import combine, list_rules
from oremap.errors import ConfigError, InputDataError, UnknownNameError
from oremap.limits import (
    AUGMENTATIONS,
    IMBALANCE_MODES,
    SETTINGS_BOUNDS,
    TRAIN_BOUNDS,
    TRAIN_PROFILES,
    TRAIN_RELATIONS,
    Bound,
)
from oremap.models import create, list_models, list_profiles
from oremap.train import TrainSettings, _check_settings, train_models

# --------------------------------------------------------------------------- helpers


def _base() -> dict[str, Any]:
    """A small valid configuration (nothing is opened on validation)."""
    return {
        "grid": {"crs": "EPSG:32649", "bounds": [0.0, 0.0, 640.0, 640.0], "pixel_size": 10.0,
                 "cell_cols": 4, "cell_rows": 4},
        "geology": [{"name": "faults", "path": "faults.gpkg", "measure": "distance"}],
        "labels": {"orebodies": {"path": "ore.gpkg"}, "barren": [{"path": "barren.gpkg"}]},
    }


def _config(**tables: dict[str, Any]) -> Config:
    data = _base()
    for table, values in tables.items():
        data[table] = {**data.get(table, {}), **values}
    return config_from_dict(data, source="test.toml")


def _settings(**values: Any) -> TrainSettings:
    return dataclasses.replace(TrainSettings(), **values)


def _integer(name: str) -> bool:
    """Whether the setting is an integer (the config's annotation, or the bound's flag)."""
    bound = {**TRAIN_BOUNDS, **SETTINGS_BOUNDS}[name]
    field = TrainConfig.model_fields.get(name)
    return bound.integer or (field is not None and field.annotation is int)


def _edge_cases(table: dict[str, Bound]) -> list[Any]:
    """``(name, outside, inside)`` next to every limit of every bound of ``table``."""
    cases = []
    for name, bound in table.items():
        step = 1 if _integer(name) else None
        for key, limit in bound.field_kwargs().items():
            up = limit + step if step else math.nextafter(limit, math.inf)
            down = limit - step if step else math.nextafter(limit, -math.inf)
            outside, inside = {"gt": (limit, up), "ge": (down, limit),
                               "lt": (limit, down), "le": (up, limit)}[key]
            if step:
                outside, inside = int(outside), int(inside)
            cases.append(pytest.param(name, outside, inside, id=f"{name}-{key}-{limit:g}"))
    return cases


def _consistent(name: str, value: Any) -> dict[str, Any]:
    """``{name: value}`` plus partners of ``name`` in a relation, so the relation holds."""
    values = {name: value}
    for relation in TRAIN_RELATIONS:
        if name == relation.high:
            values[relation.low] = value  # low == high: the relation holds
        elif name == relation.low:
            values[relation.high] = TrainSettings.__dataclass_fields__[relation.high].default
    return values


def _train_models_jobs(jobs: Any, tmp_path: Any) -> None:
    """Call ``train_models`` with ``jobs`` and data that fail only after the jobs check."""
    X = np.zeros((3, 1, 8, 8), dtype=np.float32)
    train_models(["lenet"], X, np.zeros(2), out_dir=tmp_path, settings=_settings(),
                 seed=0, jobs=jobs, progress=False)


# --------------------------------------------------------------------------- names


def test_declared_names_are_those_registered() -> None:
    assert list_models() == sorted(names.MODELS)
    assert list_profiles() == list(names.PROFILES)
    assert list_baselines() == list(names.BASELINES) == list(BASELINES)
    assert list_rules() == list(names.RULES) == [
        "simple_average", "weighted_average", "majority_voting", "plurality_voting",
        "weighted_voting", "stacking", "top_k", "selected",
    ]


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_is_accepted(name: str) -> None:
    assert _config(train={"models": [name]}).train.models == [name]


@pytest.mark.parametrize("name", list_baselines())
def test_every_registered_baseline_is_accepted(name: str) -> None:
    assert _config(train={"baselines": [name]}).train.baselines == [name]


@pytest.mark.parametrize("name", list_rules())
def test_every_registered_rule_is_accepted(name: str) -> None:
    cfg = _config(ensemble={"rules": [name]}, maps={"target_rule": name})
    assert cfg.ensemble.rules == [name] and cfg.maps.target_rule == name


@pytest.mark.parametrize(("what", "accepted", "registered"), [
    ("model", names.MODELS, list_models()),
    ("baseline", names.BASELINES, list_baselines()),
    ("rule", names.RULES, list_rules()),
])
def test_every_accepted_name_is_registered(what: str, accepted: tuple[str, ...],
                                           registered: list[str]) -> None:
    assert sorted(accepted) == sorted(registered), what


def test_config_defaults_are_registered_names() -> None:
    cfg = _config()
    assert cfg.train.models == [names.MODELS[0]] and cfg.train.models[0] in list_models()
    assert cfg.ensemble.rules == list_rules()
    assert cfg.maps.target_rule in list_rules()


@pytest.mark.parametrize(("table", "key", "value", "hint"), [
    ("train", "models", ["lenett"], "lenet"),
    ("train", "models", ["mobilenet"], "mobilenet_v2"),
    ("train", "baselines", ["random_forrest"], "random_forest"),
    ("ensemble", "rules", ["simple_averge"], "simple_average"),
])
def test_unknown_name_is_rejected_with_a_hint(table: str, key: str, value: list[str],
                                              hint: str) -> None:
    with pytest.raises(ConfigError, match=rf"\[{table}.{key}\].*unknown .*{value[0]!r} "
                                          rf"\(did you mean {hint!r}\?\)"):
        _config(**{table: {key: value}})


def test_unknown_name_is_rejected_by_the_registries() -> None:
    with pytest.raises(UnknownNameError, match="unknown model 'lenett'"):
        create("lenett", in_channels=1)
    with pytest.raises(UnknownNameError, match="unknown baseline 'random_forrest'"):
        fit_baseline("random_forrest", np.zeros((2, 1)), np.array([0, 1]), layer_names=["a"])
    with pytest.raises(UnknownNameError, match="unknown ensemble rule 'simple_averge'"):
        combine("simple_averge", np.full((1, 2), 0.5))


@pytest.mark.parametrize("ordered", [False, True])
def test_check_registered_catches_drift(ordered: bool) -> None:
    names.check_registered("rule", ("a", "b"), ["a", "b"], ordered=ordered)
    with pytest.raises(RuntimeError, match=r"not registered: \['b'\]; not declared: \['c'\]"):
        names.check_registered("rule", ("a", "b"), ["a", "c"], ordered=ordered)
    with pytest.raises(RuntimeError, match="differ"):
        names.check_registered("rule", ("a", "b"), ["a", "b", "b"], ordered=ordered)


def test_check_registered_order() -> None:
    names.check_registered("rule", ("a", "b"), ["b", "a"])
    with pytest.raises(RuntimeError, match="order differs"):
        names.check_registered("rule", ("a", "b"), ["b", "a"], ordered=True)


# --------------------------------------------------------------------------- limits


def test_declared_bounds() -> None:
    """The documented bounds of [train] (a change here is a change of the interface)."""
    described = {name: bound.describe() for name, bound in TRAIN_BOUNDS.items()}
    assert described == {
        "epochs": "an integer >= 1", "batch_size": "an integer >= 1", "lr": "> 0",
        "lr_min": ">= 0", "beta1": "> 0 and < 1", "weight_decay": ">= 0", "workers": ">= 0",
        "jobs": "an integer >= 1", "patience": "None or an integer >= 1",
    }
    assert {n: b.describe() for n, b in SETTINGS_BOUNDS.items()} == {"beta2": ">= 0 and < 1"}
    assert [(r.low, r.high) for r in TRAIN_RELATIONS] == [("lr_min", "lr")]
    assert IMBALANCE_MODES == ("weighted_loss", "balanced_sampler", "none")
    assert TRAIN_PROFILES == ("paper", "fast")


def test_train_table_and_settings_cover_the_same_numbers() -> None:
    settings = {f.name for f in dataclasses.fields(TrainSettings)}
    assert set(TRAIN_BOUNDS) - {"jobs"} <= settings
    assert set(TRAIN_BOUNDS) <= set(TrainConfig.model_fields)
    assert set(SETTINGS_BOUNDS) <= settings
    assert not set(SETTINGS_BOUNDS) & set(TrainConfig.model_fields)


@pytest.mark.parametrize(("name", "outside", "inside"), _edge_cases(TRAIN_BOUNDS))
def test_train_bound_config_and_training_agree(name: str, outside: Any, inside: Any,
                                               tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match=rf"\[train.{name}\]"):
        _config(train=_consistent(name, outside))
    assert getattr(_config(train=_consistent(name, inside)).train, name) == inside
    if name == "jobs":  # an argument of train_models, not a TrainSettings field
        with pytest.raises(ConfigError, match=rf"jobs must be an integer >= 1; got {outside}"):
            _train_models_jobs(outside, tmp_path)
        with pytest.raises(InputDataError):  # jobs accepted: the data check comes next
            _train_models_jobs(inside, tmp_path)
        return
    with pytest.raises(ConfigError, match=rf"invalid TrainSettings: {name} must be "):
        _check_settings(_settings(**_consistent(name, outside)))
    _check_settings(_settings(**_consistent(name, inside)))


@pytest.mark.parametrize(("name", "outside", "inside"), _edge_cases(SETTINGS_BOUNDS))
def test_settings_only_bound(name: str, outside: Any, inside: Any) -> None:
    with pytest.raises(ConfigError, match=rf"{name} must be "):
        _check_settings(_settings(**{name: outside}))
    _check_settings(_settings(**{name: inside}))


@pytest.mark.parametrize("relation", TRAIN_RELATIONS, ids=lambda r: f"{r.low}<={r.high}")
def test_relation_config_and_training_agree(relation: limits.AtMost) -> None:
    high = TrainSettings.__dataclass_fields__[relation.high].default
    above = {relation.low: math.nextafter(high, math.inf), relation.high: high}
    with pytest.raises(ConfigError, match=rf"\[train\].*{relation.low} = .* is larger than "
                                          rf"{relation.high} = "):
        _config(train=above)
    with pytest.raises(ConfigError, match=rf"need {relation.low} <= {relation.high}"):
        _check_settings(_settings(**above))
    equal = {relation.low: high, relation.high: high}
    assert getattr(_config(train=equal).train, relation.low) == high
    _check_settings(_settings(**equal))


@pytest.mark.parametrize("mode", IMBALANCE_MODES)
def test_every_imbalance_mode_is_accepted_by_both(mode: str) -> None:
    assert _config(train={"imbalance": mode}).train.imbalance == mode
    _check_settings(_settings(imbalance=mode))


def test_unknown_imbalance_mode_is_rejected_by_both() -> None:
    assert get_args(TrainConfig.model_fields["imbalance"].annotation) == IMBALANCE_MODES
    with pytest.raises(ConfigError, match=r"\[train.imbalance\]"):
        _config(train={"imbalance": "smote"})
    with pytest.raises(ConfigError, match="imbalance must be one of"):
        _check_settings(_settings(imbalance="smote"))


@pytest.mark.parametrize("augment", AUGMENTATIONS)
def test_every_augmentation_is_accepted_by_both(augment: str) -> None:
    assert _config(train={"augment": augment}).train.augment == augment
    _check_settings(_settings(augment=augment))


def test_unknown_augmentation_is_rejected_by_both() -> None:
    assert get_args(TrainConfig.model_fields["augment"].annotation) == AUGMENTATIONS
    with pytest.raises(ConfigError, match=r"\[train.augment\]"):
        _config(train={"augment": "mixup"})
    with pytest.raises(ConfigError, match="augment must be one of"):
        _check_settings(_settings(augment="mixup"))


@pytest.mark.parametrize("profile", TRAIN_PROFILES)
def test_every_train_profile_is_a_model_profile(profile: str) -> None:
    assert profile in list_profiles()
    assert _config(train={"profile": profile}).train.profile == profile
    _check_settings(_settings(profile=profile))


def test_unknown_profile_is_rejected_by_both() -> None:
    assert get_args(TrainConfig.model_fields["profile"].annotation) == TRAIN_PROFILES
    with pytest.raises(ConfigError, match=r"\[train.profile\]"):
        _config(train={"profile": "huge"})
    with pytest.raises(UnknownNameError, match="unknown model profile 'huge'"):
        create("lenet", in_channels=1, profile="huge")


def test_valid_config_gives_valid_settings() -> None:
    train = _config().train
    shared = {f.name for f in dataclasses.fields(TrainSettings)} & set(TrainConfig.model_fields)
    assert shared >= set(TRAIN_BOUNDS) - {"jobs"}
    _check_settings(TrainSettings(**{name: getattr(train, name) for name in shared}))
