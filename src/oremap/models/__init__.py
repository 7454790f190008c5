"""Networks of He et al. (2024) built by name: ``create("resnet50", in_channels=14)``."""

from oremap.models import alexnet, lenet, mobilenet, resnet, vgg, vit  # noqa: F401  (register)
from oremap.models.registry import (
    PROFILES,
    check_declared,
    create,
    list_models,
    list_profiles,
    model_options,
    register,
)

check_declared()  # every family registered: the names are those of oremap.names.MODELS

__all__ = ["PROFILES", "create", "list_models", "list_profiles", "model_options", "register"]
