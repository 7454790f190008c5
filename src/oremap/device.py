"""The torch device to train and predict on: ``"auto"`` resolved, an explicit one checked."""

from __future__ import annotations

from typing import TYPE_CHECKING

from oremap.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["choose_device"]


def choose_device(requested: str = "auto") -> torch.device:
    """Resolve ``"auto"`` to CUDA, then MPS, then CPU; check an explicit device exists.

    Raises
    ------
    ConfigError
        If ``requested`` is not a device string or that device is not available.
    """
    # imported here: torch is heavy, and check.py / pipeline.py / cli.py need this on light paths
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(
            f"device {requested!r} is not a torch device; use 'auto', 'cpu', 'cuda', "
            "'cuda:N' or 'mps'."
        ) from exc
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available()
        and (device.index is None or device.index < torch.cuda.device_count()),
        "mps": getattr(torch.backends, "mps", None) is not None
        and torch.backends.mps.is_available(),
    }
    if not available.get(device.type, False):
        raise ConfigError(f"device {requested!r} is not available here; use 'auto' or 'cpu'.")
    return device
