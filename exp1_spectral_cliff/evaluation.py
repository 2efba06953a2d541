"""Planning evaluations: the gradient planner (`planner.py`) through each model.

- `planning_iterations`, the diagnostic "optimization convergence on the model": targets are the
  same model's states after random actions, so they are reachable by construction.
- `control`, what counts: targets the TRUE system reaches from the start state (`tasks.py`: under
  random actions, or under persistent actions far from the zero-action endpoint); a plan made with a
  model (or with the true system: the ceiling) is executed in the true system open loop, and closed
  loop (MPC: every `mpc_interval` steps re-plan the remaining steps from the true state, warm-started
  from the rest of the previous plan, `mpc_iters` Adam iterations).
  `floors`: the same targets under zero and under fresh random actions.
Success of an episode is `tasks.solved`.
All batched over seeds x test states; the true system runs in float64.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from common.runs import synchronize, torch_generator
from exp1_spectral_cliff.models import EnsembleStepModel, rollout
from exp1_spectral_cliff.planner import plan_actions
from exp1_spectral_cliff.tasks import Tasks, execute, floor_actions, make_tasks


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
    _, solved_at = plan_actions(model, s0, target, torch.zeros(E, B, horizon, 3, device=device),
                                cfg.planning_max_iters, cfg.planning_lr, cfg.planning_tolerance)
    return solved_at.cpu().numpy().astype(float)


def control(cfg, plan_step, dtype: torch.dtype, datasets: dict, seeds: list[int], horizon: int, device,
            tasks: Tasks | None = None) -> dict:
    """Plan with `plan_step` (a model, or the true system), execute in the true system.

    The tasks are `tasks.make_tasks(cfg, ...)` unless given (the planner only sees s0 and the target).
    Returns {"error_open", "error_closed"} true final ||s_T - target|| (E, B), {"iters_open",
    "iters_closed"} (E, B) Adam iterations until the plan met cfg.control_tolerance on `plan_step`
    (closed: summed over the re-plans), {"seconds_open", "seconds_closed"}: planning wall time of the batch.
    """
    tasks = tasks if tasks is not None else make_tasks(cfg, datasets, seeds, horizon, device)
    true_step, s0, target = tasks.true_step, tasks.s0, tasks.target
    E, B = s0.shape[:2]
    goal = target.to(dtype)
    start = time.perf_counter()
    plan, iters = plan_actions(plan_step, s0.to(dtype), goal, torch.zeros(E, B, horizon, 3, device=device, dtype=dtype),
                               cfg.planning_max_iters, cfg.planning_lr, cfg.control_tolerance)
    synchronize(device)
    seconds_open = time.perf_counter() - start
    error_open = (execute(true_step, s0, plan) - target).norm(dim=-1)
    s, iters_closed, seconds_closed = s0, iters.clone(), seconds_open
    for t0 in range(0, horizon, cfg.mpc_interval):
        if t0 > 0:  # re-plan the remaining steps from the true state
            start = time.perf_counter()
            plan, it = plan_actions(plan_step, s.to(dtype), goal, plan, cfg.mpc_iters, cfg.planning_lr,
                                    cfg.control_tolerance)
            synchronize(device)
            seconds_closed += time.perf_counter() - start
            iters_closed += it
        k = min(cfg.mpc_interval, horizon - t0)
        s, plan = execute(true_step, s, plan[:, :, :k]), plan[:, :, k:]
    def to_np(x):
        return x.detach().cpu().numpy().astype(float)
    return {"error_open": to_np(error_open), "error_closed": to_np((s - target).norm(dim=-1)),
            "iters_open": to_np(iters), "iters_closed": to_np(iters_closed),
            "seconds_open": seconds_open, "seconds_closed": seconds_closed}


def floors(cfg, datasets: dict, seeds: list[int], horizon: int, device, tasks: Tasks | None = None) -> dict:
    """True final error (E, B) of zero actions (= the tasks' d0) and of fresh random actions of the task
    kind's proposal (`tasks.floor_actions`) on the `control` tasks."""
    tasks = tasks if tasks is not None else make_tasks(cfg, datasets, seeds, horizon, device)
    rand = execute(tasks.true_step, tasks.s0, floor_actions(cfg, seeds, horizon, device))
    return {"zero": tasks.d0.cpu().numpy(), "random": (rand - tasks.target).norm(dim=-1).cpu().numpy()}
