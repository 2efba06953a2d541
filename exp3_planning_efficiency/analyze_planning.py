"""Aggregation, success criteria and plots of Experiment 3 (plots rebuild from metrics.json and the
saved loss curves, `results/exp3_arrays.npz`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common import viz_utils as viz
from common.runs import criterion, read_json


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def aggregate(per_seed: dict, cfg) -> dict:
    """Pool episodes over seeds: per planner and horizon, success with CI, cost, per-seed rates."""
    table = {}
    for planner in cfg.planners:
        table[planner] = {}
        for T in cfg.planning_horizons:
            runs = [per_seed[s]["evaluation"][planner][str(T)] for s in cfg.seeds if not per_seed[s]["diverged"]]
            if not runs:
                table[planner][str(T)] = {"success": None}
                continue
            success = np.concatenate([r["success"] for r in runs]).astype(bool)
            low, high = wilson_interval(int(success.sum()), len(success))
            table[planner][str(T)] = {
                "success": float(success.mean()), "ci95": [low, high], "episodes": int(len(success)),
                "success_per_seed": [float(np.mean(r["success"])) for r in runs],
                "model_evals_per_episode": float(np.mean(np.concatenate([r["model_evals"] for r in runs]))),
                "seconds_per_episode": float(np.mean([r["plan_seconds_per_episode"] for r in runs])),
                "steps_to_goal_mean": float(np.mean(np.concatenate([r["steps"] for r in runs])[success]))
                if success.any() else None,
            }
    return table


def _get(table, planner, T, key="success"):
    return table.get(planner, {}).get(str(T), {}).get(key)


def criteria(table: dict, cfg) -> list:
    """The seed's success criteria, computed from the pooled table (missing data FAILs)."""
    long_T = [T for T in cfg.planning_horizons if T > 30]
    flat_long = [_get(table, "flat", T) for T in long_T]
    gaps = [_get(table, "cem", T) - _get(table, "helm", T) for T in cfg.planning_horizons
            if _get(table, "cem", T) is not None and _get(table, "helm", T) is not None]
    ratios = [_get(table, "helm", T, "model_evals_per_episode") / _get(table, "cem", T, "model_evals_per_episode")
              for T in cfg.planning_horizons if _get(table, "cem", T, "model_evals_per_episode")
              and _get(table, "helm", T, "model_evals_per_episode") is not None]
    return [
        criterion("HELM success at T=50", "> 0.50", _get(table, "helm", 50), lambda m: m > 0.5),
        criterion("HELM success at T=80", "> 0.30", _get(table, "helm", 80), lambda m: m > 0.3),
        criterion("flat GD success, max over T > 30", "< 0.10", max(flat_long) if flat_long and None not in flat_long
                  else None, lambda m: m < 0.1),
        criterion("CEM minus HELM success, max over T", "<= 0.10", max(gaps) if gaps else None, lambda m: m <= 0.1),
        criterion("HELM / CEM model evaluations, max over T", "< 1", max(ratios) if ratios else None, lambda m: m < 1),
    ]


PLANNER_LABELS = {"flat": "flat GD", "helm": "HELM (coarse-to-fine)", "cem": "CEM", "random": "random (floor)",
                  "bfs": "BFS on true env (ceiling)"}


def plot_all(metrics_path: Path, arrays: dict, plot_dir: Path) -> list[Path]:
    """Rebuild every Experiment 3 figure from a metrics.json and the loss curves
    (`arrays`: "<model|energy>_loss_seed<s>" -> (steps,))."""
    metrics = read_json(metrics_path)
    curves = {kind: {f"seed {k.rsplit('seed', 1)[1]}": v for k, v in arrays.items() if k.startswith(kind)}
              for kind in ("model_loss", "energy_loss")}
    return [plot_success(metrics, plot_dir / "exp3_success_vs_horizon.png"),
            plot_cost(metrics, plot_dir / "exp3_planning_cost.png"),
            plot_world_model(metrics, plot_dir / "exp3_world_model.png"),
            viz.plot_training_curves(plot_dir / "exp3_training_curves.png", {
                "world model (prediction + spectral hinge)": curves["model_loss"],
                "goal energy (distance regression)": curves["energy_loss"]})]


def plot_success(metrics: dict, path: Path) -> Path:
    fig, axes = viz.new_figure(width=6, height=4.2)
    ax = axes[0, 0]
    for planner, rows in metrics["success"].items():
        Ts = [int(T) for T, r in rows.items() if r["success"] is not None]
        if not Ts:
            continue
        rate = [rows[str(T)]["success"] for T in Ts]
        low = [rows[str(T)]["ci95"][0] for T in Ts]
        high = [rows[str(T)]["ci95"][1] for T in Ts]
        viz.plot_band(ax, Ts, rate, low, high, planner, PLANNER_LABELS.get(planner, planner),
                      linestyle="--" if planner in ("random", "bfs") else "-")
    ax.set(xlabel="horizon T (BFS distance in (T/2, T])", ylabel="success rate", ylim=(-0.02, 1.02),
           title="Planning success vs horizon (95 % Wilson CI, episodes x seeds)")
    _legend(ax)
    return viz.save(fig, path)


def plot_cost(metrics: dict, path: Path) -> Path:
    fig, axes = viz.new_figure(ncols=2, width=5, height=4)
    for planner, rows in metrics["success"].items():
        if planner in ("random", "bfs"):
            continue
        Ts = [int(T) for T, r in rows.items() if r["success"] is not None]
        label = PLANNER_LABELS.get(planner, planner)
        axes[0, 0].plot(Ts, [rows[str(T)]["model_evals_per_episode"] for T in Ts], "o-", color=viz.color(planner), label=label)
        axes[0, 1].plot(Ts, [rows[str(T)]["seconds_per_episode"] for T in Ts], "o-", color=viz.color(planner), label=label)
    axes[0, 0].set(yscale="log", xlabel="horizon T", ylabel="model evaluations per episode", title="Planning cost")
    axes[0, 1].set(yscale="log", xlabel="horizon T", ylabel="planning seconds per episode (batched)",
                   title="Wall time")
    _legend(axes[0, 0])
    return viz.save(fig, path)


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:  # nothing to label when every seed diverged
        ax.legend(loc="best")


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def plot_world_model(metrics: dict, path: Path) -> Path:
    fig, axes = viz.new_figure(ncols=2, width=5, height=4)
    for seed, quality in metrics["world_model"].items():
        if quality.get("diverged"):
            continue
        acc = quality["k_step_accuracy"]
        ks = sorted(int(k) for k in acc if k != "coarse")
        axes[0, 0].plot(ks, [acc[str(k)] for k in ks], "o-", label=f"seed {seed} (coarse step: {_fmt(acc['coarse'])})")
        axes[0, 1].scatter(quality["energy"]["pairs_bfs"], quality["energy"]["pairs_energy"], s=4, alpha=0.4,
                           label=f"seed {seed}: Spearman {_fmt(quality['energy']['spearman'])}")
    axes[0, 0].set(xscale="log", xlabel="predicted steps k", ylabel="exact-pose accuracy", ylim=(0, 1.02),
                   title="World model: k-step prediction")
    axes[0, 1].set(xlabel="BFS distance to goal cell", ylabel="goal energy", title="Goal energy vs true distance")
    for ax in axes[0]:
        _legend(ax)
    return viz.save(fig, path)
