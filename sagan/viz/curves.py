"""Training curves: metrics.jsonl keys against step, optionally smoothed, with events marked."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sagan.viz.figure import pyplot, save_png


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def plot_curves(records: Sequence[dict], keys: Sequence[str], title: str, path: str | Path | None = None,
                ylabel: str = "", events: Sequence[int] = (), smooth: int = 0, log_y: bool = False,
                xlabel: str = "step") -> bytes | None:
    """Curves of metrics.jsonl keys against step as a PNG (None when no record has any of the keys).

    `events`: steps to mark with a vertical line (collapse alarms); `smooth`: a moving-average window drawn
    over the raw curve, which stays visible faintly.
    """
    series = {}
    for key in keys:
        pts = [(r["step"], r[key]) for r in records
               if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        if pts:
            series[key] = np.array(pts, dtype=np.float64)
    if not series:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.0))
    for i, (key, pts) in enumerate(series.items()):
        colour = f"C{i % 10}"
        if smooth > 1 and len(pts) > smooth:
            ax.plot(pts[:, 0], pts[:, 1], color=colour, alpha=0.25, lw=0.8)
            ax.plot(pts[:, 0], _moving_average(pts[:, 1], smooth), color=colour, lw=1.4, label=key)
        else:
            ax.plot(pts[:, 0], pts[:, 1], color=colour, lw=1.4, label=key, marker="o" if len(pts) < 12 else None,
                    ms=3)
    for step in events:
        ax.axvline(step, color="red", lw=0.8, ls="--")
    if log_y and all((pts[:, 1] > 0).all() for pts in series.values()):
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=8)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return save_png(fig, path)
