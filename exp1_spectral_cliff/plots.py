"""The figures of Experiment 1, drawn from the saved arrays (`arrays.py`), and the trade-off figure of
the tuning-seed sweep (`sweep_lambda.py`), drawn from its rows."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from common import viz_utils
from exp1_spectral_cliff import tasks
from exp1_spectral_cliff.arrays import NAMES

SWEEP_FAMILIES = {"spectral": "per-step hinge", "ftle": "FTLE (gradient flossing)", "kstep": "k-step hinge"}
"""The regularizer families of the accuracy/stability sweep (`sweep_lambda.FAMILIES`), as the figure names them."""


def plot_spectral_cliff(cfg, arrays: dict, path: Path) -> Path:
    """Median + IQR of both rollout Jacobian norms vs T, every variant and the true system."""
    fig, axes = viz_utils.new_figure(ncols=2, width=5.5, height=4.2)
    for ax, key, title in zip(axes[0], ("log_action", "log_state"),
                              (r"$\|\partial s_T / \partial a_{0:T-1}\|_F$ (planner's gradient)",
                               r"$\|\partial s_T / \partial s_0\|_F$")):
        for name in NAMES:
            if name in arrays:
                samples = np.exp(arrays[name][key]).reshape(-1, len(cfg.horizons))
                viz_utils.plot_median_iqr(ax, cfg.horizons, samples, name,
                                          linestyle="--" if name == "true" else "-")
        ax.set_yscale("log")
        ax.set_xlabel("rollout horizon T (model steps)")
        ax.set_title(title)
        ax.legend()
    fig.suptitle(f"Exp 1: rollout Jacobian norms, median and IQR over {len(cfg.seeds)} seeds x "
                 f"{cfg.num_eval_states} test states ({cfg.train_protocol} protocol)", fontsize=10)
    return viz_utils.save(fig, path)


def plot_convergence(cfg, arrays: dict, path: Path) -> Path:
    """Diagnostic, optimization convergence on the model: iterations to reach the model's own target
    (median + IQR) and solved fraction vs T."""
    fig, axes = viz_utils.new_figure(ncols=2, width=5.0, height=4.0)
    for name in NAMES[1:]:
        if name not in arrays:
            continue
        iters = arrays[name]["plan_iters"]  # (S, P, B)
        pooled = iters.transpose(1, 0, 2).reshape(len(cfg.planning_horizons), -1)
        viz_utils.plot_median_iqr(axes[0, 0], cfg.planning_horizons, pooled, name, axis=1)
        solved = [np.nan if not np.isfinite(row).any() else (row[np.isfinite(row)] < cfg.planning_max_iters).mean()
                  for row in pooled]
        axes[0, 1].plot(cfg.planning_horizons, solved, marker="o", color=viz_utils.color(name), label=name)
    axes[0, 0].axhline(cfg.planning_max_iters, color="grey", lw=0.8, ls=":")
    axes[0, 0].set_title(f"Adam iterations to reach target (budget {cfg.planning_max_iters})")
    axes[0, 1].set_title(f"solved fraction (||s_T - target|| < {cfg.planning_tolerance})")
    fig.suptitle("Diagnostic: optimization convergence on the model (targets the same model reaches)", fontsize=10)
    axes[0, 1].set_ylim(-0.03, 1.03)
    for ax in axes[0]:
        ax.set_xlabel("planning horizon T")
        ax.legend()
    return viz_utils.save(fig, path)


def plot_true_system_planning(cfg, arrays: dict, path: Path) -> Path:
    """Planning in the true system: solved fraction and median true final error vs T, open loop (dashed)
    and closed loop (solid) per planner's model, the planner on the true system (ceiling; with bounded
    gradients, dash-dot, when planning_grad_clip / planning_grad_window is set) and the floors."""
    fig, axes = viz_utils.new_figure(ncols=2, width=5.5, height=4.0)
    T = cfg.planning_horizons
    d0 = arrays["true"]["floor_zero_error"]  # (S, P, B): each task's zero-action distance

    def solved(e):
        ok = np.isfinite(e)
        return [np.nan if not ok[:, p].any() else tasks.solved(cfg, e[:, p][ok[:, p]], d0[:, p][ok[:, p]]).mean()
                for p in range(len(T))]
    def median(e):
        return np.nanmedian(e.transpose(1, 0, 2).reshape(len(T), -1), axis=1)
    for name in NAMES:
        if name not in arrays:
            continue
        for mode, ls in (("open", "--"), ("closed", "-")):
            e = arrays[name][f"control_error_{mode}"]
            label = f"{'true system (ceiling)' if name == 'true' else name}, {mode} loop"
            axes[0, 0].plot(T, solved(e), ls=ls, marker="o", color=viz_utils.color(name), label=label)
            axes[0, 1].plot(T, median(e), ls=ls, marker="o", color=viz_utils.color(name), label=label)
    if "clipped_error_open" in arrays["true"]:  # the ceiling with bounded gradients (open loop only)
        e = arrays["true"]["clipped_error_open"]
        label = (f"true system, bounded gradient (clip {cfg.planning_grad_clip:g}, window {cfg.planning_grad_window}), "
                 "open loop")
        axes[0, 0].plot(T, solved(e), ls="-.", marker="s", color=viz_utils.color("true"), label=label)
        axes[0, 1].plot(T, median(e), ls="-.", marker="s", color=viz_utils.color("true"), label=label)
    for kind, marker in (("zero", "x"), ("random", "+")):
        e = arrays["true"][f"floor_{kind}_error"]
        axes[0, 0].plot(T, solved(e), ls=":", marker=marker, color="grey", label=f"{kind} actions (floor)")
        axes[0, 1].plot(T, median(e), ls=":", marker=marker, color="grey", label=f"{kind} actions (floor)")
    axes[0, 0].set_title(f"solved in the true system ({tasks.success_label(cfg)})")
    axes[0, 0].set_ylim(-0.03, 1.03)
    if cfg.success_rule == "absolute":
        axes[0, 1].axhline(cfg.planning_tolerance, color="grey", lw=0.8, ls="-.")
    axes[0, 1].set_yscale("log")
    axes[0, 1].set_title("true final error ||s_T - target|| (median)")
    for ax in axes[0]:
        ax.set_xlabel("planning horizon T")
    axes[0, 1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"Exp 1: plans made with each model, executed in the true system (closed loop: re-plan every "
                 f"{cfg.mpc_interval} steps)", fontsize=10)
    return viz_utils.save(fig, path)


def plot_training_curves(cfg, arrays: dict, path: Path) -> Path:
    """Per-step training loss (MSE + the variant's penalties) of every variant and seed; in the
    per-horizon protocol, of the model trained for the longest T."""
    curves = {name: a["loss_curves"][:, -1] for name, a in arrays.items() if "loss_curves" in a}
    return viz_utils.plot_training_curves(path, {f"world models ({cfg.train_protocol} protocol)": curves})


def make_plots(cfg, arrays: dict, plot_dir: Path) -> list[Path]:
    with warnings.catch_warnings():  # a diverged variant is all-NaN: plotted as a gap, no warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return [plot_spectral_cliff(cfg, arrays, plot_dir / "exp1_spectral_cliff.png"),
                plot_convergence(cfg, arrays, plot_dir / "exp1_convergence_rate.png"),
                plot_true_system_planning(cfg, arrays, plot_dir / "exp1_true_system_planning.png"),
                plot_training_curves(cfg, arrays, plot_dir / "exp1_training_curves.png")]


def plot_tradeoff(rows: list[dict], chosen: int | None, path):
    """1-step RMSE against ||ds/da||_F(T=100) and against the T=50->200 growth ratio, one line per family."""
    fig, axes = viz_utils.new_figure(ncols=2, width=5.0, height=4.2)
    flat = rows[0]
    for ax, key, label in ((axes[0, 0], "norm_T100", r"$\|\partial s_T/\partial a\|_F$ at T=100 (median)"),
                           (axes[0, 1], "growth_ratio", "log-growth T=50->200 / Flat's")):
        if key not in flat:
            continue
        for family, name in SWEEP_FAMILIES.items():
            fam = [r for r in rows if r["family"] == family]
            x, y = [r["rmse_1step"] for r in fam], [r[key] for r in fam]
            ax.plot(x, y, marker="o", color=viz_utils.color({"spectral": "helm"}.get(family, family)), label=name)
            for r in fam:
                ax.annotate(f"{r['lambda']:g}", (r["rmse_1step"], r[key]), fontsize=6, xytext=(3, 3),
                            textcoords="offset points")
        ax.plot([flat["rmse_1step"]], [flat[key]], marker="s", color=viz_utils.color("flat"), ls="", label="Flat")
        if chosen is not None:
            ax.plot([rows[chosen]["rmse_1step"]], [rows[chosen][key]], marker="*", ms=14, color="gold", ls="",
                    markeredgecolor="k", label="chosen default")
        ax.axvline(3 * flat["rmse_1step"], color="grey", ls=":", lw=1, label="3x Flat's 1-step RMSE")
        ax.axhline(20 if key == "norm_T100" else 0.10, color="grey", ls="--", lw=1, label="target")
        ax.set_xscale("log")
        ax.set_xlabel("1-step test RMSE (normalized, tuning seed)")
        ax.set_ylabel(label)
        if key == "norm_T100":
            ax.set_yscale("log")
        ax.legend(fontsize=6)
    fig.suptitle("Exp 1 frontier: accuracy vs bounded rollout Jacobians per regularizer family (labels: strength; "
                 "all with HF)", fontsize=9)
    return viz_utils.save(fig, path)


def plot_saved_sweep(saved: dict, plot_dir) -> None:
    """The trade-off figure redrawn from a saved sweep.json (of `sweep_lambda.py`) into `plot_dir`."""
    rows = saved["members"]
    chosen = next((i for i, r in enumerate(rows) if saved["chosen"] and r["family"] == saved["chosen"]["family"]
                   and r["lambda"] == saved["chosen"]["lambda"]), None)
    plot_tradeoff(rows, chosen, plot_dir / "exp1_tradeoff.png")
