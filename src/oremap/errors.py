"""Exceptions and warnings raised by oremap."""

from __future__ import annotations

__all__ = [
    "CRSMismatchError",
    "ConfigError",
    "DroppedDataWarning",
    "InputDataError",
    "OptimisticSplitWarning",
    "OremapError",
    "RunFolderError",
    "StageNotReadyError",
    "UnknownNameError",
]


class OremapError(Exception):
    """Base class of every error oremap raises on purpose (bad input, bad config)."""


class ConfigError(OremapError, ValueError):
    """The configuration file or a configuration value is invalid."""


class InputDataError(OremapError, ValueError):
    """An input data file or array is unusable; the message names the file, field and fix."""


class CRSMismatchError(InputDataError):
    """An input has no CRS, or a CRS that cannot be reconciled with the grid."""


class UnknownNameError(OremapError, ValueError):
    """A name (model, ensemble rule, measure, ...) is not one oremap knows."""


class StageNotReadyError(OremapError, RuntimeError):
    """A stage needs the outputs of an earlier stage that are not in the run directory
    (:func:`oremap.stages.stage_missing` words the message)."""


class RunFolderError(OremapError, RuntimeError):
    """The run folder cannot be used: not oremap's, locked by another process, not writable."""


class DroppedDataWarning(UserWarning):
    """Data were dropped (NaN assays, cells with nodata, ...); the counts are in the message."""


class OptimisticSplitWarning(UserWarning):
    """A random split of overlapping crops was requested: accuracies will be optimistic."""
