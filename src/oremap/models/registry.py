"""Model registry: build any network of He et al. (2024) by name and profile.

Three profiles exist for every family:

``"paper"``
    The network as He et al. (2024, Sci. Rep. 14) describe it for ``C x 32 x 32``
    patches of evidence layers: small-image stems and strides, the canonical widths.
``"fast"``
    The same topology with width multipliers (and a smaller ViT) so that every model
    trains on the embedded demo in seconds per epoch on two CPU cores.
``"reference"``
    The reference implementation of the source paper with its canonical settings
    (for the ImageNet networks: exactly torchvision's architecture, so that with
    ``in_channels=3, num_classes=1000, input_size=224`` the parameter counts are
    identical). Used to check faithfulness, rarely to train.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from oremap.errors import ConfigError, UnknownNameError
from oremap.names import MODELS, PROFILES
from oremap.registry import Registry

__all__ = [
    "Builder",
    "check_declared",
    "create",
    "list_models",
    "list_profiles",
    "model_options",
    "register",
    "require_input_size",
]

Builder = Callable[..., nn.Module]
_CORE_ARGUMENTS = ("in_channels", "num_classes", "input_size", "profile")
_BUILDERS: Registry[Builder] = Registry("model", MODELS)


def register(name: str) -> Callable[[Builder], Builder]:
    """Decorator adding a builder ``(*, in_channels, num_classes, input_size, profile, ...)``."""
    return _BUILDERS.register(name)


def list_models() -> list[str]:
    """Names accepted by :func:`create`, sorted (the names of :data:`oremap.names.MODELS`)."""
    return sorted(_BUILDERS)


def check_declared() -> None:
    """Raise RuntimeError unless the registered models are :data:`oremap.names.MODELS`.

    Called by :mod:`oremap.models` once every family has registered its builders.
    """
    _BUILDERS.check_declared()


def list_profiles() -> list[str]:
    """Profiles accepted by :func:`create`: ``paper``, ``fast`` and ``reference``."""
    return list(PROFILES)


def model_options(name: str) -> list[str]:
    """Extra keyword options the builder of ``name`` accepts (e.g. ``patch_size`` for ViT)."""
    builder = _builder(name)
    params = inspect.signature(builder).parameters
    return [p for p in params if p not in _CORE_ARGUMENTS]


def create(
    name: str,
    *,
    in_channels: int,
    num_classes: int = 2,
    input_size: int = 32,
    profile: str = "paper",
    **options: object,
) -> nn.Module:
    """Build a freshly initialised network.

    Parameters
    ----------
    name : str
        One of :func:`list_models`.
    in_channels : int
        Number of evidence layers ``C`` of the input patches, >= 1.
    num_classes : int
        Number of output logits, >= 2.
    input_size : int
        Side ``S`` of the square input patches in cells; each family documents its minimum.
    profile : str
        ``"paper"``, ``"fast"`` or ``"reference"`` (see the module docstring).
    **options
        Family-specific options, see :func:`model_options` (ViT: ``patch_size``; all
        families with dropout: ``dropout``).

    Returns
    -------
    torch.nn.Module
        Maps a float32 ``(N, C, S, S)`` tensor to ``(N, num_classes)`` logits.

    Raises
    ------
    UnknownNameError
        If ``name``, ``profile`` or an option is not known.
    ConfigError
        If a size is not a positive integer or too small for the architecture.
    """
    builder = _builder(name)
    if profile not in PROFILES:
        raise UnknownNameError(f"unknown model profile {profile!r}; choose from {list(PROFILES)}")
    accepted = model_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UnknownNameError(
            f"model {name!r} has no option {unknown}; its options are {accepted or 'none'}"
        )
    _check_int("in_channels", in_channels, 1)
    _check_int("num_classes", num_classes, 2)
    _check_int("input_size", input_size, 1)
    return builder(
        in_channels=in_channels,
        num_classes=num_classes,
        input_size=input_size,
        profile=profile,
        **options,
    )


def require_input_size(
    name: str, profile: str, input_size: int, minimum: int, *, multiple_of: int = 1
) -> None:
    """Raise :class:`ConfigError` if ``input_size`` is below ``minimum`` or not a multiple."""
    if input_size < minimum:
        raise ConfigError(
            f"model {name!r} (profile {profile!r}) needs input patches of at least "
            f"{minimum} x {minimum} cells; got input_size={input_size}. Use larger crops "
            "or another model/profile."
        )
    if input_size % multiple_of:
        raise ConfigError(
            f"model {name!r} (profile {profile!r}) needs input_size divisible by "
            f"{multiple_of}; got input_size={input_size}. Change the crop size or the option."
        )


def _builder(name: str) -> Builder:
    return _BUILDERS.lookup(name)


def _check_int(what: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{what} must be an integer >= {minimum}; got {value!r}.")
