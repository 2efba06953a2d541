"""One look for every figure: fixed colours per variant, median + IQR / CI bands, heatmaps."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures are only ever saved
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from common.cli import naming  # noqa: E402

DPI = 160

# One colour per variant/planner/landscape name, the same in every figure of the repo.
COLORS = {
    "true": "#000000",
    "flat": "#d62728",
    "flat_multistep": "#e377c2",
    "spectral": "#ff7f0e",
    "hf": "#2ca02c",
    "helm": "#1f77b4",
    "mollified": "#9467bd",
    "cem": "#8c564b",
    "random": "#7f7f7f",
    "bfs": "#17becf",
    "helm_consistency": "#bcbd22",
    "helm_no_coarse": "#e377c2",
    "helm_no_spectral": "#ff7f0e",
    "helm_no_hf": "#2ca02c",
    "helm_exact_coarse": "#17becf",
}
_FALLBACK = plt.get_cmap("tab10").colors


def color(name: str) -> str:
    """The fixed colour of a variant; unknown names get a stable colour from tab10."""
    return COLORS.get(name, _FALLBACK[sum(map(ord, name)) % len(_FALLBACK)])


def apply_style() -> None:
    plt.rcParams.update({
        "figure.dpi": 100, "savefig.dpi": DPI, "font.size": 10, "axes.titlesize": 11,
        "axes.labelsize": 10, "legend.fontsize": 8, "axes.grid": True, "grid.alpha": 0.3,
        "axes.spines.top": False, "axes.spines.right": False,
    })


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 4.0):
    apply_style()
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, axes


def plot_band(ax, x, median, low, high, name: str, label: str | None = None, marker: str = "o",
              linestyle: str = "-") -> None:
    """A median (or mean) line with a shaded band [low, high] in the variant's colour."""
    c = color(name)
    ax.plot(x, median, marker=marker, ms=3.5, color=c, linestyle=linestyle, label=label or name)
    ax.fill_between(x, low, high, color=c, alpha=0.18, linewidth=0)


def plot_median_iqr(ax, x, samples, name: str, label: str | None = None, axis: int = 0, **kwargs) -> None:
    """Median line and 25-75 % band of `samples` along `axis` (NaNs ignored)."""
    q25, q50, q75 = np.nanpercentile(np.asarray(samples, dtype=float), [25, 50, 75], axis=axis)
    plot_band(ax, x, q50, q25, q75, name, label, **kwargs)


def heatmap(ax, x, y, z, title: str, cmap: str = "viridis", levels: int = 12, colorbar: bool = True):
    """A pcolormesh of z (len(y), len(x)) with contour lines on top."""
    mesh = ax.pcolormesh(x, y, z, cmap=cmap, shading="auto")
    ax.contour(x, y, z, levels=levels, colors="white", linewidths=0.5, alpha=0.6)
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.grid(False)
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax, fraction=0.046, pad=0.04)
    return mesh


def save(fig, path: Path) -> Path:
    """Save as PNG (dpi >= 150) and close the figure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    with naming(path):
        fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_training_curves(path: Path, panels: dict[str, dict[str, np.ndarray]], ylabel: str = "training loss") -> Path:
    """One panel per title in `panels`; in each, per name a (models, steps) array of per-step losses:
    thin lines per model (seed), a thick median, log scale when every value is positive."""
    fig, axes = new_figure(ncols=len(panels), width=4.6, height=3.6)
    for ax, (title, curves) in zip(axes[0], panels.items()):
        positive = True
        for name, curve in curves.items():
            curve = np.atleast_2d(np.asarray(curve, dtype=float))
            steps = np.arange(1, curve.shape[1] + 1)
            for row in curve:
                ax.plot(steps, row, color=color(name), lw=0.5, alpha=0.35)
            with np.errstate(all="ignore"), warnings.catch_warnings():  # a diverged model's NaNs
                warnings.simplefilter("ignore", RuntimeWarning)
                ax.plot(steps, np.nanmedian(curve, axis=0), color=color(name), lw=1.4, label=name)
            positive &= bool(np.nanmin(curve) > 0) if np.isfinite(curve).any() else False
        if positive:
            ax.set_yscale("log")
        ax.set_title(title), ax.set_xlabel("optimizer step"), ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    return save(fig, path)
