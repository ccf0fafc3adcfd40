"""Helpers every step shares: saving a figure, the progress callbacks' shapes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

EpochCallback = Callable[[int, dict[str, float]], None]
"""(epoch, that epoch's history row): training progress for the caller"""
Progress = Callable[[str, int, int], None]
"""(what, done, total): progress of a long computation for the caller"""


def save_fig(fig: Any, directory: Path, name: str) -> str:
    """Save ``fig`` as ``<directory>/<name>.png``, close it, return the path."""
    import matplotlib.pyplot as plt

    path = directory / f"{name}.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return str(path)
