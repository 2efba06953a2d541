"""Every measurement of one variant, in the layout of `arrays.py`."""

from __future__ import annotations

import numpy as np

from exp1_spectral_cliff.evaluation import planning_iterations
from exp1_spectral_cliff.quality import model_rmse
from exp1_spectral_cliff.spectrum import model_log_norms


def measure_variant(cfg, models_by_horizon: dict, seeds: list[int], datasets: dict) -> dict:
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
