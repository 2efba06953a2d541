"""Why plans made with a learned model fail in the true system (`--diagnose`, off by default), per
learned model and planning horizon, on the `evaluation.control` tasks:

- exploitation: the planner's own prediction error ||model end - true end|| along the open-loop plan it
  executes (planned as `evaluation.control` plans, stopping at control_tolerance) and along random
  actions from the same start states (a fresh draw of the far tasks' proposal: uniform actions held
  task_hold_steps steps, whatever the task kind). A plan error far above the random one means the
  planner seeks out where its model is wrong;
- optimum: the plan to the model's optimum (no early stop: all planning_max_iters iterations, the
  lowest model error kept): its error to the target on the model and its true error, open loop;
- MPC sweep: the closed loop's true error for each re-planning interval in diagnose_mpc_intervals
  (from the early-stop open-loop plan, as `evaluation.control`; the interval mpc_interval is its
  closed loop).
The planner on the true system is not diagnosed (`measurements.measure_true`).
Arrays (`arrays.py` layout, M = len(diagnose_mpc_intervals)): diag_pred_error_plan, diag_pred_error_random,
diag_optimum_model_error, diag_optimum_error (S, P, B); diag_mpc_error (S, P, M, B).
"""

from __future__ import annotations

import numpy as np
import torch

from exp1_spectral_cliff.evaluation import closed_loop, open_loop, true_error
from exp1_spectral_cliff.tasks import Tasks, execute, held_actions

KEYS = ("diag_pred_error_plan", "diag_pred_error_random", "diag_optimum_model_error", "diag_optimum_error")


@torch.no_grad()
def predict(plan_step, dtype: torch.dtype, s0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """The planner's own final state under actions (E, B, T, 3) from s0 (E, B, 3), in `dtype`."""
    s = s0.to(dtype)
    for t in range(actions.shape[2]):
        s = plan_step(s, actions[:, :, t].to(dtype))
    return s


def prediction_error(plan_step, dtype: torch.dtype, tasks: Tasks, actions: torch.Tensor) -> torch.Tensor:
    """(E, B) ||the planner's final state - the true one|| under actions (E, B, T, 3) (float64)."""
    predicted = predict(plan_step, dtype, tasks.s0, actions).double()
    return (predicted - execute(tasks.true_step, tasks.s0, actions.double())).norm(dim=-1)


def diagnose(cfg, plan_step, dtype: torch.dtype, tasks: Tasks, seeds: list[int]) -> dict:
    """The diagnosis of one planner on one horizon's tasks (E seeds x B states) -> {key: (E, B)},
    "diag_mpc_error": (E, M, B), numpy float."""
    E, B, T = tasks.actions.shape[:3]
    plan, _, _ = open_loop(cfg, plan_step, dtype, tasks)
    random = held_actions(seeds, "exp1-diagnosis-actions", B, 1, T, cfg.task_hold_steps, tasks.s0.device)[:, :, 0]
    optimum, _, _ = open_loop(cfg, plan_step, dtype, tasks, tolerance=0.0)
    optimum_model = (predict(plan_step, dtype, tasks.s0, optimum).double() - tasks.target).norm(dim=-1)
    mpc = [(closed_loop(cfg, plan_step, dtype, tasks, plan, k)[0] - tasks.target).norm(dim=-1)
           for k in cfg.diagnose_mpc_intervals]
    out = {"diag_pred_error_plan": prediction_error(plan_step, dtype, tasks, plan),
           "diag_pred_error_random": prediction_error(plan_step, dtype, tasks, random),
           "diag_optimum_model_error": optimum_model, "diag_optimum_error": true_error(tasks, optimum),
           "diag_mpc_error": torch.stack(mpc, dim=1)}
    return {k: v.detach().cpu().numpy().astype(float) for k, v in out.items()}


def empty_diagnosis(cfg) -> dict:
    """NaN arrays of the diagnosis: (S, P, B), diag_mpc_error (S, P, M, B)."""
    S, B, P, M = len(cfg.seeds), cfg.num_eval_states, len(cfg.planning_horizons), len(cfg.diagnose_mpc_intervals)
    return {**{k: np.full((S, P, B), np.nan) for k in KEYS}, "diag_mpc_error": np.full((S, P, M, B), np.nan)}


def put_diagnosis(out: dict, rows: list[int], p: int, result: dict) -> None:
    """Store one horizon's `diagnose` result (E seeds) in rows `rows`, column p."""
    for key, value in result.items():
        out[key][rows, p] = value
