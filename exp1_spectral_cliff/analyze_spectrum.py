"""Measurements of Experiment 1 (exact rollout Jacobians, growth rates, RMSE, planning), their
summary and criteria, and the plots, all rebuilt from one saved array file.

Array layout (saved to results/exp1_arrays.npz, one group per name in true/flat/spectral/hf/helm):
  log_action, log_state (S, B, H): log ||ds_T/da_{0:T-1}||_F, log ||ds_T/ds_0||_F per seed, test
      state and horizon T in cfg.horizons (NaN for a diverged seed);
  rmse_1step, rmse_10step (S, H): test RMSE (normalized units) of the model used at horizon T;
  plan_iters (S, P, B): Adam iterations to reach the target (budget = unsolved), T in planning_horizons;
  diverged (S,) bool;
  loss_curves (S, M, train_steps): per-step training loss of each seed's M models (M = 1 in the
      short protocol, one per horizon in the per-horizon one); not present for `true`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from common import viz_utils
from common.jacobian_utils import rollout_log_norms
from common.runs import criterion, torch_generator, write_npz
from exp1_spectral_cliff.models import EnsembleStepModel, rollout

NAMES = ("true", "flat", "spectral", "hf", "helm")


# ----------------------------------------------------------------------------------------------
# inputs


def eval_inputs(cfg, data, seed: int, horizon: int):
    """Test initial states on the attractor and random actions. -> s0 (B, 3), actions (B, T, 3)."""
    gen = torch_generator(seed, "exp1-eval-actions")
    s0 = data.test_states[:cfg.num_eval_states, 0]
    actions = 2 * torch.rand(cfg.num_eval_states, horizon, 3, generator=gen) - 1
    return s0, actions


# ----------------------------------------------------------------------------------------------
# measurements


def true_log_norms(cfg, datasets: dict) -> dict:
    """The true system's log-norms at cfg.horizons, (S, B, H) each, in float64."""
    cols = np.asarray(cfg.horizons) - 1
    out = {"log_action": [], "log_state": []}
    for seed in cfg.seeds:
        s0, actions = eval_inputs(cfg, datasets[seed], seed, max(cfg.horizons))
        res = rollout_log_norms(datasets[seed].true_step, s0.double(), actions.double())
        for key in out:
            out[key].append(res[key][:, cols].numpy())
    return {k: np.stack(v) for k, v in out.items()}


def model_log_norms(cfg, model: EnsembleStepModel, datasets: dict, seeds: list[int], horizon: int):
    """Log-norms of an ensemble (one member per seed) for horizons 1..horizon. -> 2 x (E, B, horizon)."""
    inputs = [eval_inputs(cfg, datasets[s], s, max(cfg.horizons)) for s in seeds]
    s0 = torch.cat([i[0] for i in inputs]).to(model.device)
    actions = torch.cat([i[1][:, :horizon] for i in inputs]).to(model.device)
    res = rollout_log_norms(model.flat_step, s0, actions)
    E = len(seeds)
    return (res["log_action"].reshape(E, -1, horizon).cpu().numpy(),
            res["log_state"].reshape(E, -1, horizon).cpu().numpy())


@torch.no_grad()
def model_rmse(model: EnsembleStepModel, datasets: dict, seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """1-step (teacher-forced, every test transition) and 10-step open-loop RMSE per member. -> 2 x (E,)."""
    states = torch.stack([datasets[s].test_states for s in seeds]).to(model.device)  # (E, N, L+1, 3)
    actions = torch.stack([datasets[s].test_actions for s in seeds]).to(model.device)
    E, N, L = actions.shape[:3]
    pred = model(states[:, :, :-1].reshape(E, -1, 3), actions.reshape(E, -1, 3))
    rmse1 = (pred - states[:, :, 1:].reshape(E, -1, 3)).pow(2).mean(dim=(1, 2)).sqrt()
    starts = torch.arange(0, L - 9, 10, device=model.device)
    s0 = states[:, :, starts].reshape(E, -1, 3)
    windows = actions[:, :, starts[:, None] + torch.arange(10)].reshape(E, -1, 10, 3)
    final = rollout(model, s0, windows)[:, :, -1]
    rmse10 = (final - states[:, :, starts + 10].reshape(E, -1, 3)).pow(2).mean(dim=(1, 2)).sqrt()
    return rmse1.cpu().numpy(), rmse10.cpu().numpy()


def planning_iterations(cfg, model: EnsembleStepModel, datasets: dict, seeds: list[int], horizon: int) -> np.ndarray:
    """Adam on the action sequence to reach the model's own state after random actions.

    Batched over seeds x test states; actions start at 0 and stay in [-1, 1] (projected). Returns
    (E, B) iterations until ||s_T - target|| < cfg.planning_tolerance (0 = solved at the start),
    cfg.planning_max_iters when never solved.
    """
    E, B = len(seeds), cfg.num_eval_states
    device = model.device
    s0 = torch.stack([datasets[s].test_states[:B, 0] for s in seeds]).to(device)
    gens = [torch_generator(s, "exp1-plan-targets", horizon) for s in seeds]
    target_actions = torch.stack([2 * torch.rand(B, horizon, 3, generator=g) - 1 for g in gens]).to(device)
    with torch.no_grad():
        target = rollout(model, s0, target_actions)[:, :, -1]
    actions = torch.zeros(E, B, horizon, 3, device=device, requires_grad=True)
    opt = torch.optim.Adam([actions], lr=cfg.planning_lr)
    solved_at = torch.full((E, B), cfg.planning_max_iters, device=device)
    for it in range(cfg.planning_max_iters):
        s = s0
        for t in range(horizon):
            s = model(s, actions[:, :, t])
        err = (s - target).norm(dim=-1)
        newly = (err.detach() < cfg.planning_tolerance) & (solved_at == cfg.planning_max_iters)
        solved_at = torch.where(newly, torch.full_like(solved_at, it), solved_at)
        if it % 10 == 9 and bool((solved_at < cfg.planning_max_iters).all()):
            break
        opt.zero_grad(set_to_none=True)
        # sum over examples: each example's actions get exactly their own gradient (Adam is elementwise)
        err.pow(2).sum().backward()
        opt.step()
        with torch.no_grad():
            actions.clamp_(-1.0, 1.0)
    return solved_at.cpu().numpy().astype(float)


def analyze_variant(cfg, models_by_horizon: dict, seeds: list[int], datasets: dict) -> dict:
    """All measurements of one variant. models_by_horizon: T -> ensemble over `seeds` (the same
    object for every T in the short protocol; the model trained for T in the per-horizon one).
    Seeds absent from `seeds` (diverged) get NaN rows. Returns arrays in the module's layout."""
    S, B, H, P = len(cfg.seeds), cfg.num_eval_states, len(cfg.horizons), len(cfg.planning_horizons)
    out = {"log_action": np.full((S, B, H), np.nan), "log_state": np.full((S, B, H), np.nan),
           "rmse_1step": np.full((S, H), np.nan), "rmse_10step": np.full((S, H), np.nan),
           "plan_iters": np.full((S, P, B), np.nan),
           "diverged": np.array([s not in seeds for s in cfg.seeds])}
    if not seeds:
        return out
    rows = [cfg.seeds.index(s) for s in seeds]
    groups: dict[int, list[int]] = {}  # model id -> indices of the horizons it serves
    for h, T in enumerate(cfg.horizons):
        groups.setdefault(id(models_by_horizon[T]), []).append(h)
    for hs in groups.values():
        model = models_by_horizon[cfg.horizons[hs[0]]]
        t_max = max(cfg.horizons[h] for h in hs)
        log_a, log_s = model_log_norms(cfg, model, datasets, seeds, t_max)
        rmse1, rmse10 = model_rmse(model, datasets, seeds)
        for h in hs:
            T = cfg.horizons[h]
            out["log_action"][rows, :, h], out["log_state"][rows, :, h] = log_a[:, :, T - 1], log_s[:, :, T - 1]
            out["rmse_1step"][rows, h], out["rmse_10step"][rows, h] = rmse1, rmse10
    for p, T in enumerate(cfg.planning_horizons):
        model = models_by_horizon.get(T)
        if model is not None:  # per-horizon protocol: only horizons that have a model
            out["plan_iters"][rows, p] = planning_iterations(cfg, model, datasets, seeds, T)
    return out


# ----------------------------------------------------------------------------------------------
# saved arrays


def save_arrays(path: Path, cfg, arrays: dict) -> None:
    flat = {f"{name}/{k}": v for name, group in arrays.items() for k, v in group.items()}
    write_npz(path, {"horizons": np.asarray(cfg.horizons), "planning_horizons": np.asarray(cfg.planning_horizons),
                     **flat})


def load_arrays(path: Path) -> dict:
    data = np.load(path)
    arrays: dict[str, dict] = {}
    for key in data.files:
        if "/" in key:
            name, k = key.split("/", 1)
            arrays.setdefault(name, {})[k] = data[key]
    return arrays


# ----------------------------------------------------------------------------------------------
# summary and criteria


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
    rates, RMSEs and planning results."""
    summary = {}
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
            entry["planning"] = {
                str(T): {**_with_seeds(a["plan_iters"][:, p]),
                         "solved_fraction": _solved_fraction(a["plan_iters"][:, p], cfg.planning_max_iters)}
                for p, T in enumerate(cfg.planning_horizons)}
        summary[name] = entry
    return summary


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


def make_criteria(cfg, summary: dict) -> list:
    """The seed's success criteria, on the primary Jacobian ||ds_T/da_{0:T-1}||_F."""
    rate_true = _get(summary, "true", "growth_rate_action", "median")
    rate_flat = _get(summary, "flat", "growth_rate_action", "median")
    helm_100 = _get(summary, "helm", "norm_action", "100", "median")
    flat_200, helm_200 = (_get(summary, n, "norm_action", "200", "median") for n in ("flat", "helm"))

    def log_growth(name):  # increase of the (median) log-norm from T = 50 to T = 200
        lo, hi = (_get(summary, name, "norm_action", T, "median") for T in ("50", "200"))
        return None if lo is None or hi is None else float(np.log(hi) - np.log(lo))

    plan = [_get(summary, "helm", "planning", str(T), "median") for T in cfg.planning_horizons if T <= 100]
    plan_worst = None if not plan or any(p is None for p in plan) else max(plan)
    return [
        criterion("Flat growth rate / true growth rate (per unit time)", "within 15 % of 1",
                  _ratio(rate_flat, rate_true), lambda m: abs(m - 1) <= 0.15),
        criterion("HELM ||ds_T/da||_F at T=100 (median)", "< 20", helm_100, lambda m: m < 20),
        criterion("HELM log-growth T=50->200 / Flat's", "< 0.10", _ratio(log_growth("helm"), log_growth("flat")),
                  lambda m: m < 0.10),
        criterion("Flat / HELM ||ds_T/da||_F at T=200", ">= 20", _ratio(flat_200, helm_200), lambda m: m >= 20),
        criterion("HELM planning iterations (median), worst T<=100", "< 60", plan_worst, lambda m: m < 60),
    ]


def accuracy_cost(summary: dict) -> dict:
    """HELM's accuracy relative to Flat (reported beside the criteria, not a pass/fail row)."""
    return {key: {"helm": _get(summary, "helm", key, "median"), "flat": _get(summary, "flat", key, "median"),
                  "helm_over_flat": _ratio(_get(summary, "helm", key, "median"), _get(summary, "flat", key, "median"))}
            for key in ("rmse_1step", "rmse_10step")}


def norm_table(cfg, summary: dict, label: str = "norm_action") -> str:
    """Markdown table: median [q25, q75] of a rollout Jacobian norm per T (rows) and name (columns)."""
    names = [n for n in NAMES if n in summary]
    fmt = lambda x: "n/a" if x is None else f"{x:.3g}"
    lines = ["| T | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for T in cfg.horizons:
        cells = [summary[n][label][str(T)] for n in names]
        cells = [f"{fmt(c['median'])} [{fmt(c['q25'])}, {fmt(c['q75'])}]" for c in cells]
        lines.append(f"| {T} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# plots


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
    """Planning: iterations to reach the target (median + IQR) and solved fraction vs T."""
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
    axes[0, 1].set_ylim(-0.03, 1.03)
    for ax in axes[0]:
        ax.set_xlabel("planning horizon T")
        ax.legend()
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
                plot_training_curves(cfg, arrays, plot_dir / "exp1_training_curves.png")]
