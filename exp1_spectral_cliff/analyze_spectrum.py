"""Summary statistics, growth rates, the success criteria and the tables of Experiment 1, from the
saved arrays (`arrays.py`)."""

from __future__ import annotations

import numpy as np

from common import readme_tables
from common.runs import criterion
from exp1_spectral_cliff.arrays import NAMES
from exp1_spectral_cliff.tasks import solved


def _stats(samples) -> dict:
    """Median and IQR of the finite samples; None when there are none."""
    x = np.asarray(samples, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"median": None, "q25": None, "q75": None}
    q25, q50, q75 = np.percentile(x, [25, 50, 75])
    return {"median": q50, "q25": q25, "q75": q75}


def growth_rates(log_norms: np.ndarray, horizons, dt_model: float, min_horizon: int) -> np.ndarray:
    """Least-squares slope of log-norm vs time t = T dt_model over horizons >= min_horizon.

    log_norms (S, B, H) -> (S, B) per unit time (NaN when fewer than 2 horizons qualify)."""
    sel = np.asarray(horizons) >= min_horizon
    if sel.sum() < 2:
        return np.full(log_norms.shape[:2], np.nan)
    t = np.asarray(horizons)[sel] * dt_model
    y = log_norms[..., sel]
    tc = t - t.mean()
    return ((y - y.mean(axis=-1, keepdims=True)) * tc).sum(axis=-1) / (tc ** 2).sum()


def summarize(cfg, arrays: dict) -> dict:
    """Per name: norms per T (median/IQR pooled over seeds x states, per-seed medians), growth
    rates, RMSEs, the planning diagnostic on the model and planning in the true system."""
    summary = {}
    # each task's d0 (the zero-action floor's error), for a success rule relative to it
    d0 = arrays["true"]["floor_zero_error"] if "true" in arrays else None
    for name, a in arrays.items():
        entry = {"diverged_seeds": [s for s, d in zip(cfg.seeds, a["diverged"]) if d]}
        for key, label in (("log_action", "norm_action"), ("log_state", "norm_state")):
            norms = np.exp(a[key])
            entry[label] = {str(T): _with_seeds(norms[:, :, h]) for h, T in enumerate(cfg.horizons)}
            rates = growth_rates(a[key], cfg.horizons, cfg.dt_model, cfg.growth_fit_min_horizon)
            entry[f"growth_rate_{label[5:]}"] = _with_seeds(rates)
        if name != "true":
            for key in ("rmse_1step", "rmse_10step"):
                by_t = {str(T): list(a[key][:, h]) for h, T in enumerate(cfg.horizons)}
                entry[key] = {**_stats(a[key]), "by_horizon": by_t}
            entry["planning_on_model"] = {
                str(T): {**_with_seeds(a["plan_iters"][:, p]),
                         "solved_fraction": _solved_fraction(a["plan_iters"][:, p], cfg.planning_max_iters)}
                for p, T in enumerate(cfg.planning_horizons)}
        entry["control"] = {str(T): {f"{mode}_loop": _control_stats(cfg, a, p, mode, d0) for mode in ("open", "closed")}
                            for p, T in enumerate(cfg.planning_horizons)}
        if "diag_pred_error_plan" in a:  # --diagnose
            entry["diagnosis"] = {str(T): _diagnosis_stats(cfg, a, p, None if d0 is None else d0[:, p])
                                  for p, T in enumerate(cfg.planning_horizons)}
        if "clipped_error_open" in a:  # the ceiling with bounded gradients
            entry["control_clipped"] = {
                str(T): {"open_loop": {**_error_stats(cfg, a["clipped_error_open"][:, p], d0[:, p]),
                                       "iterations": _with_seeds(a["clipped_iters_open"][:, p])}}
                for p, T in enumerate(cfg.planning_horizons)}
        if name == "true":
            entry["floors"] = {str(T): {f"{kind}_actions": _error_stats(cfg, a[f"floor_{kind}_error"][:, p], d0[:, p])
                                        for kind in ("zero", "random")} for p, T in enumerate(cfg.planning_horizons)}
        summary[name] = entry
    return summary


def _error_stats(cfg, errors: np.ndarray, d0) -> dict:
    """True final errors (S, B) and the tasks' d0 (S, B; None without the true system's arrays):
    statistics, the solved fraction (`tasks.solved`) and error / d0 (1 = no closer than zero actions)."""
    finite = np.isfinite(errors)
    fraction = None
    if finite.any() and (d0 is not None or cfg.success_rule == "absolute"):
        fraction = float(solved(cfg, errors[finite], None if d0 is None else d0[finite]).mean())
    relative = {} if d0 is None else {"error_over_d0": _with_seeds(errors / d0)}
    return {"true_error": _with_seeds(errors), "solved_fraction": fraction, **relative}


def _control_stats(cfg, a: dict, p: int, mode: str, d0) -> dict:
    """One planner/mode/horizon of the true-system test: errors, solved fraction, iterations, wall time."""
    seconds = float(a[f"control_seconds_{mode}"][p])
    episodes = int(np.isfinite(a[f"control_error_{mode}"][:, p, 0]).sum()) * a[f"control_error_{mode}"].shape[2]
    return {**_error_stats(cfg, a[f"control_error_{mode}"][:, p], None if d0 is None else d0[:, p]),
            "iterations": _with_seeds(a[f"control_iters_{mode}"][:, p]),
            "plan_seconds": seconds, "plan_seconds_per_episode": seconds / episodes if episodes else None}


def _diagnosis_stats(cfg, a: dict, p: int, d0) -> dict:
    """One planner/horizon of `diagnosis.py`: prediction errors along the plan and along random actions, the
    plan to the model's optimum (model and true error), the closed loop per re-planning interval."""
    return {"pred_error_plan": _with_seeds(a["diag_pred_error_plan"][:, p]),
            "pred_error_random": _with_seeds(a["diag_pred_error_random"][:, p]),
            "optimum_model_error": _with_seeds(a["diag_optimum_model_error"][:, p]),
            "optimum": _error_stats(cfg, a["diag_optimum_error"][:, p], d0),
            "mpc": {str(k): _error_stats(cfg, a["diag_mpc_error"][:, p, m], d0)
                    for m, k in enumerate(cfg.diagnose_mpc_intervals)}}


def _with_seeds(x: np.ndarray) -> dict:
    """_stats pooled over (S, ...) plus the median of each seed's row."""
    return {**_stats(x), "per_seed_median": [_stats(row)["median"] for row in x]}


def _solved_fraction(iters: np.ndarray, budget: int):
    x = iters[np.isfinite(iters)]
    return float((x < budget).mean()) if x.size else None


def _get(summary, name, *keys):
    """Nested lookup that returns None when anything is missing."""
    node = summary.get(name)
    for k in keys:
        if not isinstance(node, dict) or node.get(k) is None:
            return None
        node = node[k]
    return node


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def criteria(cfg, summary: dict) -> list:
    """The seed's success criteria, on the primary Jacobian ||ds_T/da_{0:T-1}||_F."""
    rate_true = _get(summary, "true", "growth_rate_action", "median")
    rate_flat = _get(summary, "flat", "growth_rate_action", "median")
    helm_100 = _get(summary, "helm", "norm_action", "100", "median")
    flat_200, helm_200 = (_get(summary, n, "norm_action", "200", "median") for n in ("flat", "helm"))

    def log_growth(name):  # increase of the (median) log-norm from T = 50 to T = 200
        lo, hi = (_get(summary, name, "norm_action", T, "median") for T in ("50", "200"))
        return None if lo is None or hi is None else float(np.log(hi) - np.log(lo))

    plan = [_get(summary, "helm", "planning_on_model", str(T), "median") for T in cfg.planning_horizons if T <= 100]
    plan_worst = None if not plan or any(p is None for p in plan) else max(plan)
    saturation = _ratio(log_growth("helm"), log_growth("flat"))
    return [
        criterion("Flat growth rate / true growth rate (per unit time)", "within 15 % of 1",
                  _ratio(rate_flat, rate_true), lambda m: abs(m - 1) <= 0.15),
        criterion("HELM ||ds_T/da||_F at T=100 (median)", "< 20", helm_100, lambda m: m < 20),
        criterion("HELM log-growth T=50->200 / Flat's", "< 0.10", saturation, lambda m: m < 0.10),
        criterion("Flat / HELM ||ds_T/da||_F at T=200", ">= 20", _ratio(flat_200, helm_200), lambda m: m >= 20),
        criterion("diagnostic (convergence on the model): HELM iterations to its own model's targets, worst T<=100",
                  "< 60", plan_worst, lambda m: m < 60),
        criterion("tasks need control: zero- and random-action floors' solved fraction, worst T", "<= 5 %",
                  _worst_floor(cfg, summary), lambda m: m <= 0.05),
        criterion("tasks are solvable: the planner on the true system, closed loop, solved fraction, worst T",
                  ">= 85 %", _worst_ceiling(cfg, summary), lambda m: m >= 0.85),
        criterion("no learned model worse than zero actions: median true error / d0, worst model, T and loop",
                  "< 1", _worst_relative_error(cfg, summary), lambda m: m < 1),
        criterion("true system, closed loop: HELM solved fraction minus Flat's, worst T>=50", ">= 0",
                  _worst_gap(cfg, summary, "helm", "flat", 50), lambda m: m >= 0),
        criterion("HELM 1-step RMSE / Flat's, with the log-growth ratio < 0.10", "<= 3 (and ratio < 0.10)",
                  _ratio(_get(summary, "helm", "rmse_1step", "median"), _get(summary, "flat", "rmse_1step", "median")),
                  lambda m: m <= 3 and saturation is not None and saturation < 0.10),
    ]


def _worst_gap(cfg, summary: dict, a: str, b: str, min_horizon: int, mode: str = "closed_loop"):
    """min over planning horizons T >= min_horizon of (a's - b's) solved fraction in the true system."""
    gaps = [_diff(_get(summary, a, "control", str(T), mode, "solved_fraction"),
                            _get(summary, b, "control", str(T), mode, "solved_fraction"))
            for T in cfg.planning_horizons if T >= min_horizon]
    return _every(gaps, min)


def _every(cells: list, reduce):
    """reduce(cells) when every cell was measured, else None (the criterion then FAILs)."""
    return None if not cells or any(c is None for c in cells) else reduce(cells)


def _worst_floor(cfg, summary: dict):
    """max over planning horizons and both floors (zero, random actions) of the solved fraction."""
    cells = [_get(summary, "true", "floors", str(T), f"{kind}_actions", "solved_fraction")
             for T in cfg.planning_horizons for kind in ("zero", "random")]
    return _every(cells, max)


def _worst_ceiling(cfg, summary: dict):
    """min over planning horizons of the true-system planner's closed-loop solved fraction."""
    cells = [_get(summary, "true", "control", str(T), "closed_loop", "solved_fraction") for T in cfg.planning_horizons]
    return _every(cells, min)


def _worst_relative_error(cfg, summary: dict):
    """max over learned models, planning horizons and open/closed loop of the median true error / d0."""
    cells = [_get(summary, name, "control", str(T), f"{mode}_loop", "error_over_d0", "median")
             for name in cfg.variants for T in cfg.planning_horizons for mode in ("open", "closed")]
    return _every(cells, max)


def _diff(x, y):
    return None if x is None or y is None else x - y


def accuracy_cost(summary: dict) -> dict:
    """HELM's accuracy relative to Flat (reported beside the criteria, not a pass/fail row)."""
    return {key: {"helm": _get(summary, "helm", key, "median"), "flat": _get(summary, "flat", key, "median"),
                  "helm_over_flat": _ratio(_get(summary, "helm", key, "median"), _get(summary, "flat", key, "median"))}
            for key in ("rmse_1step", "rmse_10step")}


def norm_table(cfg, summary: dict, label: str = "norm_action") -> str:
    """Markdown table: median [q25, q75] of a rollout Jacobian norm per T (rows) and name (columns); the same
    formatter writes the README's table (`common.readme_tables`)."""
    return readme_tables.norm_table({n: summary[n] for n in NAMES if n in summary}, cfg.horizons, label)


def control_table(cfg, summary: dict) -> str:
    """Markdown table of planning in the true system (`common.readme_tables.control_table`, which also writes
    the README's table)."""
    return readme_tables.control_table({n: summary[n] for n in NAMES if n in summary}, cfg.planning_horizons)


def diagnosis_table(cfg, summary: dict) -> str:
    """Markdown table of `diagnosis.py` per T and model (`common.readme_tables.diagnosis_table`)."""
    return readme_tables.diagnosis_table({n: summary[n] for n in NAMES if n in summary}, cfg.planning_horizons,
                                         cfg.diagnose_mpc_intervals)


def format_tables(cfg, metrics: dict) -> str:
    """The tables a run prints: both rollout Jacobian norms, planning in the true system, HELM's accuracy cost."""
    summary = metrics["variants"]
    lines = [f"\n{label} (median [q25, q75] over seeds x test states)\n" + norm_table(cfg, summary, label)
             for label in ("norm_action", "norm_state")]
    lines.append("\nplanning in the true system (ceiling: the planner on the true system; floors: zero / random "
                 "actions)\n" + control_table(cfg, summary))
    if any("diagnosis" in v for v in summary.values()):
        lines.append("\ndiagnosis (--diagnose): why plans fail in the true system (errors: median, normalized units)\n"
                     + diagnosis_table(cfg, summary))
    lines += [f"accuracy cost: HELM {key} / Flat = {v['helm_over_flat']} (HELM {v['helm']}, Flat {v['flat']})"
              for key, v in metrics["accuracy_cost"].items()]
    return "\n".join(lines)
