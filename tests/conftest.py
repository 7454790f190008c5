"""Shared test set-up: a headless matplotlib backend (the package itself never picks one)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
