"""Evidence layers: IDW geochemistry, geological distance and densities, the layer stack."""

from oremap.evidence.features import (
    FeatureSet,
    buffer_density_map,
    density_map,
    distance_map,
    prepare_features,
    rasterise_features,
)
from oremap.evidence.idw import IdwInterpolator, idw, idw_map, prepare_samples
from oremap.evidence.stack import (
    EvidenceManifest,
    GeochemLayerSpec,
    GeologyLayerSpec,
    LayerRecord,
    build_evidence,
    coverage_mask,
    geochem_specs,
    load_stack,
)

__all__ = [
    "EvidenceManifest",
    "FeatureSet",
    "GeochemLayerSpec",
    "GeologyLayerSpec",
    "IdwInterpolator",
    "LayerRecord",
    "buffer_density_map",
    "build_evidence",
    "coverage_mask",
    "density_map",
    "distance_map",
    "geochem_specs",
    "idw",
    "idw_map",
    "load_stack",
    "prepare_features",
    "prepare_samples",
    "rasterise_features",
]
