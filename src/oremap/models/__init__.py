"""Networks of He et al. (2024) built by name: ``create("resnet50", in_channels=14)``."""

from oremap.models import alexnet, lenet, mobilenet, resnet, vgg, vit  # noqa: F401  (register)
from oremap.models.registry import (
    PROFILES,
    create,
    list_models,
    list_profiles,
    model_options,
    register,
)

__all__ = ["PROFILES", "create", "list_models", "list_profiles", "model_options", "register"]
