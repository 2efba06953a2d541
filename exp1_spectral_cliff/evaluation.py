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
    plan, iters, seconds_open = open_loop(cfg, plan_step, dtype, tasks)
    error_open = true_error(tasks, plan)
    s, replan_iters, replan_seconds = closed_loop(cfg, plan_step, dtype, tasks, plan, cfg.mpc_interval)

    def to_np(x):
        return x.detach().cpu().numpy().astype(float)
    return {"error_open": to_np(error_open), "error_closed": to_np((s - tasks.target).norm(dim=-1)),
            "iters_open": to_np(iters), "iters_closed": to_np(iters + replan_iters),
            "seconds_open": seconds_open, "seconds_closed": seconds_open + replan_seconds}


def open_loop(cfg, plan_step, dtype: torch.dtype, tasks: Tasks, tolerance: float | None = None, clip: float = 0.0,
              window: int = 0) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The planner on `plan_step` from the tasks' s0 to their targets, actions starting at 0, planning_max_iters
    iterations, stopping at `tolerance` (default cfg.control_tolerance; 0: never, the lowest error is kept),
    with bounded gradients when clip / window > 0 (`planner.plan_actions`).
    -> plan (E, B, T, 3) in `dtype`, (E, B) iterations, planning wall time of the batch (s)."""
    s0 = tasks.s0
    E, B, T = tasks.actions.shape[:3]
    start = time.perf_counter()
    plan, iters = plan_actions(plan_step, s0.to(dtype), tasks.target.to(dtype),
                               torch.zeros(E, B, T, 3, device=s0.device, dtype=dtype), cfg.planning_max_iters,
                               cfg.planning_lr, cfg.control_tolerance if tolerance is None else tolerance, clip,
                               window)
    synchronize(s0.device)
    return plan, iters, time.perf_counter() - start


def true_error(tasks: Tasks, plan: torch.Tensor) -> torch.Tensor:
    """(E, B) true final ||s_T - target|| of a plan (E, B, T, 3) executed open loop."""
    return (execute(tasks.true_step, tasks.s0, plan) - tasks.target).norm(dim=-1)


def closed_loop(cfg, plan_step, dtype: torch.dtype, tasks: Tasks, plan: torch.Tensor, interval: int):
    """MPC from the open-loop plan (E, B, T, 3): execute `interval` steps in the true system, re-plan the
    remaining steps from the true state (warm-started from the rest of the plan, cfg.mpc_iters iterations),
    and so on to T. -> final true state (E, B, 3), (E, B) iterations of the re-plans, their wall time (s)."""
    s, goal, horizon = tasks.s0, tasks.target.to(dtype), plan.shape[2]
    iters, seconds = 0, 0.0
    for t0 in range(0, horizon, interval):
        if t0 > 0:  # re-plan the remaining steps from the true state
            start = time.perf_counter()
            plan, it = plan_actions(plan_step, s.to(dtype), goal, plan, cfg.mpc_iters, cfg.planning_lr,
                                    cfg.control_tolerance)
            synchronize(s.device)
            seconds += time.perf_counter() - start
            iters = iters + it
        k = min(interval, horizon - t0)
        s, plan = execute(tasks.true_step, s, plan[:, :, :k]), plan[:, :, k:]
    return s, iters, seconds


def floors(cfg, datasets: dict, seeds: list[int], horizon: int, device, tasks: Tasks | None = None) -> dict:
    """True final error (E, B) of zero actions (= the tasks' d0) and of fresh random actions of the task
    kind's proposal (`tasks.floor_actions`) on the `control` tasks."""
    tasks = tasks if tasks is not None else make_tasks(cfg, datasets, seeds, horizon, device)
    rand = execute(tasks.true_step, tasks.s0, floor_actions(cfg, seeds, horizon, device))
    return {"zero": tasks.d0.cpu().numpy(), "random": (rand - tasks.target).norm(dim=-1).cpu().numpy()}
