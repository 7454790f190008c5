"""Cell labels and predictions shared by all stages; no dependencies, no side effects.

:mod:`oremap.samples`, :mod:`oremap.evaluate` and :mod:`oremap.ensemble` import these from
here, so a module that only needs the labels does not pull in plotting code.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["UNDECIDED", "Label"]


class Label(IntEnum):
    """Cell labels: ore (known deposit), barren (known negative), unknown (unlabelled)."""

    POSITIVE = 1
    NEGATIVE = 0
    UNKNOWN = -1


#: Prediction of a cell on which a voting rule refuses to decide (a tie in majority voting).
UNDECIDED = -2
