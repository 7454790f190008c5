"""``oremap init``: a commented configuration template for the user's own data.

Unlike ``oremap config example`` (the demo's configuration, pointing at the demo's files), the
template carries no demo-only keys (no ``truth``) and every input path is a placeholder under
``data/`` next to the file, marked ``CHANGE``: the user copies their files there under those
names or edits the paths, sets ``[grid]``, and runs ``oremap config check``.
"""

from __future__ import annotations

from pathlib import Path

from oremap.errors import ConfigError

__all__ = ["TEMPLATE_NAME", "TEMPLATE_PATHS", "template_text", "write_template"]

#: File name ``oremap init DIR`` writes into DIR.
TEMPLATE_NAME = "oremap.toml"

#: The placeholder input files of the template, relative to its folder (one per input kind).
TEMPLATE_PATHS = ("data/assays.csv", "data/geology.gpkg", "data/orebodies.gpkg",
                  "data/drilling.gpkg")

_TEMPLATE = '''\
# oremap configuration for your own data, written by `oremap init`.
#
# Lines marked CHANGE are placeholders: set [grid] for your study area, and either copy your
# files to the paths below or edit the paths. Relative paths are relative to this file's
# folder. Then run `oremap config check oremap.toml` until it reports the configuration valid, and
# `oremap run oremap.toml --out runs/my_area`.
#
# Every distance, radius and pixel size is in map units of [grid] crs (metres for UTM).
# Inputs in another CRS are reprojected to the grid's CRS; an input without a CRS needs
# `crs = "EPSG:..."` in its table. Remove a table you have no data for (e.g. [geochem] or a
# [[geology]] layer); at least one evidence layer and the [labels] are required.
name = "my study area"              # CHANGE: shown in the report and the maps
seed = 0                            # one seed drives splits, crops, training and sampling

[grid]                              # the raster grid every evidence layer is computed on
crs = "EPSG:32649"                  # CHANGE: a projected CRS in metres, e.g. your UTM zone
bounds = [500000.0, 7000000.0, 520000.0, 7020000.0]  # CHANGE: xmin, ymin, xmax, ymax (crs units)
pixel_size = 25.0                   # evidence pixel in crs units (25 m); bounds: whole pixels
cell_cols = 20                      # the grid is cut into cells (the unit labelled and mapped):
cell_rows = 20                      # 20 x 20 cells of 1 km here (or: cell_size = [1000.0, 1000.0])

[geochem]                           # point assays: one interpolated (IDW) layer per element
path = "data/assays.csv"            # CHANGE: a CSV with a header row, one row per sample
x = "x"                             # CHANGE: column of the easting
y = "y"                             # CHANGE: column of the northing
crs = "EPSG:32649"                  # CHANGE: CRS of x and y (a CSV carries none: required)
elements = ["Au", "As", "Cu"]       # CHANGE: element columns ("<0.5" reads as half the limit)
power = 2.0                         # IDW distance exponent
neighbours = 12                     # nearest samples used, or "all"
log10 = true                        # log10 before interpolation (or a list of elements)
clip_percentile = 99.5              # clip extreme assays at this percentile
coverage_buffer = 500.0             # evidence only within this distance of the samples' hull

[[geology]]                         # one evidence layer per geological feature class
name = "faults"                     # CHANGE: the layer's name in maps and tables
path = "data/geology.gpkg"          # CHANGE: GeoPackage, Shapefile or GeoJSON
layer = "faults"                    # CHANGE: layer inside the file (omit for a one-layer file)
measure = "buffer_density"          # distance | density | buffer_density (cone kernel)
radius = 1000.0                     # influence radius of density measures (crs units)
# where = { type = "thrust" }       # optional: only features whose column has this value
# extent = { path = "data/geology.gpkg", layer = "mapped_area" }  # optional: mapped area

[[geology]]
name = "intrusions"                 # CHANGE
path = "data/geology.gpkg"          # CHANGE
layer = "intrusions"                # CHANGE
measure = "distance"                # exact distance to the nearest feature (0 inside)

# [[raster]]                        # optional: any raster GDAL reads (magnetics, gravity, ...)
# name = "magnetics"
# path = "data/magnetics.tif"       # GeoTIFF, COG, VRT; warped onto the grid tile by tile
# derive = ["gradient"]             # optional: + horizontal gradient layer

[labels]                            # what the models learn from
orebodies = { path = "data/orebodies.gpkg" }  # CHANGE: known deposits (points or polygons)
orebody_buffer = 0.0                # grow each orebody by this distance (crs units)
negatives = "verified"              # verified: the barren records below | distance: cells at
                                    # least min_distance from ore (then drop [[labels.barren]])

[[labels.barren]]                   # drilling or trenching that proved ground barren
path = "data/drilling.gpkg"         # CHANGE
layer = "drillholes"                # CHANGE (omit for a one-layer file)
where = { result = "barren" }       # CHANGE: column and value that mark barren records

[samples]
crop_size = 32                      # window side in pixels (at most a cell's side in pixels)
positive = { n = 40, a = 4, b = 4 } # <= n windows per orebody cell, steps a (x), b (y) px
negative = { n = 6, a = 8, b = 8 }
split = "cell"                      # cell | block (spatial blocks, more honest) | random
test_fraction = 0.2
validation = 0.2                    # inner validation: epoch choice, weights, stacking

[train]
models = ["lenet", "vgg8", "resnet50", "mobilenet_v2"]
baselines = ["logistic", "random_forest", "woe"]
profile = "fast"                    # fast (for CPUs) | paper (the published widths, for a GPU)
epochs = 30
batch_size = 16
pretrain = "none"                   # none | masked | contrastive: first pretrain each network
                                    # on every usable cell's crop, without labels
pretrain_epochs = 10                # passes of that pretraining (docs/pretraining.md)
device = "auto"                     # auto: CUDA, then Apple MPS, then CPU

[ensemble]
weight_metric = "accuracy"          # accuracy | f1 | auc
fit_on = "out_of_fold"              # out_of_fold | validation: what the weights, learned
                                    # rules and calibrators learn from (folds > 1)
calibration = "platt"               # platt | temperature | isotonic | none (docs/calibration.md)

[maps]
target_top_fraction = 0.1           # targets: the top 10 % of the area
'''


def template_text() -> str:
    """The template's TOML text."""
    return _TEMPLATE


def write_template(folder: Path, *, force: bool = False) -> Path:
    """Write :func:`template_text` to ``folder / TEMPLATE_NAME`` (the folder is made).

    Raises
    ------
    ConfigError
        The file exists and ``force`` is false, or ``folder`` is a file.
    """
    folder = Path(folder)
    path = folder / TEMPLATE_NAME
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} is a file, not a folder; give the folder to write "
                          f"{TEMPLATE_NAME} into")
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; oremap init does not overwrite it. Edit it, choose "
                          "another folder, or add --force to replace it with a fresh template")
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(template_text(), encoding="utf-8")
    return path
