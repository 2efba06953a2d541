"""Aggregation, success criteria, tables and plots of Experiment 3 (plots rebuild from metrics.json
and the saved loss curves, `results/exp3_arrays.npz`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.ticker import NullFormatter

from common import viz_utils as viz
from common.runs import criterion, read_json
from exp3_planning_efficiency.paired import paired_difference

PLANNER_LABELS = {"helm": "HELM (coarse-to-fine, spectral, HF)", "helm_no_coarse": "HELM without coarse level",
                  "helm_no_spectral": "HELM without spectral", "helm_no_hf": "HELM without HF",
                  "cem": "CEM (PlaNet-style)", "flat": "flat GD (Gumbel-Softmax)",
                  "random": "random (floor)", "bfs": "BFS on the true layout (ceiling)",
                  "helm_exact_coarse": "HELM, exact coarse transitions (reference: reads the layout)"}
FLAT_PLANNERS = ("helm_no_coarse", "cem", "flat")  # plan fine actions only


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def _mean_of(runs: list[dict], key: str) -> float | None:
    """Mean of a per-episode count over seeds (None for runs saved before it was counted)."""
    return float(np.mean(np.concatenate([r[key] for r in runs]))) if all(key in r for r in runs) else None


def pool(runs: list[dict]) -> dict:
    """Pool one planner's episodes at one horizon over seeds: success with CI, cost, path length."""
    success = np.concatenate([r["success"] for r in runs]).astype(bool)
    steps = np.concatenate([r["steps"] for r in runs])
    optimal = np.concatenate([r["bfs_distance"] for r in runs])
    low, high = wilson_interval(int(success.sum()), len(success))
    return {"success": float(success.mean()), "ci95": [low, high], "episodes": int(len(success)),
            "success_per_seed": [float(np.mean(r["success"])) for r in runs],
            "model_evals_per_episode": float(np.mean(np.concatenate([r["model_evals"] for r in runs]))),
            "macs_per_episode": _mean_of(runs, "macs"), "sweep_ops_per_episode": _mean_of(runs, "sweep_ops"),
            "seconds_per_episode": float(np.mean([r["plan_seconds_per_episode"] for r in runs])),
            "path_length_over_optimal": float(np.mean(steps[success] / optimal[success])) if success.any() else None}


def summarize(units: dict, cfg) -> dict:
    """Per track, planner and horizon, episodes pooled over seeds; Pareto rows; model quality."""
    tracks: dict = {}
    for (seed, source), unit in sorted(units.items()):
        for track, result in unit["tracks"].items():
            entry = tracks.setdefault(track, {"horizons": result["horizons"], "runs": {}, "pareto_runs": {}})
            for planner, per_T in result["success"].items():
                for T, run in per_T.items():
                    entry["runs"].setdefault(planner, {}).setdefault(T, []).append(run)
            for planner, per_scale in result["pareto"].items():
                for scale, per_T in per_scale.items():
                    for T, run in per_T.items():
                        entry["pareto_runs"].setdefault(planner, {}).setdefault(T, {}).setdefault(scale, []).append(run)
    out = {}
    for track, entry in tracks.items():
        success = {p: {T: pool(runs) for T, runs in per_T.items()} for p, per_T in entry["runs"].items()}
        pareto = {}
        for planner, per_T in entry["pareto_runs"].items():
            for T, per_scale in per_T.items():
                rows = [{"scale": 1.0, **success[planner][T]}] + [{"scale": float(s), **pool(r)}
                                                                  for s, r in per_scale.items()]
                pareto.setdefault(planner, {})[T] = sorted(rows, key=lambda r: r["model_evals_per_episode"])
        out[track] = {"horizons": entry["horizons"], "success": success, "pareto": pareto,
                      "paired": paired_against_helm(episode_outcomes(entry["runs"]))}
    return {"tracks": out,
            "models": {f"{source}/seed{seed}": {"quality": u["quality"], "diverged": bool(u["diverged"]),
                                                "diverged_networks": u["diverged"],
                                                "training_seconds": u["training_seconds"]}
                       for (seed, source), u in sorted(units.items())}}


def episode_outcomes(runs: dict) -> dict:
    """planner -> T -> success per seed and task (seeds, tasks) bool (seeds in the units' order)."""
    return {p: {T: np.stack([np.asarray(r["success"], dtype=bool) for r in per_seed]) for T, per_seed in per_T.items()}
            for p, per_T in runs.items()}


def paired_against_helm(outcomes: dict) -> dict:
    """T -> flat planner -> HELM's success minus that planner's on the same tasks (`paired_difference`)."""
    if "helm" not in outcomes:
        return {}
    return {T: {p: paired_difference(helm, outcomes[p][T]) for p in FLAT_PLANNERS if T in outcomes.get(p, {})}
            for T, helm in outcomes["helm"].items()}


def outcome_arrays(metrics_units: dict) -> dict:
    """The per-episode outcomes as npz arrays "success_<track>_<planner>_T<T>" (seeds, tasks) uint8."""
    tracks: dict = {}
    for (seed, source), unit in sorted(metrics_units.items()):
        for track, result in unit["tracks"].items():
            for planner, per_T in result["success"].items():
                for T, run in per_T.items():
                    key = f"success_{track}_{planner}_T{T}"
                    tracks.setdefault(key, []).append(np.asarray(run["success"], np.uint8))
    return {key: np.stack(rows) for key, rows in tracks.items()}


def _get(metrics, track, planner, T, key="success"):
    return metrics["tracks"].get(track, {}).get("success", {}).get(planner, {}).get(str(T), {}).get(key)


def _gap(metrics, track, a, b, T):
    x, y = _get(metrics, track, a, T), _get(metrics, track, b, T)
    return None if x is None or y is None else x - y


def unmatched_margin(metrics, track: str, T: int, ratio: float = 3.0) -> float | None:
    """HELM's success minus the best success of any flat planner at any budget using at most `ratio` x
    HELM's model evaluations (> 0: no flat planner matches HELM within that budget)."""
    helm, helm_evals = _get(metrics, track, "helm", T), _get(metrics, track, "helm", T, "model_evals_per_episode")
    if helm is None:
        return None
    pareto = metrics["tracks"].get(track, {}).get("pareto", {})
    rows = [r for p in FLAT_PLANNERS for r in pareto.get(p, {}).get(str(T), [])
            if r["model_evals_per_episode"] <= ratio * helm_evals]
    return helm - max((r["success"] for r in rows), default=0.0)


def criteria(metrics: dict, cfg) -> list:
    """The issue's targets, computed from the pooled tables (missing data FAILs)."""
    u = "unseen-layouts"
    flat_long = [_get(metrics, u, "flat", T) for T in cfg.planning_horizons if T > 30]
    cem_gaps = [_gap(metrics, u, "cem", "helm", T) for T in cfg.planning_horizons]
    evals_ratio = [_get(metrics, u, "helm", T, "model_evals_per_episode") /
                   _get(metrics, u, "helm_no_coarse", T, "model_evals_per_episode") for T in (50, 80)
                   if _get(metrics, u, "helm_no_coarse", T, "model_evals_per_episode")]
    def both(values):
        return None if not values or None in values else values
    return [
        criterion("unseen layouts: HELM success at T=50", "> 0.70", _get(metrics, u, "helm", 50), lambda m: m > 0.7),
        criterion("unseen layouts: HELM success at T=80", "> 0.50", _get(metrics, u, "helm", 80), lambda m: m > 0.5),
        criterion("unseen layouts: HELM minus HELM-without-coarse at T=50", ">= 0.25",
                  _gap(metrics, u, "helm", "helm_no_coarse", 50), lambda m: m >= 0.25),
        criterion("unseen layouts: HELM minus HELM-without-coarse at T=80", ">= 0.25",
                  _gap(metrics, u, "helm", "helm_no_coarse", 80), lambda m: m >= 0.25),
        criterion("unseen layouts: HELM / HELM-without-coarse model evaluations, max over T=50, 80", "<= 1",
                  max(evals_ratio) if len(evals_ratio) == 2 else None, lambda m: m <= 1),
        criterion("unseen layouts: HELM minus best flat planner within 3x HELM's evaluations at T=50", "> 0",
                  unmatched_margin(metrics, u, 50), lambda m: m > 0),
        criterion("unseen layouts: flat GD success, max over T > 30", "< 0.10",
                  max(both(flat_long)) if both(flat_long) else None, lambda m: m < 0.1),
        criterion("unseen layouts: CEM minus HELM success, max over T", "<= 0.10",
                  max(both(cem_gaps)) if both(cem_gaps) else None, lambda m: m <= 0.1),
        criterion("limited data (100 walks): HELM success at T=50", ">= 0.50",
                  _get(metrics, "limited-data-100", "helm", 50), lambda m: m >= 0.5),
    ]


def format_tables(metrics: dict) -> str:
    """Success (pooled) | model evaluations per episode, per track."""
    lines = []
    for track, entry in metrics["tracks"].items():
        Ts = entry["horizons"]
        lines += [f"\n{track}: success rate (pooled over seeds) | model evaluations per episode",
                  "planner           " + "".join(f"T={T:<12}" for T in Ts)]
        for planner, rows in entry["success"].items():
            cells = [f"{rows[str(T)]['success']:.2f}|{rows[str(T)]['model_evals_per_episode']:<7.0f}" for T in Ts]
            lines.append(f"{planner:<18}" + "".join(c.ljust(14) for c in cells))
        for T, rows in entry.get("paired", {}).items():
            lines += [f"  T={T}: HELM minus {p} on the same {r['tasks']} tasks: {r['difference']:+.2f} "
                      f"[{r['ci95'][0]:+.2f}, {r['ci95'][1]:+.2f}] (McNemar p = {r['mcnemar_p']:.2g})"
                      for p, r in rows.items()]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# plots


def plot_all(metrics_path: Path, arrays: dict, plot_dir: Path) -> list[Path]:
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
                          [rows[str(T)]["ci95"][1] for T in Ts], planner, PLANNER_LABELS.get(planner, planner),
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
                        label=PLANNER_LABELS.get(planner, planner))
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
        for planner in PLANNER_LABELS:
            rows = [p["success"].get(planner, {}).get(T) for p in points]
            if None in rows:
                continue
            viz.plot_band(ax, ns, [r["success"] for r in rows], [r["ci95"][0] for r in rows],
                          [r["ci95"][1] for r in rows], planner, PLANNER_LABELS[planner],
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


def best_flat(entry: dict, T: str) -> str | None:
    """The flat planner with the highest success at this point (chosen after the fact: HELM's hardest rival)."""
    rivals = [p for p in FLAT_PLANNERS if T in entry["success"].get(p, {})]
    return max(rivals, key=lambda p: entry["success"][p][T]["success"]) if rivals else None


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
        for planner in [p for p in PLANNER_LABELS if any(p in table[n]["success"] for n in names)]:
            rows = [table[n]["success"].get(planner, {}).get(T) for n in names]
            if all(r is None for r in rows):
                continue
            mean = [r["success"] if r else np.nan for r in rows]
            low = [min(r["success_per_seed"]) if r else np.nan for r in rows]
            high = [max(r["success_per_seed"]) if r else np.nan for r in rows]
            top.plot(x, mean, marker="o", color=viz.color(planner), label=PLANNER_LABELS[planner])
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
                    color=viz.color(planner), label=PLANNER_LABELS[planner])
        ax.set(xscale="log", title=f"{energy} energy, T = {T}: three budgets each", ylim=(-0.03, 1.03),
               xlabel="planning seconds per episode", ylabel="success")
        ax.xaxis.set_minor_formatter(NullFormatter())
    axes[0, 0].legend(fontsize=7, loc="upper left")
    return viz.save(fig, path)
