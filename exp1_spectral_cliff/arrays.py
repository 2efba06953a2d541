"""The saved arrays of a run (results/exp1_arrays.npz): the plots and the summary are rebuilt from them.

Array layout (saved to results/exp1_arrays.npz, one group per name in NAMES: true and the variants run):
  log_action, log_state (S, B, H): log ||ds_T/da_{0:T-1}||_F, log ||ds_T/ds_0||_F per seed, test
      state and horizon T in cfg.horizons (NaN for a diverged seed);
  rmse_1step, rmse_10step (S, H): test RMSE (normalized units) of the model used at horizon T;
  plan_iters (S, P, B): diagnostic on the model: Adam iterations to reach the model's own target
      (budget = unsolved), T in planning_horizons;
  control_error_{open,closed} (S, P, B): true final error ||s_T - target|| of the plan executed in the
      true system, open loop / closed loop (for `true`: the planner on the true system, the ceiling);
  control_iters_{open,closed} (S, P, B): the planner's iterations (closed loop: summed over re-plans);
  control_seconds_{open,closed} (P,): planning wall time of the whole batch (seeds x states);
  floor_zero_error, floor_random_error (S, P, B), `true` only: true final error of zero / random actions;
  clipped_error_open, clipped_iters_open (S, P, B), `true` only, when planning_grad_clip or
      planning_grad_window is set: the planner on the true system, open loop, with bounded gradients;
  diag_* (--diagnose only): the diagnosis of why plans fail (`diagnosis.py`);
  diverged (S,) bool;
  loss_curves (S, M, train_steps): per-step training loss of each seed's M models (M = 1 in the
      short protocol, one per horizon in the per-horizon one); not present for `true`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.cli import read_npz
from common.runs import write_npz

NAMES = ("true", "flat", "flat_multistep", "spectral", "hf", "helm")


def save_arrays(path: Path, cfg, arrays: dict) -> None:
    flat = {f"{name}/{k}": v for name, group in arrays.items() for k, v in group.items()}
    write_npz(path, {"horizons": np.asarray(cfg.horizons), "planning_horizons": np.asarray(cfg.planning_horizons),
                     **flat})


def load_arrays(path: Path) -> dict:
    data = read_npz(path)
    arrays: dict[str, dict] = {}
    for key in data:
        if "/" in key:
            name, k = key.split("/", 1)
            arrays.setdefault(name, {})[k] = data[key]
    return arrays
