"""The figures of Experiment 2, drawn from the saved arrays (`results/exp2_arrays.npz`) and the sweep's
from `results/sweep.json`: `python run_experiment.py --plots-only` redraws every one."""

from __future__ import annotations

import numpy as np

from common import viz_utils


def _mark_minima(ax, axis, mask, label):
    iy, ix = np.nonzero(mask)
    ax.scatter(axis[ix], axis[iy], s=9, c="red", edgecolors="white", linewidths=0.4, label=label, zorder=3)


def plot_energy(path, a: dict, panels: list[tuple[str, np.ndarray, np.ndarray]]):
    """One heatmap per (title, energy (n, n), minima mask (n, n)) panel."""
    fig, axes = viz_utils.new_figure(ncols=len(panels), width=4.6, height=4.0)
    for ax, (title, E, mask) in zip(axes[0], panels):
        viz_utils.heatmap(ax, a["axis"], a["axis"], E, title, levels=15)
        _mark_minima(ax, a["axis"], mask, f"local minima ({int(mask.sum())})")
        ax.set_xlabel("x1"), ax.set_ylabel("x2")
        ax.legend(loc="upper right", fontsize=7)
    return viz_utils.save(fig, path)


def plot_basin(path, a: dict, title: str, success: np.ndarray, E: np.ndarray, path_xy: np.ndarray,
               polish_xy: np.ndarray, coverage: float):
    """Starts that reach the global basin (green) or not (red), landscape contours and descent paths
    (solid: descent on the landscape; dotted: the polish on E*)."""
    fig, axes = viz_utils.new_figure(width=5.2, height=4.8)
    ax = axes[0, 0]
    ax.pcolormesh(a["basin_axis"], a["basin_axis"], success.astype(float), cmap="RdYlGn", vmin=-0.3, vmax=1.3,
                  shading="auto")
    ax.contour(a["axis"], a["axis"], E, levels=15, colors="k", linewidths=0.4, alpha=0.5)
    for k in range(path_xy.shape[0]):
        ax.plot(path_xy[k, :, 0], path_xy[k, :, 1], "-", color="navy", lw=1.2)
        ax.plot(polish_xy[k, :, 0], polish_xy[k, :, 1], ":", color="navy", lw=1.2)
        ax.plot(path_xy[k, 0, 0], path_xy[k, 0, 1], "o", color="navy", ms=3)
        ax.plot(polish_xy[k, -1, 0], polish_xy[k, -1, 1], "x", color="k", ms=5)
    ax.plot([0], [0], "*", color="gold", ms=12, mec="k", label="global minimum x*")
    ax.set_aspect("equal"), ax.grid(False), ax.legend(loc="upper right", fontsize=7)
    ax.set_title(f"{title}: {100 * coverage:.1f} % of starts reach the global basin")
    ax.set_xlabel("x1"), ax.set_ylabel("x2")
    return viz_utils.save(fig, path)


def make_plots(a: dict, plot_dir) -> list:
    """The five seed-named figures (first reported seed) and the training curves (every seed)."""
    sigma = float(a["sigma"])
    names = list(a["names"])
    v = {n: i for i, n in enumerate(names)}
    other = [n for n in names if n.startswith("helm_")][0]
    s = 0
    out = [plot_energy(plot_dir / "exp2_true_energy.png", a, [
        ("true energy E*", a["E_true"], a["minima_true"]),
        (f"exact mollified E*_sigma (sigma={sigma:g})", a["E_mollified"], a["minima_mollified"])])]
    out.append(plot_energy(plot_dir / "exp2_flat_energy.png", a, [
        (f"Flat model (seed {a['seeds'][s]})", a["E_models"][s, v["flat"]], a["minima_models"][s, v["flat"]]),
        ("Flat - E*", a["E_models"][s, v["flat"]] - a["E_true"], np.zeros_like(a["minima_true"]))]))
    out.append(plot_energy(plot_dir / "exp2_helm_energy.png", a, [
        (f"HELM model (seed {a['seeds'][s]})", a["E_models"][s, v["helm"]], a["minima_models"][s, v["helm"]]),
        (f"ablation: {other}", a["E_models"][s, v[other]], a["minima_models"][s, v[other]])]))
    for name, label in (("flat", "Flat"), ("helm", "HELM")):
        i = v[name]
        out.append(plot_basin(plot_dir / f"exp2_{name}_basin.png", a, label, a["success_models"][s, i],
                              a["E_models"][s, i], a["path_models"][s, i], a["polish_models"][s, i],
                              float(a["coverage_models"][s, i])))
    curves = {name: a["loss_curves"][:, i] for i, name in enumerate(names)}
    out.append(viz_utils.plot_training_curves(plot_dir / "exp2_training_curves.png", {
        "energy models (loss / energy scale^2)": curves}))
    return out


def plot_sweep(sweep: dict, path):
    """Coverage (left) and fit error to E* (right) vs sigma, per HF form and lambda."""
    fig, axes = viz_utils.new_figure(ncols=2, width=5.2, height=4.0)
    ax_cov, ax_fit = axes[0]
    rows = sweep["rows"]
    flat = [r for r in rows if r["form"] == "flat"][0]
    series = [("mollified_target", None, "helm", "HELM mollified_target", "-")]
    lams = sorted({r["lambda_hf"] for r in rows if r["form"] == "consistency"})
    series += [("consistency", lam, "helm_consistency", f"HELM consistency, lambda={lam:g}", ls)
               for lam, ls in zip(lams, ["--", "-.", ":", (0, (1, 3))] * 3)]
    for form, lam, color_name, label, ls in series:
        sel = sorted((r for r in rows if r["form"] == form and (lam is None or r["lambda_hf"] == lam)),
                     key=lambda r: r["sigma"])
        sig = [r["sigma"] for r in sel]
        cov = [100 * r["coverage"] if r["coverage"] is not None else float("nan") for r in sel]
        ax_cov.plot(sig, cov, marker="o", ms=3.5, ls=ls, color=viz_utils.color(color_name), label=label)
        ax_fit.plot(sig, [r["rmse_to_true_over_A"] for r in sel], marker="o", ms=3.5, ls=ls,
                    color=viz_utils.color(color_name), label=label)
    ex = sweep["exact_mollified"]
    ax_cov.plot([e["sigma"] for e in ex], [100 * e["coverage"] for e in ex], marker="s", ms=3.5,
                color=viz_utils.color("mollified"), label="exact mollified E*_sigma")
    for ax, value, unit in ((ax_cov, 100 * (flat["coverage"] or float("nan")), "coverage"),
                            (ax_fit, flat["rmse_to_true_over_A"], "fit")):
        ax.axhline(value, color=viz_utils.color("flat"), lw=1, label="Flat")
    ax_cov.axhline(100 * sweep["true_coverage"], color=viz_utils.color("true"), lw=1, ls=":", label="true E*")
    ax_fit.axhline(1.0, color="grey", lw=0.8, ls=":", label="RMSE = A")
    for ax in (ax_cov, ax_fit):
        ax.set_xscale("log"), ax.set_xlabel("hf_noise_sigma")
    ax_cov.set_ylabel("basin coverage (% of starts)"), ax_fit.set_ylabel("RMSE to E* / A")
    ax_fit.set_yscale("log")
    ax_cov.set_title(f"coverage (tuning seed {sweep['tuning_seed']})"), ax_fit.set_title("fit error to E*")
    ax_cov.legend(fontsize=6.5), ax_fit.legend(fontsize=6.5)
    return viz_utils.save(fig, path)
