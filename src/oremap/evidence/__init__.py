"""Evidence layers: IDW geochemistry, geological distance and densities, rasters, the stack."""

from oremap.evidence.build import build_evidence
from oremap.evidence.features import (
    FeatureSet,
    buffer_density_map,
    density_map,
    distance_map,
    prepare_features,
    rasterise_features,
)
from oremap.evidence.idw import IdwInterpolator, idw, idw_map, prepare_samples
from oremap.evidence.manifest import EvidenceManifest, LayerRecord
from oremap.evidence.prepare import coverage_mask
from oremap.evidence.raster import (
    RasterLayerSpec,
    gradient_magnitude,
    local_std,
    raster_classes,
    raster_problems,
)
from oremap.evidence.specs import GeochemLayerSpec, GeologyLayerSpec, geochem_specs
from oremap.evidence.stack import (
    DEFAULT_MAX_BYTES,
    LazyStack,
    is_stack,
    load_stack,
    load_stack_auto,
    open_stack,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "EvidenceManifest",
    "FeatureSet",
    "GeochemLayerSpec",
    "GeologyLayerSpec",
    "IdwInterpolator",
    "LayerRecord",
    "LazyStack",
    "RasterLayerSpec",
    "buffer_density_map",
    "build_evidence",
    "coverage_mask",
    "density_map",
    "distance_map",
    "geochem_specs",
    "gradient_magnitude",
    "idw",
    "idw_map",
    "is_stack",
    "load_stack",
    "load_stack_auto",
    "local_std",
    "open_stack",
    "prepare_features",
    "prepare_samples",
    "raster_classes",
    "raster_problems",
    "rasterise_features",
]
