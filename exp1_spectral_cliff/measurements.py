"""Every measurement of one variant, and of the true system, in the layout of `arrays.py`."""

from __future__ import annotations

import numpy as np
import torch

from exp1_spectral_cliff.dataset import stacked_true_step
from exp1_spectral_cliff.diagnosis import diagnose, empty_diagnosis, put_diagnosis
from exp1_spectral_cliff.evaluation import control, floors, open_loop, planning_iterations, true_error
from exp1_spectral_cliff.quality import model_rmse
from exp1_spectral_cliff.spectrum import model_log_norms, true_log_norms
from exp1_spectral_cliff.tasks import make_tasks


def measure_variant(cfg, models_by_horizon: dict, seeds: list[int], datasets: dict) -> dict:
    """All measurements of one variant. models_by_horizon: T -> ensemble over `seeds` (the same
    object for every T in the short protocol; the model trained for T in the per-horizon one).
    Seeds absent from `seeds` (diverged) get NaN rows. Returns arrays in the module's layout."""
    S, B, H, P = len(cfg.seeds), cfg.num_eval_states, len(cfg.horizons), len(cfg.planning_horizons)
    out = {"log_action": np.full((S, B, H), np.nan), "log_state": np.full((S, B, H), np.nan),
           "rmse_1step": np.full((S, H), np.nan), "rmse_10step": np.full((S, H), np.nan),
           "plan_iters": np.full((S, P, B), np.nan), **empty_control(cfg),
           "diverged": np.array([s not in seeds for s in cfg.seeds]), **(empty_diagnosis(cfg) if cfg.diagnose else {})}
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
            tasks = make_tasks(cfg, datasets, seeds, T, model.device)
            put_control(out, rows, p, control(cfg, model, torch.float32, datasets, seeds, T, model.device, tasks))
            if cfg.diagnose:
                put_diagnosis(out, rows, p, diagnose(cfg, model, torch.float32, tasks, seeds))
    return out


def measure_true(cfg, datasets: dict, device) -> dict:
    """The true system: its rollout log-norms, the planner on it (the ceiling) and the floors; with
    planning_grad_clip or planning_grad_window set, the ceiling open loop with bounded gradients
    (clipped_error_open, clipped_iters_open (S, P, B): the true_clipped row). --diagnose does not diagnose the
    true system: its prediction errors are 0 by construction, and its MPC sweep (re-planning every step
    through float64 RK4) would take longer than the whole run."""
    S, B, P = len(cfg.seeds), cfg.num_eval_states, len(cfg.planning_horizons)
    bounded = cfg.planning_grad_clip > 0 or cfg.planning_grad_window > 0
    out = {**true_log_norms(cfg, datasets), **empty_control(cfg), "floor_zero_error": np.full((S, P, B), np.nan),
           "floor_random_error": np.full((S, P, B), np.nan), "diverged": np.zeros(S, bool),
           **({k: np.full((S, P, B), np.nan) for k in ("clipped_error_open", "clipped_iters_open")} if bounded else {})}
    rows, step = list(range(S)), stacked_true_step([datasets[s] for s in cfg.seeds])
    for p, T in enumerate(cfg.planning_horizons):
        tasks = make_tasks(cfg, datasets, cfg.seeds, T, device)
        put_control(out, rows, p, control(cfg, step, torch.float64, datasets, cfg.seeds, T, device, tasks))
        floor = floors(cfg, datasets, cfg.seeds, T, device, tasks)
        out["floor_zero_error"][:, p], out["floor_random_error"][:, p] = floor["zero"], floor["random"]
        if bounded:
            plan, iters, _ = open_loop(cfg, step, torch.float64, tasks, clip=cfg.planning_grad_clip,
                                       window=cfg.planning_grad_window)
            out["clipped_error_open"][:, p] = true_error(tasks, plan).cpu().numpy()
            out["clipped_iters_open"][:, p] = iters.cpu().numpy()
    return out


def empty_control(cfg) -> dict:
    """NaN arrays of the true-system planning results: (S, P, B) per episode, (P,) seconds per batch."""
    S, B, P = len(cfg.seeds), cfg.num_eval_states, len(cfg.planning_horizons)
    return {f"control_{k}_{mode}": np.full((S, P, B) if k != "seconds" else (P,), np.nan)
            for k in ("error", "iters", "seconds") for mode in ("open", "closed")}


def put_control(out: dict, rows: list[int], p: int, result: dict) -> None:
    """Store one horizon's `evaluation.control` result (E seeds) in rows `rows`, column p."""
    for key, value in result.items():
        if key.startswith("seconds"):
            out[f"control_{key}"][p] = value
        else:
            out[f"control_{key}"][rows, p] = value
