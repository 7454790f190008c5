"""The commented example configuration of the demo (``oremap config example``)."""

from __future__ import annotations

from oremap.demo.area import DEMO_BOUNDS

__all__ = ["DEMO_MODELS", "EXAMPLE_CONFIG", "example_config_text"]


EXAMPLE_CONFIG = '''\
# oremap configuration: the embedded demo study area (a synthetic analogue of the Bawangou
# gold area of He et al. 2024). Every distance is in map units of [grid] crs (metres here).
# Relative paths are relative to this file's folder: saved as DIR/my.toml, this file reads
# the data that `oremap demo --out DIR` writes into DIR/data.
name = "oremap demo"
seed = {seed}                        # one seed drives splits, crops, training and sampling
truth = "{data}/fertility.tif"      # demo only: hidden fertility, to score unknown cells

[grid]
crs = "EPSG:32649"                  # UTM 49N; inputs in other CRSs are reprojected to it
bounds = [{xmin}, {ymin}, {xmax}, {ymax}]   # xmin, ymin, xmax, ymax
pixel_size = 0.5                    # evidence raster pixel (m): a 20 m x 23 m cell = 40 x 46 px
cell_cols = 40                      # cells across (or: cell_size = [20.0, 23.0])
cell_rows = 16                      # cells down
block = 2048                        # window (px) for out-of-core evidence computation

[geochem]                           # point assays, one IDW layer per element
path = "{data}/soil_samples.csv"
x = "x"
y = "y"
crs = "EPSG:32649"                  # a CSV has no CRS of its own: required
elements = ["Au", "Ag", "As", "Cu", "Pb", "Zn", "Hg", "Sb", "W", "Mo"]
power = 2.0                         # IDW distance exponent
neighbours = 12                     # nearest samples used, or "all"
log10 = true                        # log10 before interpolation (or a list of elements)
clip_percentile = 99.5              # clip extreme assays at this percentile
coverage_buffer = 15.0              # coverage = convex hull of the samples buffered by this

[[geology]]                         # one evidence layer per geological feature class
name = "shear_zones"
path = "{data}/geology.gpkg"
layer = "shear_zones"
measure = "buffer_density"          # distance | density | buffer_density (cone kernel)
radius = 40.0                       # influence radius R
extent = {{ path = "{data}/geology.gpkg", layer = "geology_extent" }}  # mapped area

[[geology]]
name = "faults"
path = "{data}/geology.gpkg"
layer = "faults"
measure = "buffer_density"
radius = 30.0
extent = {{ path = "{data}/geology.gpkg", layer = "geology_extent" }}

[[geology]]
name = "alteration_zones"
path = "{data}/geology.gpkg"
layer = "alteration_zones"
measure = "buffer_density"
radius = 30.0
extent = {{ path = "{data}/geology.gpkg", layer = "geology_extent" }}

[[geology]]
name = "quartz_sandstone"
path = "{data}/geology.gpkg"
layer = "quartz_sandstone"
measure = "distance"                # exact distance to the nearest zone (0 inside)
extent = {{ path = "{data}/geology.gpkg", layer = "geology_extent" }}

[[raster]]                          # airborne geophysics: any raster GDAL reads
name = "magnetics"
path = "{data}/magnetics.tif"
resampling = "auto"                 # average where finer than the pixel, bilinear where coarser
derive = ["gradient"]               # + magnetics_gradient: horizontal gradient magnitude

[[raster]]
name = "potassium"                  # gamma-ray K (%)
path = "{data}/radiometrics_k.tif"

[labels]
orebodies = {{ path = "{data}/orebodies.gpkg", layer = "orebodies" }}  # positives
orebody_buffer = 0.0
negatives = "verified"              # verified (barren holes/trenches) | distance

[[labels.barren]]                   # drilling that proved ground barren
path = "{data}/drilling.gpkg"
layer = "drillholes"
where = {{ result = "barren" }}

[[labels.barren]]
path = "{data}/drilling.gpkg"
layer = "trenches"
where = {{ result = "barren" }}

[samples]
crop_size = {crop}                  # window side in pixels
positive = {{ n = {pn}, a = {pa}, b = {pb} }}   # <= n windows a cell, steps a (x), b (y) px
negative = {{ n = {nn}, a = {na}, b = {nb} }}
nodata_tolerance = 0.0              # share of nodata pixels a cell may hold (paper: 0)
split = "cell"                      # cell | block | random (the paper's, optimistic)
test_fraction = 0.2
validation = 0.2                    # inner validation: epoch choice, weights, stacking (0: off)
compare_random = {compare}          # also run the paper's random split, side by side

[train]
models = {models}
baselines = ["logistic", "random_forest", "woe"]
profile = "fast"                    # paper (published widths) | fast (for CPUs)
epochs = {epochs}
batch_size = 16
lr = 1e-4                           # cosine annealing from lr ...
lr_min = 1e-5                       # ... down to lr_min
workers = 0                         # data-loading workers (capped at the cores available)
jobs = {jobs}                            # members trained side by side in processes (1: here)
imbalance = "weighted_loss"         # weighted_loss | balanced_sampler | none
device = "auto"                     # auto: CUDA, then Apple MPS, then CPU

[predict]
threshold = 0.5

[ensemble]
rules = ["simple_average", "weighted_average", "majority_voting", "plurality_voting",
         "weighted_voting", "stacking", "top_k", "selected"]  # the paper's five, 3 learned
weight_metric = "accuracy"          # accuracy | f1 | auc
top_k = 3                           # top_k: mean of the 3 members best on inner validation
calibration = "platt"               # members' P(ore) calibrated before the averaging rules
stability_seeds = {seeds}                 # retrain with this many seeds to measure stability

[maps]
stride = {stride}                   # sliding-window stride (px) of the continuous maps
target_top_fraction = 0.1           # targets: top 10 % of the area (or target_threshold)
target_rule = "weighted_average"
'''


DEMO_MODELS = ["lenet", "alexnet", "vgg16", "vgg8", "resnet50", "mobilenet_v2", "vit"]


def example_config_text(data_dir: str = "data", *, quick: bool = False,
                        seed: int = 0) -> str:
    """The commented demo configuration; ``oremap config example`` prints it."""
    xmin, ymin, xmax, ymax = DEMO_BOUNDS
    crops = dict(crop=32, pn=6, pa=4, pb=7, nn=1, na=8, nb=7) if quick else \
        dict(crop=32, pn=40, pa=2, pb=2, nn=6, na=8, nb=7)
    return EXAMPLE_CONFIG.format(
        seed=seed, xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax, data=data_dir,
        models="[" + ", ".join(f'"{m}"' for m in DEMO_MODELS) + "]",
        epochs=2 if quick else 15, stride=16 if quick else 8, seeds=0 if quick else 3,
        compare="false" if quick else "true", jobs=1 if quick else 2, **crops)
