"""The figures of Experiment 3, rebuilt from metrics.json and the saved loss curves
(`results/exp3_arrays.npz`), and the sweeps' from their saved json (`--plots-only` redraws every one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.ticker import NullFormatter

from common import viz_utils as viz
from common.runs import read_json
from exp3_planning_efficiency.analyze_planning import best_flat
from exp3_planning_efficiency.planners import PLANNERS


def planner_label(planner: str) -> str:
    """A planner's name in the figures (`planners.PLANNERS`; a name it does not declare, as it is)."""
    return PLANNERS[planner].label if planner in PLANNERS else planner


def make_plots(metrics_path: Path, arrays: dict, plot_dir: Path) -> list[Path]:
    """Rebuild every Experiment 3 figure from a metrics.json and the loss curves
    (`arrays`: "<variant>_loss_<source>_seed<s>" -> (steps,); the episode outcomes are not drawn)."""
    metrics = read_json(metrics_path)
    curves: dict = {}
    for key, curve in arrays.items():
        if "_loss_" not in key:
            continue
        variant, rest = key.split("_loss_")
        curves.setdefault(variant, {})[rest] = curve
    titles = {"spectral": "world model, HELM (prediction + spectral hinge)",
              "no_spectral": "world model without spectral",
              "hf": "goal energy, HELM (HF on)", "no_hf": "goal energy without HF"}
    return [plot_success(metrics, plot_dir / "exp3_success_vs_horizon.png"),
            plot_pareto(metrics, plot_dir / "exp3_pareto.png"),
            plot_models(metrics, plot_dir / "exp3_world_model.png"),
            viz.plot_training_curves(plot_dir / "exp3_training_curves.png",
                                     {titles.get(k, k): v for k, v in curves.items()})]


TRACK_ORDER = ("unseen-layouts", "fourrooms", "limited-data")


def _tracks(metrics: dict) -> list[str]:
    """Tracks in reading order: unseen layouts, FourRooms, then limited data by number of walks."""
    def key(t):
        return (TRACK_ORDER.index(t.rsplit("-", 1)[0] if t.startswith("limited") else t),
                int(t.rsplit("-", 1)[1]) if t.startswith("limited") else 0)
    return sorted(metrics["tracks"], key=key)


def add_legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=7)


def _fullest(axes) -> object:
    """The panel with the most labelled lines (where the legend goes)."""
    return max(axes, key=lambda ax: len(ax.get_legend_handles_labels()[0]))


def plot_success(metrics: dict, path: Path) -> Path:
    tracks = _tracks(metrics)
    fig, axes = viz.new_figure(ncols=max(1, len(tracks)), width=4.6, height=4)
    for ax, track in zip(axes[0], tracks):
        for planner, rows in metrics["tracks"][track]["success"].items():
            Ts = [int(T) for T in rows]
            viz.plot_band(ax, Ts, [rows[str(T)]["success"] for T in Ts], [rows[str(T)]["ci95"][0] for T in Ts],
                          [rows[str(T)]["ci95"][1] for T in Ts], planner, planner_label(planner),
                          linestyle="--" if planner in ("random", "bfs") else "-")
        ax.set(xlabel="horizon T (BFS distance in (T/2, T])", ylabel="success rate", ylim=(-0.02, 1.02), title=track)
    add_legend(_fullest(axes[0]))
    fig.suptitle("Planning success vs horizon (95 % Wilson CI over episodes x seeds)")
    return viz.save(fig, path)


def plot_pareto(metrics: dict, path: Path) -> Path:
    """Success vs model evaluations (top row) and vs planning seconds (bottom row) per episode."""
    panels = [(track, T) for track in _tracks(metrics)
              for T in sorted({T for rows in metrics["tracks"][track]["pareto"].values() for T in rows}, key=int)]
    fig, axes = viz.new_figure(nrows=2, ncols=max(1, len(panels)), width=4.6, height=4)
    for column, (track, T) in enumerate(panels):
        for row, (key, label) in enumerate((("model_evals_per_episode", "model evaluations per episode"),
                                            ("seconds_per_episode", "planning seconds per episode"))):
            ax = axes[row, column]
            for planner, per_T in metrics["tracks"][track]["pareto"].items():
                rows = sorted(per_T.get(T, []), key=lambda r: r[key])
                ax.plot([r[key] for r in rows], [r["success"] for r in rows], "o-", color=viz.color(planner),
                        label=planner_label(planner))
            ax.set(xscale="log", xlabel=label, ylabel="success rate", ylim=(-0.02, 1.02), title=f"{track}, T = {T}")
            ax.xaxis.set_minor_formatter(NullFormatter())
    add_legend(_fullest(axes[0]))
    fig.suptitle("Success vs planning compute (each planner at several budgets)")
    return viz.save(fig, path)


def plot_models(metrics: dict, path: Path) -> Path:
    fig, axes = viz.new_figure(ncols=2, width=5, height=4)
    for name, model in metrics["models"].items():
        quality = model["quality"]
        if "spectral" in quality:
            acc = quality["spectral"]["k_step_accuracy"]
            ks = sorted(int(k) for k in acc if k.isdigit())
            axes[0, 0].plot(ks, [acc[str(k)] for k in ks], "o-",
                            label=f"{name} (coarse step {acc['coarse']:.2f}, "
                                  f"members agree {acc['coarse_agreement']:.2f})")
        if "hf" in quality and name.startswith("layouts"):
            e = quality["hf"]
            axes[0, 1].scatter(e["pairs_bfs"], e["pairs_energy"], s=4, alpha=0.4,
                               label=f"{name}: Spearman {e['spearman']:.2f}")
    axes[0, 0].set(xscale="log", xlabel="predicted steps k", ylabel="exactly decoded observations", ylim=(0, 1.02),
                   title="World model on its evaluation layouts")
    axes[0, 1].set(xlabel="BFS distance to goal cell", ylabel="goal energy", title="Goal energy on unseen layouts")
    for ax in axes[0]:
        add_legend(ax)
    return viz.save(fig, path)


def plot_layout_sweep(saved: dict, path: Path) -> Path:
    """The layout-count sweep (`sweep_layouts.py`'s json): success vs number of training layouts at
    T = 50 and 80 per planner, and the networks' quality on the test layouts."""
    points, horizons = saved["points"], ("50", "80")
    ns = [p["num_train_layouts"] for p in points]
    fig, axes = viz.new_figure(ncols=len(horizons) + 1, width=4.4, height=3.8)
    for ax, T in zip(axes[0], horizons):
        for planner in PLANNERS:  # in the declaration's order
            rows = [p["success"].get(planner, {}).get(T) for p in points]
            if None in rows:
                continue
            viz.plot_band(ax, ns, [r["success"] for r in rows], [r["ci95"][0] for r in rows],
                          [r["ci95"][1] for r in rows], planner, planner_label(planner),
                          linestyle="--" if planner == "bfs" else "-")
        ax.set(xscale="log", xlabel="training layouts", ylabel="success rate (unseen layouts)", ylim=(-0.02, 1.02),
               title=f"T = {T}")
    quality = axes[0, -1]
    for key, label in (("coarse_step_exact", "coarse step exact"), ("eight_steps_exact", "8 fine steps exact"),
                       ("energy_spearman", "energy Spearman vs BFS")):
        quality.plot(ns, [p["quality"][key] for p in points], "o-", label=label)
    quality.set(xscale="log", xlabel="training layouts", ylim=(0, 1.02), title="networks on the test layouts")
    for ax in axes[0]:
        add_legend(ax)
    fig.suptitle(f"Layout-count sweep (same total walks; seeds {saved['seeds']})")
    return viz.save(fig, path)


def plot_reach_map(saved: dict, plot_dir: Path) -> list[Path]:
    """reach_map.py's figures from its saved `reach_map.json` (also redrawn by run_experiment.py --plots-only)."""
    paths = [_plot_reach_success(saved, plot_dir / "exp3_reach_map.png")]
    if any("budgets" in entry for entry in saved["energies"].values()):
        paths.append(_plot_reach_budgets(saved, plot_dir / "exp3_reach_map_budgets.png"))
    return paths


def _plot_reach_success(saved: dict, path: Path) -> Path:
    """Success against the energy's reach per planner (top), HELM's paired gain over the best flat
    planner with its 95 % interval (bottom); one column per T."""
    table = saved["energies"]
    names = list(table)
    x = np.arange(len(names))
    fig, axes = viz.new_figure(len(saved["horizons"]), 2, width=5.5, height=3.6)
    for col, T in enumerate(map(str, saved["horizons"])):
        top, bottom = axes[0, col], axes[1, col]
        for planner in [p for p in PLANNERS if any(p in table[n]["success"] for n in names)]:
            rows = [table[n]["success"].get(planner, {}).get(T) for n in names]
            if all(r is None for r in rows):
                continue
            mean = [r["success"] if r else np.nan for r in rows]
            low = [min(r["success_per_seed"]) if r else np.nan for r in rows]
            high = [max(r["success_per_seed"]) if r else np.nan for r in rows]
            top.plot(x, mean, marker="o", color=viz.color(planner), label=planner_label(planner))
            top.fill_between(x, low, high, color=viz.color(planner), alpha=0.12)
        top.set(title=f"T = {T}: success (band: seed range)", ylim=(-0.03, 1.03), ylabel="success")
        gains = [table[n]["paired"].get(T, {}).get(best_flat(table[n], T) or "") for n in names]
        mean = np.array([g["difference"] if g else np.nan for g in gains])
        err = np.array([[g["difference"] - g["ci95"][0], g["ci95"][1] - g["difference"]] if g else [np.nan] * 2
                        for g in gains]).T
        bottom.errorbar(x, mean, yerr=err, fmt="o", capsize=4, color="black")
        bottom.axhline(0, color="grey", lw=0.8)
        bottom.set(title=f"T = {T}: HELM minus best flat planner (paired 95 % CI)", ylabel="difference",
                   ylim=(-1.03, 1.03), xticks=x, xticklabels=[n.replace("_", " ") for n in names])
    axes[0, 0].legend(fontsize=7, loc="upper left")
    return viz.save(fig, path)


def _plot_reach_budgets(saved: dict, path: Path) -> Path:
    """Success against planning seconds per episode, every planner at its three budgets (at the energy that has
    budgets)."""
    energy = next(name for name, entry in saved["energies"].items() if "budgets" in entry)
    entry = saved["energies"][energy]
    fig, axes = viz.new_figure(len(saved["horizons"]), 1, width=5.5, height=4.0)
    for ax, T in zip(axes[0], map(str, saved["horizons"])):
        for planner in entry["budgets"]:
            rows = [entry["success"][planner][T]] + [per_T[T] for per_T in entry["budgets"][planner].values()]
            rows.sort(key=lambda r: r["seconds_per_episode"])
            ax.plot([r["seconds_per_episode"] for r in rows], [r["success"] for r in rows], marker="o",
                    color=viz.color(planner), label=planner_label(planner))
        ax.set(xscale="log", title=f"{energy} energy, T = {T}: three budgets each", ylim=(-0.03, 1.03),
               xlabel="planning seconds per episode", ylabel="success")
        ax.xaxis.set_minor_formatter(NullFormatter())
    axes[0, 0].legend(fontsize=7, loc="upper left")
    return viz.save(fig, path)
