"""Aggregation (episodes pooled over seeds, Wilson intervals, paired differences), success criteria and
tables of Experiment 3 (the figures are `plots.py`'s)."""

from __future__ import annotations

import numpy as np

from common.runs import criterion
from exp3_planning_efficiency.paired import paired_difference

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


def best_flat(entry: dict, T: str) -> str | None:
    """The flat planner with the highest success at this point (chosen after the fact: HELM's hardest rival)."""
    rivals = [p for p in FLAT_PLANNERS if T in entry["success"].get(p, {})]
    return max(rivals, key=lambda p: entry["success"][p][T]["success"]) if rivals else None
