"""Tasks of the true-system planning test (`evaluation.control`) and their success rule.

A task is a start state s0 (a test state) and a target the TRUE system reaches from s0 under some
action sequence; planners and models only ever receive (s0, target). `cfg.task_kind`:
- "random" (stage two): the endpoint of i.i.d. uniform actions. With the weak forcing these targets
  lie close to the zero-action endpoint (at T = 10 zero actions solve half of them);
- "far": actions held constant for `task_hold_steps` steps (persistent forcing moves the state
  much more than i.i.d. actions, which average out), `task_draws` such sequences per start state,
  and the first whose endpoint's distance d0 to the zero-action endpoint is in
  [`task_min_distance`, `task_max_distance`] is kept (rejection sampling with a fixed draw budget;
  when none is, the draw nearest that band). The lower bound makes control necessary; the upper one
  keeps the target in the neighbourhood of the uncontrolled endpoint, the regime of a local
  (gradient) planner: beyond it targets sit on the other lobe, a global search.
Every draw comes from the seed's named stream, so the tasks are the same for every model.
`d0 = ||zero-action endpoint - target||` is the distance doing nothing leaves.

Success (`solved`): `cfg.success_rule` "absolute": true final error < `planning_tolerance`;
"relative": error < `success_ratio` * d0, so zero actions never succeed (their error is d0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from common.runs import torch_generator
from exp1_spectral_cliff.dataset import stacked_true_step


@torch.no_grad()
def execute(true_step, s0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Run actions (E, B, k, 3) in the true system from s0 (E, B, 3) float64 -> final state (E, B, 3)."""
    s = s0
    for t in range(actions.shape[2]):
        s = true_step(s, actions[:, :, t].to(s.dtype))
    return s


def random_actions(seeds: list[int], purpose: str, num: int, horizon: int, device) -> torch.Tensor:
    """Uniform actions in [-1, 1] from each seed's named stream. -> (E, num, horizon, 3) float64."""
    gens = [torch_generator(s, purpose, horizon) for s in seeds]
    return torch.stack([2 * torch.rand(num, horizon, 3, generator=g, dtype=torch.float64) - 1 for g in gens]).to(device)


def held_actions(seeds: list[int], purpose: str, num: int, draws: int, horizon: int, hold: int,
                 device) -> torch.Tensor:
    """Piecewise-constant uniform actions in [-1, 1], a new value every `hold` steps, from each seed's
    named stream. -> (E, num, draws, horizon, 3) float64; example b's draws do not depend on `num`."""
    segments = -(-horizon // hold)
    gens = [torch_generator(s, purpose, horizon, hold) for s in seeds]
    values = torch.stack([2 * torch.rand(num, draws, segments, 3, generator=g, dtype=torch.float64) - 1
                          for g in gens])
    return values.repeat_interleave(hold, dim=3)[:, :, :, :horizon].to(device)


@dataclass
class Tasks:
    """Tasks of one horizon for seeds x start states; everything float64 on one device."""

    true_step: Callable  # step(s (E, B, 3), a (E, B, 3)) -> (E, B, 3), each seed in its own normalization
    s0: torch.Tensor  # (E, B, 3)
    target: torch.Tensor  # (E, B, 3)
    actions: torch.Tensor  # (E, B, T, 3): the sequence that generated the target (reaches it in the true system)
    zero_end: torch.Tensor  # (E, B, 3): the true state after T zero actions

    @property
    def d0(self) -> torch.Tensor:
        """(E, B) distance from the zero-action endpoint to the target."""
        return (self.zero_end - self.target).norm(dim=-1)


def make_tasks(cfg, datasets: dict, seeds: list[int], horizon: int, device) -> Tasks:
    """The `cfg.task_kind` tasks of horizon T from the first `num_eval_states` test states of each seed."""
    true_step = stacked_true_step([datasets[s] for s in seeds])
    B = cfg.num_eval_states
    s0 = torch.stack([datasets[s].test_states[:B, 0] for s in seeds]).double().to(device)
    zero_end = execute(true_step, s0, torch.zeros(len(seeds), B, horizon, 3, dtype=torch.float64, device=device))
    if cfg.task_kind == "random":
        actions = random_actions(seeds, "exp1-true-targets", B, horizon, device)
        return Tasks(true_step, s0, execute(true_step, s0, actions), actions, zero_end)
    K = cfg.task_draws
    drawn = held_actions(seeds, "exp1-task-actions", B, K, horizon, cfg.task_hold_steps, device)  # (E, B, K, T, 3)
    E = len(seeds)
    ends = execute(true_step, s0.repeat_interleave(K, dim=1), drawn.reshape(E, B * K, horizon, 3)).reshape(E, B, K, 3)
    d0 = (ends - zero_end[:, :, None]).norm(dim=-1)  # (E, B, K)
    # the first draw with d0 in [task_min_distance, task_max_distance]; without one, the draw nearest the band
    outside = (cfg.task_min_distance - d0).clamp(min=0) + (d0 - cfg.task_max_distance).clamp(min=0)
    pick = outside.argmin(dim=-1)  # argmin returns the first of equal values
    actions = drawn[torch.arange(E)[:, None], torch.arange(B)[None], pick]
    return Tasks(true_step, s0, ends[torch.arange(E)[:, None], torch.arange(B)[None], pick], actions, zero_end)


def floor_actions(cfg, seeds: list[int], horizon: int, device) -> torch.Tensor:
    """The random-action floor: one fresh draw of the task kind's proposal (no selection), on its own
    stream. -> (E, B, T, 3) float64."""
    B = cfg.num_eval_states
    if cfg.task_kind == "random":
        return random_actions(seeds, "exp1-floor-actions", B, horizon, device)
    return held_actions(seeds, "exp1-task-floor-actions", B, 1, horizon, cfg.task_hold_steps, device)[:, :, 0]


def solved(cfg, error, d0) -> np.ndarray:
    """Success of episodes: true final error and d0 (the task's zero-action distance), same shapes -> bool.

    NaN errors (diverged seeds) are never solved."""
    error = np.asarray(error, dtype=float)
    if cfg.success_rule == "absolute":
        return error < cfg.planning_tolerance
    return error < cfg.success_ratio * np.asarray(d0, dtype=float)


def success_label(cfg) -> str:
    """The success rule in words, for titles and tables."""
    if cfg.success_rule == "absolute":
        return f"error < {cfg.planning_tolerance}"
    return f"error < {cfg.success_ratio} d0"
