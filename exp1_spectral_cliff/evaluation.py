"""Planning evaluation: Adam on the action sequence through a model.

`planning_iterations` is the diagnostic "optimization convergence on the model": targets are the
same model's states after random actions, so they are reachable by construction.
"""

from __future__ import annotations

import numpy as np
import torch

from common.runs import torch_generator
from exp1_spectral_cliff.models import EnsembleStepModel, rollout


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
