"""Exact rollout Jacobians of the learned models and of the true system, on the test inputs.

Both measure `log ||ds_T/da_{0:T-1}||_F` and `log ||ds_T/ds_0||_F` (`common.jacobian_utils`) from
the same test initial states and random actions per seed (`eval_inputs`).
"""

from __future__ import annotations

import numpy as np
import torch

from common.jacobian_utils import rollout_log_norms
from common.runs import torch_generator
from exp1_spectral_cliff.models import EnsembleStepModel


def eval_inputs(cfg, data, seed: int, horizon: int):
    """Test initial states on the attractor and random actions. -> s0 (B, 3), actions (B, T, 3)."""
    gen = torch_generator(seed, "exp1-eval-actions")
    s0 = data.test_states[:cfg.num_eval_states, 0]
    actions = 2 * torch.rand(cfg.num_eval_states, horizon, 3, generator=gen) - 1
    return s0, actions


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
