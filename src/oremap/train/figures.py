"""Figures of training: the loss curves of the networks (He et al. 2024, Fig. 12)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from oremap.errors import InputDataError
from oremap.io import save_figure

__all__ = ["plot_loss_curves"]

#: History column of the crops scored after every epoch, and its legend
_HELD_OUT = (("val_loss", "validation"), ("test_loss", "test (paper's protocol)"))


def plot_loss_curves(histories: Mapping[str, pd.DataFrame], path: Path) -> None:
    """Training loss per epoch and the loss of the crops scored after every epoch, one panel
    per model (He et al. 2024, Fig. 12).

    The latter is the inner validation set (``val_loss``, "validation"), or, without one, the
    test split (``test_loss``, "test (paper's protocol)": shown only, it chose no epoch).

    Parameters
    ----------
    histories : mapping of name -> DataFrame
        ``TrainResult.history`` (columns ``epoch``, ``train_loss`` and ``val_loss`` or
        ``test_loss``).
    path : Path
        Output image (PNG unless the suffix says otherwise), written atomically.

    Raises
    ------
    InputDataError
        If ``histories`` is empty.
    """
    from matplotlib.figure import Figure

    if not histories:
        raise InputDataError("no histories to plot; train at least one model first.")
    n = len(histories)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4 * ncols, 3 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (name, h) in zip(axes.flat, histories.items(), strict=False):
        ax.plot(h["epoch"], h["train_loss"], label="train", color="tab:blue")
        for column, label in _HELD_OUT:
            if column in h and h[column].notna().any():
                ax.plot(h["epoch"], h[column], label=label, color="tab:orange")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("cross-entropy loss")
        ax.legend()
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    save_figure(fig, path, dpi=120, bbox_inches=None)
