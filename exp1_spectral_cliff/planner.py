"""The gradient planner: Adam on an action sequence through a differentiable step function.

The step is batched over members and examples, `step(s (E, B, 3), a (E, B, 3)) -> (E, B, 3)`, a
learned ensemble or the true system (`dataset.stacked_true_step`). Examples never interact: the
loss is a sum over them and Adam is elementwise, so each action sequence gets exactly its own update.
"""

from __future__ import annotations

import torch


def plan_actions(step, s0: torch.Tensor, target: torch.Tensor, init_actions: torch.Tensor, max_iters: int,
                 lr: float, tolerance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimize ||s_T - target||^2 over actions in [-1, 1] (Adam, projected after each step).

    s0, target (E, B, 3); init_actions (E, B, T, 3). Returns the plan (E, B, T, 3), per example the
    actions of the first iteration whose error is below `tolerance` (else those of the lowest error
    seen), and (E, B) iterations until that iteration (0 = solved at the start; `max_iters` = never).
    The batch stops early once every example is solved (checked every 10 iterations).
    """
    actions = init_actions.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([actions], lr=lr)
    solved_at = torch.full(s0.shape[:2], max_iters, device=s0.device)
    best = init_actions.detach().clone()
    best_err = torch.full(s0.shape[:2], float("inf"), device=s0.device, dtype=s0.dtype)
    for it in range(max_iters):
        s = s0
        for t in range(actions.shape[2]):
            s = step(s, actions[:, :, t])
        err = (s - target).norm(dim=-1)
        with torch.no_grad():
            unsolved = solved_at == max_iters
            keep = unsolved & (err < best_err)
            best = torch.where(keep[..., None, None], actions, best)
            best_err = torch.where(keep, err, best_err)
            newly = (err < tolerance) & unsolved
            solved_at = torch.where(newly, torch.full_like(solved_at, it), solved_at)
        if it % 10 == 9 and bool((solved_at < max_iters).all()):
            break
        opt.zero_grad(set_to_none=True)
        err.pow(2).sum().backward()
        opt.step()
        with torch.no_grad():
            actions.clamp_(-1.0, 1.0)
    return best, solved_at
