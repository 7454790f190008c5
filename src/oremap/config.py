"""TOML configuration -> validated, frozen pydantic models."""

from __future__ import annotations

import difflib
import math
import re
import sys
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from oremap.errors import ConfigError
from oremap.limits import (
    TRAIN_BOUNDS,
    TRAIN_RELATIONS,
    Augment,
    Imbalance,
    Pretrain,
    TrainProfile,
)
from oremap.names import BASELINES, LEARNED_RULES, MODELS, PAPER_RULES, RULES

__all__ = [
    "AreaConfig",
    "CRSStr",
    "ComputeConfig",
    "Config",
    "CropClassConfig",
    "EnsembleConfig",
    "FLOAT32_BYTES",
    "GeochemConfig",
    "GeologyLayerConfig",
    "GridConfig",
    "LabelsConfig",
    "MapsConfig",
    "PredictConfig",
    "RasterConfig",
    "SafeStr",
    "SamplesConfig",
    "TrainConfig",
    "VectorSource",
    "config_from_dict",
    "dump_toml",
    "load_config",
    "to_toml",
]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


#: Bytes of one float32 pixel, for the size estimates of ``[grid] max_pixels``.
FLOAT32_BYTES = 4


def _no_control(value: str) -> str:
    """Reject strings holding control characters (newline, tab, NUL, ...)."""
    bad = sorted({repr(c) for c in value if unicodedata.category(c) == "Cc"})
    if bad:
        raise ValueError(f"must not contain control characters (found {', '.join(bad)}); "
                         "use printable characters only")
    return value


def _valid_crs(value: str) -> str:
    """Reject a CRS string that pyproj cannot parse."""
    from pyproj import CRS

    try:
        CRS.from_user_input(value)
    except Exception:  # pyproj raises CRSError with a long message
        raise ValueError(f"cannot understand CRS {value!r}; give an EPSG code such as "
                         "'EPSG:32649', a PROJ string or WKT") from None
    return value


#: A name written into file names, reports and the stored config: no control characters.
SafeStr = Annotated[str, AfterValidator(_no_control)]
#: A CRS string that pyproj can parse.
CRSStr = Annotated[str, AfterValidator(_valid_crs)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class GridConfig(_Model):
    """``[grid]``: the common raster grid and the cells cut from it (map units of ``crs``)."""

    crs: CRSStr = Field(description="CRS of the grid, e.g. 'EPSG:32649'")
    bounds: tuple[float, float, float, float] = Field(
        description="[xmin, ymin, xmax, ymax] in map units")
    pixel_size: float | tuple[float, float] = Field(description="pixel size in map units")
    cell_cols: int | None = Field(None, ge=1)
    cell_rows: int | None = Field(None, ge=1)
    cell_size: tuple[float, float] | None = Field(
        None, description="[width, height] of a cell in map units (instead of cols/rows)")
    block: int = Field(2048, ge=16, description="window size in pixels for out-of-core work")
    max_pixels: int = Field(
        500_000_000, ge=1,
        description="largest grid accepted, in pixels per layer (rows x cols); guards against "
        "a pixel_size typo that would start computing a huge grid")

    def pixels(self) -> tuple[int, int]:
        """Grid size in pixels (rows, cols)."""
        dx, dy = self.pixel_xy()
        return (round((self.bounds[3] - self.bounds[1]) / dy),
                round((self.bounds[2] - self.bounds[0]) / dx))

    def pixel_xy(self) -> tuple[float, float]:
        p = self.pixel_size
        return (float(p), float(p)) if isinstance(p, (int, float)) else (p[0], p[1])

    @model_validator(mode="after")
    def _sizes(self) -> GridConfig:
        dx, dy = self.pixel_xy()
        if dx <= 0 or dy <= 0:
            raise ValueError(f"pixel_size must be > 0, got {self.pixel_size}")
        xmin, ymin, xmax, ymax = self.bounds
        if xmax <= xmin or ymax <= ymin:
            raise ValueError("bounds must be [xmin, ymin, xmax, ymax] with xmax > xmin, "
                             "ymax > ymin")
        counts = []
        for span, step, axis in ((ymax - ymin, dy, "y"), (xmax - xmin, dx, "x")):
            n = span / step
            if not math.isfinite(n):
                raise ValueError(f"the extent along {axis} ({span:g}) divided by the pixel size "
                                 f"({step:g}) is not a finite number of pixels; check bounds and "
                                 "pixel_size")
            counts.append(n)
        rows, cols = (round(n) for n in counts)
        if rows * cols > self.max_pixels:
            gib = rows * cols * FLOAT32_BYTES / 1024**3
            raise ValueError(
                f"the grid is {rows:,} rows x {cols:,} cols = {rows * cols:,} pixels per layer "
                f"(about {gib:,.1f} GiB per float32 layer), more than [grid] max_pixels = "
                f"{self.max_pixels:,}; pixel_size = {self.pixel_size} may be a typo (it is in "
                "map units of [grid] crs), or raise [grid] max_pixels if you mean it")
        for n, step, span, axis in ((counts[1], dx, xmax - xmin, "x"),
                                    (counts[0], dy, ymax - ymin, "y")):
            if abs(n - round(n)) > 1e-6 * max(1.0, n):
                raise ValueError(f"the extent along {axis} ({span:g}) is not a whole number of "
                                 f"pixels of {step:g}; adjust bounds or pixel_size")
        for n_cells, n_px, key in ((self.cell_cols, cols, "cell_cols"),
                                   (self.cell_rows, rows, "cell_rows")):
            if n_cells is not None and n_px % n_cells:
                ok = [d for d in range(max(1, n_cells - 10), n_cells + 11) if n_px % d == 0]
                raise ValueError(
                    f"{key} = {n_cells} does not put cell edges on pixel edges ({n_px} pixels / "
                    f"{n_cells} = {n_px / n_cells:.2f}); use one of {ok} or another pixel_size")
        if self.cell_size is not None:
            for size, step, key in ((self.cell_size[0], dx, "width"),
                                    (self.cell_size[1], dy, "height")):
                n = size / step
                if abs(n - round(n)) > 1e-6 * max(1.0, n) or round(n) < 1:
                    raise ValueError(f"cell_size {key} {size:g} is not a whole number of pixels "
                                     f"of {step:g}")
        return self

    @model_validator(mode="after")
    def _cells(self) -> GridConfig:
        by_count = self.cell_cols is not None or self.cell_rows is not None
        if by_count and self.cell_size is not None:
            raise ValueError("give either cell_cols and cell_rows, or cell_size, not both")
        if by_count and (self.cell_cols is None or self.cell_rows is None):
            raise ValueError("cell_cols and cell_rows must be given together")
        if not by_count and self.cell_size is None:
            raise ValueError("give cell_cols and cell_rows, or cell_size = [width, height]")
        return self


class VectorSource(_Model):
    """A vector layer: a GeoPackage/Shapefile/GeoJSON file and optional layer name."""

    path: Path
    layer: str | None = None
    crs: CRSStr | None = Field(None, description="CRS to assume if the file has none")
    where: dict[str, str | int | float | bool | list[str]] | None = Field(
        None, description="keep only features whose column equals (or is in) the value")


class GeochemConfig(_Model):
    """``[geochem]``: soil or rock assays as a CSV of points."""

    path: Path
    x: str = "x"
    y: str = "y"
    crs: CRSStr | None = Field(None, description="CRS of x/y; required for CSV")
    elements: list[SafeStr] = Field(min_length=1)
    power: float = Field(2.0, gt=0)
    neighbours: int | Literal["all"] = Field(
        12, description='nearest samples used by IDW, or "all" (gstat default)')
    radius: float | None = Field(None, gt=0)
    log10: bool | list[str] = Field(
        True, description="log10-transform all elements (true) or the listed ones")
    clip_percentile: float | None = Field(None, gt=50, le=100)
    coverage_buffer: float = Field(0.0, ge=0, description="buffer of the samples' hull")
    extent: VectorSource | None = None
    censored: Literal["half", "limit", "drop"] = Field(
        "half", description='below-detection assays "<x": x / 2 ("half"), x ("limit"), or '
        'drop the sample ("drop"); over-range ">x" is kept as x')

    @field_validator("neighbours")
    @classmethod
    def _neighbours(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError('neighbours must be >= 1, or "all"')
        return v

    def n_neighbours(self) -> int | None:
        """IDW neighbour count; None means all samples."""
        return None if self.neighbours == "all" else int(self.neighbours)

    def log_for(self, element: str) -> bool:
        return self.log10 if isinstance(self.log10, bool) else element in self.log10

    @model_validator(mode="after")
    def _logs(self) -> GeochemConfig:
        if isinstance(self.log10, list):
            unknown = sorted(set(self.log10) - set(self.elements))
            if unknown:
                raise ValueError(f"log10 names {unknown}, which are not in elements")
        return self


class GeologyLayerConfig(VectorSource):
    """``[[geology]]``: one geological feature class turned into one evidence layer."""

    name: SafeStr
    measure: Literal["distance", "density", "buffer_density"] = "buffer_density"
    radius: float | None = Field(None, gt=0, description="influence radius, map units")
    extent: VectorSource | None = None

    @model_validator(mode="after")
    def _radius(self) -> GeologyLayerConfig:
        if self.measure != "distance" and self.radius is None:
            raise ValueError(f"measure {self.measure!r} needs radius (map units)")
        return self


class RasterConfig(_Model):
    """``[[raster]]``: a raster GDAL reads (geophysics, remote sensing) as evidence layers.

    One layer per band (``name``, or ``<name>_b<band>`` with several ``bands``), one per class
    with ``categorical`` (``<name>_<class>``: the fraction of each pixel in that class), and
    the ``derive``d layers of each band (``<layer>_gradient``, ``<layer>_texture``).
    """

    name: SafeStr
    path: Path
    band: int | None = Field(None, ge=1, description="1-based band (default 1)")
    bands: list[int] | None = Field(None, min_length=1, description="several bands: one layer "
                                    "each, named <name>_b<band>")
    crs: CRSStr | None = Field(None, description="CRS of a file that carries none")
    nodata: float | None = Field(None, description="nodata value, overriding the file's")
    resampling: Literal["auto", "average", "bilinear", "cubic", "nearest", "mode"] = Field(
        "auto", description="auto: average where the file's pixels are finer than the "
        "evidence pixel, bilinear where coarser (categorical: average = class fractions, "
        "nearest where coarser)")
    log10: bool = False
    clip_percentile: float | None = Field(None, gt=50, le=100)
    units: SafeStr | None = Field(None, description="units of the values (default: the "
                                  "file's band metadata)")
    categorical: bool = Field(False, description="a class grid: one fraction layer per class")
    max_classes: int = Field(20, ge=1, le=255, description="categorical: most classes accepted")
    derive: list[Literal["gradient", "texture"]] = Field(
        default_factory=list, description="extra layers: gradient (horizontal gradient "
        "magnitude), texture (local standard deviation within texture_radius)")
    texture_radius: float | None = Field(None, gt=0, description="map units, for texture")

    @model_validator(mode="after")
    def _consistent(self) -> RasterConfig:
        if self.band is not None and self.bands is not None:
            raise ValueError("give band or bands, not both")
        if self.bands is not None and len(set(self.bands)) != len(self.bands):
            raise ValueError(f"bands repeat: {self.bands}")
        if len(set(self.derive)) != len(self.derive):
            raise ValueError(f"derive repeats: {self.derive}")
        if "texture" in self.derive and self.texture_radius is None:
            raise ValueError("derive = ['texture'] needs texture_radius (map units)")
        if self.categorical:
            if self.derive:
                raise ValueError("a categorical grid has no derived layers; drop derive")
            if self.log10 or self.clip_percentile is not None:
                raise ValueError("log10 and clip_percentile do not apply to a categorical grid")
            if self.resampling in ("bilinear", "cubic"):
                raise ValueError("a categorical grid takes resampling auto, average (class "
                                 "fractions), nearest or mode")
        return self

    def band_list(self) -> list[int]:
        """The bands read, in order."""
        return list(self.bands) if self.bands is not None else [self.band or 1]

    def base_name(self, band: int) -> str:
        """The layer name of ``band`` (before classes and derived layers)."""
        return self.name if self.bands is None else f"{self.name}_b{band}"

    def layer_names(self) -> list[str]:
        """Layer names known before the file is read (categorical classes come later)."""
        if self.categorical:
            return []
        return [f"{self.base_name(b)}{suffix}" for b in self.band_list()
                for suffix in ("", *(f"_{d}" for d in self.derive))]


class LabelsConfig(_Model):
    """``[labels]``: known orebodies (positives) and barren ground (negatives)."""

    orebodies: VectorSource
    orebody_buffer: float = Field(0.0, ge=0)
    negatives: Literal["verified", "distance", "all", "pu_bagging"] = Field(
        "verified", description="verified (barren holes/trenches) | distance (random cells far "
        "from ore) | all (every usable cell without ore: presence/background) | pu_bagging "
        "(as all, trained on bags of positives against bootstrap samples of the unlabelled "
        "cells)")
    barren: list[VectorSource] = Field(default_factory=list)
    min_distance: float | None = Field(None, gt=0)
    ratio: float | None = Field(None, gt=0, description="distance: negatives per positive "
                                "cell, drawn at random under the seed (left out: every cell "
                                ">= min_distance, no draw); pu_bagging: unlabelled cells per "
                                "positive in a bag (default 1)")
    bags: int = Field(10, ge=1, description="pu_bagging: bags (models) per baseline")

    @model_validator(mode="after")
    def _strategy(self) -> LabelsConfig:
        if self.negatives == "verified" and not self.barren:
            raise ValueError("negatives = 'verified' needs at least one [[labels.barren]] source")
        if self.negatives == "distance" and self.min_distance is None:
            raise ValueError("negatives = 'distance' needs min_distance (and optionally ratio: "
                             "negatives per positive cell, drawn at random)")
        return self


class AreaConfig(VectorSource):
    """``[samples] area``: the study area; cells outside it are not used."""

    rule: Literal["centre", "intersects"] = Field(
        "centre", description="centre: a cell is in when its centre lies in the area; "
        "intersects: when it meets the area at all")


class CropClassConfig(_Model):
    n: int = Field(ge=1, description="at most n windows per cell")
    a: int = Field(ge=1, description="step along X in pixels")
    b: int = Field(ge=1, description="step along Y in pixels")


class SamplesConfig(_Model):
    """``[samples]``: crops and the train/test split."""

    crop_size: int = Field(32, ge=4)
    positive: CropClassConfig = CropClassConfig(n=50, a=12, b=24)
    negative: CropClassConfig = CropClassConfig(n=10, a=32, b=64)
    nodata_tolerance: float = Field(0.0, ge=0, lt=1)
    area: AreaConfig | None = Field(
        None, description="study area (vector layer): cells outside it are not used")
    split: Literal["cell", "block", "random"] = "cell"
    test_fraction: float = Field(0.2, gt=0, lt=1)
    block_size: int = Field(4, ge=1)
    folds: int = Field(1, ge=1)
    context: int = Field(
        0, ge=0, le=10, description="k > 0: each evidence layer gets a companion channel, its "
        "mean over the (2k+1) x (2k+1) cells around each pixel, so every crop also sees k "
        "cells of neighbourhood; 0: the cell only")
    validation: float = Field(
        0.2, ge=0, le=0.5, description="share of each fold's training side held out (by the "
        "split's unit: blocks, cells or crops) as inner validation, for the networks' epoch "
        "choice, the ensemble weights and the learned rules (stacking, top_k); 0: none")
    compare_random: bool = Field(
        False, description="also evaluate the paper's random crop split, side by side")

    @model_validator(mode="after")
    def _folds(self) -> SamplesConfig:
        if self.folds > 1 and self.split != "block":
            raise ValueError("folds > 1 needs split = 'block'")
        return self


class TrainConfig(_Model):
    """``[train]``: networks and baselines, optimiser and schedule.

    Names come from :mod:`oremap.names`, bounds, choices and relations of the numbers from
    :mod:`oremap.limits`, which :func:`oremap.train.train_model` checks too.
    """

    models: list[str] = Field(default_factory=lambda: list(MODELS[:1]))
    baselines: list[str] = Field(default_factory=list)
    profile: TrainProfile = "paper"
    epochs: int = Field(50, **TRAIN_BOUNDS["epochs"].field_kwargs())
    batch_size: int = Field(16, **TRAIN_BOUNDS["batch_size"].field_kwargs())
    lr: float = Field(1e-4, **TRAIN_BOUNDS["lr"].field_kwargs())
    lr_min: float = Field(1e-5, **TRAIN_BOUNDS["lr_min"].field_kwargs())
    beta1: float = Field(0.9, **TRAIN_BOUNDS["beta1"].field_kwargs())
    weight_decay: float = Field(0.0, **TRAIN_BOUNDS["weight_decay"].field_kwargs())
    workers: int = Field(8, **TRAIN_BOUNDS["workers"].field_kwargs())
    imbalance: Imbalance = "weighted_loss"
    augment: Augment = Field(
        "none", description="dihedral: train on a random one of the 8 rotations/reflections of "
        "each crop, and average every prediction over the 8 (geological evidence has no "
        "preferred orientation); none: as given")
    patience: int | None = Field(
        None, **TRAIN_BOUNDS["patience"].field_kwargs(),
        description="stop a network after this many epochs without a lower validation loss "
        "(needs [samples] validation > 0); none: train every epoch (the "
        "epoch of lowest validation loss is still the one used)")
    pretrain: Pretrain = Field(
        "none", description="self-supervised pretraining of every network's trunk on the "
        "crops of every usable cell, without labels, before the per-fold training: masked "
        "(reconstruct masked patches) or contrastive (SimCLR); none: random initialisation "
        "(docs/pretraining.md)")
    pretrain_epochs: int = Field(
        10, ge=1, description="passes over the area's crops of the pretraining (used only "
        "with pretrain = masked or contrastive)")
    device: str = "auto"
    jobs: int = Field(1, **TRAIN_BOUNDS["jobs"].field_kwargs())

    @field_validator("models")
    @classmethod
    def _models(cls, v: list[str]) -> list[str]:
        return _check_names(v, MODELS, "model")

    @field_validator("baselines")
    @classmethod
    def _baselines(cls, v: list[str]) -> list[str]:
        return _check_names(v, BASELINES, "baseline")

    @model_validator(mode="after")
    def _schedule_and_members(self) -> TrainConfig:
        values = {name: getattr(self, name) for r in TRAIN_RELATIONS for name in (r.low, r.high)}
        for relation in TRAIN_RELATIONS:
            if not relation.holds(values):
                raise ValueError(relation.config_message(values))
        if not self.models and not self.baselines:
            raise ValueError("nothing to train: [train] models and [train] baselines are both "
                             f"empty; name at least one model ({', '.join(MODELS)}) or "
                             f"baseline ({', '.join(BASELINES)})")
        return self


class PredictConfig(_Model):
    threshold: float = Field(0.5, gt=0, lt=1)
    tta: bool = False


class EnsembleConfig(_Model):
    rules: list[str] = Field(default_factory=lambda: list(RULES))
    members: list[str] | None = Field(None, description="models/baselines to combine; all")
    weight_metric: Literal["accuracy", "f1", "auc"] = "accuracy"
    top_k: int = Field(3, ge=1, description="members averaged by the top_k rule (the k best "
                       "by ROC AUC on the inner validation cells)")
    stability_seeds: int = Field(
        0, ge=0, description="retrain every member with this many extra seeds (0: skip; "
        ">= 2 to measure seed stability in `oremap run`)")
    fit_on: Literal["out_of_fold", "validation"] = Field(
        "out_of_fold", description="what the weights, learned rules and calibrators are "
        "fitted on with cross-validation: the held-out predictions of the other folds' cells "
        "(the whole training side, cross-fitted), or each fold's inner validation cells; one "
        "split always uses its inner validation cells")
    calibration: Literal["platt", "temperature", "isotonic", "none"] = Field(
        "platt", description="calibration of each member's P(ore) before the averaging and "
        "learned rules combine them (networks; baselines too unless baseline_calibration)")
    baseline_calibration: Literal["same", "platt", "temperature", "isotonic", "none"] = Field(
        "same", description="calibration of the baselines' P(ore); 'same' as calibration")

    @field_validator("stability_seeds")
    @classmethod
    def _seeds(cls, v: int) -> int:
        if v == 1:
            raise ValueError("stability_seeds must be 0 (skip) or >= 2 (one seed shows no "
                             "variation)")
        return v

    @field_validator("rules")
    @classmethod
    def _rules(cls, v: list[str]) -> list[str]:
        return _check_names(v, RULES, "ensemble rule")


class MapsConfig(_Model):
    stride: int = Field(8, ge=1, description="sliding-window stride in pixels")
    continuous: bool = True
    target_threshold: float | None = Field(None, gt=0, lt=1)
    target_top_fraction: float | None = Field(
        None, gt=0, lt=1, description="default 0.1 when target_threshold is not given")
    target_rule: str = Field("weighted_average", description=(
        "the ensemble rule recommended (and the targets drawn on) when paired comparisons "
        "cannot tell the best held-out map from others"))
    known_ground_distance: float | None = Field(None, gt=0, description=(
        "map units: target ground within this distance of a known orebody is known ground, "
        "the rest new ground (default: the larger side of a cell)"))
    permutation_repeats: int = Field(3, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _default_fraction(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("target_threshold") is None \
                and data.get("target_top_fraction") is None:
            data = {**data, "target_top_fraction": 0.1}
        return data

    @model_validator(mode="after")
    def _targets(self) -> MapsConfig:
        if self.target_threshold is not None and self.target_top_fraction is not None:
            raise ValueError("give target_threshold or target_top_fraction, not both")
        if self.target_rule not in RULES:
            raise ValueError(f"target_rule must be one of {list(RULES)}")
        return self


class ComputeConfig(_Model):
    """``[compute]``: where the heavy work runs. Results do not depend on it."""

    scheduler: SafeStr = Field(
        "local", description="local (this process; no Dask) | processes (a Dask LocalCluster "
        "on this machine) | the address of a running Dask scheduler, e.g. tcp://host:8786 "
        "(the run folder must then be on storage every worker sees)")
    workers: int | None = Field(None, ge=1, description="processes: worker processes "
                                "(default: the cores this process may use / "
                                "threads_per_worker)")
    threads_per_worker: int = Field(1, ge=1, description="processes: threads per worker; "
                                    "every task also sets torch and BLAS to this many threads")

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, v: str) -> str:
        if v in ("local", "processes") or re.fullmatch(r"(tcp|tls|inproc|ucx)://\S+", v):
            return v
        raise ValueError(f"scheduler must be 'local', 'processes' or a Dask scheduler address "
                         f"such as 'tcp://host:8786'; got {v!r}")


class Config(_Model):
    """The whole configuration of one oremap run."""

    name: SafeStr = "oremap run"
    seed: int = 0
    grid: GridConfig
    geochem: GeochemConfig | None = None
    geology: list[GeologyLayerConfig] = Field(default_factory=list)
    raster: list[RasterConfig] = Field(default_factory=list)
    labels: LabelsConfig
    samples: SamplesConfig = SamplesConfig()
    train: TrainConfig = TrainConfig()
    predict: PredictConfig = PredictConfig()
    ensemble: EnsembleConfig = EnsembleConfig()
    maps: MapsConfig = MapsConfig()
    compute: ComputeConfig = ComputeConfig()
    truth: Path | None = Field(
        None, description="optional hidden-truth raster (demo) to score unknown-cell ranking")

    @model_validator(mode="after")
    def _crop_fits(self) -> Config:
        rows, cols = self.grid.pixels()
        if self.samples.crop_size > min(rows, cols):
            raise ValueError(
                f"[samples] crop_size = {self.samples.crop_size} pixels is larger than the grid "
                f"({rows} x {cols} pixels); use crop_size <= {min(rows, cols)} or a finer "
                "[grid] pixel_size")
        return self

    @model_validator(mode="after")
    def _layers(self) -> Config:
        if self.geochem is None and not self.geology and not self.raster:
            raise ValueError("no evidence: give [geochem], [[geology]] layers and/or [[raster]] "
                             "layers")
        names = [g.name for g in self.geology] + (self.geochem.elements if self.geochem else [])
        names += [n for r in self.raster for n in r.layer_names()]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"evidence layer names must be unique; repeated: {dup}")
        return self

    @model_validator(mode="before")
    @classmethod
    def _default_rules(cls, data: Any) -> Any:
        """Without inner validation, the default rules are the paper's five."""
        if not isinstance(data, dict):
            return data
        samples, ensemble = data.get("samples") or {}, data.get("ensemble") or {}
        if isinstance(samples, dict) and isinstance(ensemble, dict) \
                and samples.get("validation", 0.2) == 0 and "rules" not in ensemble:
            data = {**data, "ensemble": {**ensemble, "rules": list(PAPER_RULES)}}
        return data

    @model_validator(mode="after")
    def _validation(self) -> Config:
        if self.samples.validation > 0:
            return self
        if self.train.patience is not None:
            raise ValueError("[train] patience stops on the inner validation loss: set "
                             "[samples] validation > 0 (e.g. 0.2), or drop patience")
        learned = [r for r in self.ensemble.rules if r in LEARNED_RULES]
        out_of_fold = self.samples.folds > 1 and self.ensemble.fit_on == "out_of_fold"
        if learned and not out_of_fold:
            raise ValueError(f"[ensemble] rules {learned} learn from the inner validation "
                             "set, or out of fold with cross-validation: set [samples] "
                             "validation > 0 (e.g. 0.2) or folds > 1, or drop them")
        return self

    def members(self) -> list[str]:
        """Models and baselines trained in this run, in order."""
        return [*self.train.models, *self.train.baselines]


def _check_names(values: list[str], allowed: tuple[str, ...], what: str) -> list[str]:
    for v in values:
        if v not in allowed:
            hint = difflib.get_close_matches(v, allowed, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ValueError(f"unknown {what} {v!r}{extra}; choose from {list(allowed)}")
    if len(set(values)) != len(values):
        raise ValueError(f"{what} names repeat: {values}")
    return values


# --------------------------------------------------------------------------- loading


#: Parts of an error location that name a member of a union type, not a key.
_UNION_TAGS = ("float", "int", "str", "bool")


def _key_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """``loc`` without the union-member tags pydantic inserts (``pixel_size.float``)."""
    return tuple(p for p in loc
                 if not (isinstance(p, str) and (p in _UNION_TAGS or "[" in p)))


def _readable_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """The errors, with a non-finite number reported once per key.

    ``nan`` given to ``float | tuple[float, float]`` fails every member of the union; only the
    "finite number" error says what is wrong, so the others at that key are dropped.
    """
    errors = exc.errors()
    finite = {_key_loc(e["loc"]) for e in errors if e["type"] == "finite_number"}
    out, seen = [], set()
    for err in errors:
        key = _key_loc(err["loc"])
        if err["type"] == "finite_number":
            if key in seen:
                continue
            seen.add(key)
            err = {**err, "loc": key,
                   "msg": "must be a finite number (inf and nan are not allowed)"}
        elif key != tuple(err["loc"]) and any(f[:len(key)] == key for f in finite):
            continue  # another member of the union, failed by the same number
        out.append(err)
    return out


def _format_errors(exc: ValidationError, source: str) -> str:
    errors = _readable_errors(exc)
    lines = [f"{source}: {len(errors)} problem(s) in the configuration:"]
    for err in errors:
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            key = str(err["loc"][-1])
            known = _known_keys(err["loc"][:-1])
            hint = difflib.get_close_matches(key, known, n=1)
            msg = "unknown key" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            if known:
                msg += f"; allowed keys: {', '.join(sorted(known))}"
        elif err["type"] == "missing":
            msg = "required key is missing"
        else:
            given = err.get("input")
            if not isinstance(given, dict):
                msg += f" (got {given!r})"
        lines.append(f"  [{loc}] {msg}")
    return "\n".join(lines)


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    model: Any = Config
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = _inner_model(field.annotation)
        if model is None:
            return []
    return list(getattr(model, "model_fields", {}))


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make every ``path`` (and ``truth``) relative to the config file's folder absolute."""

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if k in ("path", "truth") and isinstance(v, str) and not Path(v).is_absolute():
                    v = str((base / v).resolve())
                out[k] = fix(v)
            return out
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    return fix(data)


def config_from_dict(data: dict[str, Any], *, source: str = "configuration",
                     base_dir: Path | None = None) -> Config:
    """Validate a configuration given as a dict (paths resolved against ``base_dir``)."""
    if base_dir is not None:
        data = _resolve_paths(data, base_dir)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


def load_config(path: str | Path, *, overrides: dict[str, Any] | None = None) -> Config:
    """Read and validate a TOML configuration file.

    Relative paths in the file are taken relative to the file's folder. ``overrides`` maps
    dotted keys (``"train.epochs"``) to values applied before validation.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"configuration file {path} does not exist")
    if path.is_dir():
        raise ConfigError(f"configuration file {path} is a folder; give the path of the TOML "
                          "file inside it")
    try:
        raw = path.read_bytes()
    except PermissionError:
        raise ConfigError(f"configuration file {path} cannot be read (permission denied); "
                          "fix its permissions (chmod u+r) or copy it somewhere readable") from None
    except OSError as exc:
        raise ConfigError(f"configuration file {path} cannot be read ({exc.strerror or exc})"
                          ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not UTF-8 text (byte {exc.start}: "
                          f"{exc.reason}); give a TOML text file, saved as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    for key, value in (overrides or {}).items():
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return config_from_dict(data, source=str(path), base_dir=path.parent.resolve())


def dump_toml(data: dict[str, Any]) -> str:
    """Write a plain dict (tables, arrays of tables, scalars, lists) as TOML text.

    Uses ``tomli_w``, so any string (quotes, backslashes, newlines, unicode) is escaped
    correctly and the text always parses back to ``data``.

    Raises
    ------
    TypeError
        If a value has no TOML form (``None``, a path, an arbitrary object).
    """
    return tomli_w.dumps(data)


def to_toml(config: Config) -> str:
    """Serialise a configuration to TOML (the resolved config written into a run folder)."""
    data = config.model_dump(mode="json", exclude_none=True)
    return tomli_w.dumps(data)
