"""The gradient planner: Adam on an action sequence through a differentiable step function.

The step is batched over members and examples, `step(s (E, B, 3), a (E, B, 3)) -> (E, B, 3)`, a
learned ensemble or the true system (`dataset.stacked_true_step`). Examples never interact: the
loss is a sum over them and Adam is elementwise, so each action sequence gets exactly its own update.

Bounded gradients (off by default, for the question whether the planner fails at long T because the
gradient through T chaotic steps explodes): `clip` rescales each example's action gradient (T, 3) to
norm <= clip before Adam; `window` k detaches the state every k steps (chunks aligned to the end) and
carries the final error's gradient 2 (s_T - target) across each cut as if the rest of the rollout
were the identity, so no gradient passes through more than k step Jacobians (k >= T: the exact gradient).
"""

from __future__ import annotations

import torch


def plan_actions(step, s0: torch.Tensor, target: torch.Tensor, init_actions: torch.Tensor, max_iters: int,
                 lr: float, tolerance: float, clip: float = 0.0, window: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimize ||s_T - target||^2 over actions in [-1, 1] (Adam, projected after each step).

    s0, target (E, B, 3); init_actions (E, B, T, 3). Returns the plan (E, B, T, 3), per example the
    actions of the first iteration whose error is below `tolerance` (else those of the lowest error
    seen), and (E, B) iterations until that iteration (0 = solved at the start; `max_iters` = never).
    The batch stops early once every example is solved (checked every 10 iterations).
    clip > 0 / window > 0: the bounded gradients of the module docstring (0 = off, the exact gradient).
    """
    actions = init_actions.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([actions], lr=lr)
    solved_at = torch.full(s0.shape[:2], max_iters, device=s0.device)
    best = init_actions.detach().clone()
    best_err = torch.full(s0.shape[:2], float("inf"), device=s0.device, dtype=s0.dtype)
    for it in range(max_iters):
        s, ends = rollout_chunks(step, s0, actions, window)
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
        backward_error(err, s, ends, target, window)
        if clip > 0:
            clip_per_example(actions.grad, clip)
        opt.step()
        with torch.no_grad():
            actions.clamp_(-1.0, 1.0)
    return best, solved_at


def rollout_chunks(step, s0: torch.Tensor, actions: torch.Tensor, window: int):
    """Roll actions (E, B, T, 3) out from s0 (E, B, 3). window > 0: the state is detached at the start of
    every chunk of `window` steps (chunks aligned to the end: the first may be shorter). Returns s_T (E, B, 3)
    (the same value either way) and the list of chunk end states, each carrying the graph of its chunk only."""
    T, s, ends = actions.shape[2], s0, []
    for t in range(T):
        if window > 0 and t > 0 and (T - t) % window == 0:
            ends.append(s)
            s = s.detach()
        s = step(s, actions[:, :, t])
    ends.append(s)
    return s, ends


def backward_error(err: torch.Tensor, s: torch.Tensor, ends: list, target: torch.Tensor, window: int) -> None:
    """Accumulate the action gradient of sum ||s_T - target||^2 (err (E, B) = the norms): exact, or with
    window > 0 through each chunk only, the chunk's end standing in for s_T (d loss / d end = 2 (s_T - target))."""
    if window > 0:
        adjoint = 2 * (s - target).detach()
        sum((end * adjoint).sum() for end in ends).backward()
    else:
        err.pow(2).sum().backward()


@torch.no_grad()
def clip_per_example(grad: torch.Tensor, clip: float) -> None:
    """In place: rescale each example's gradient (E, B, T, 3) -> norm over (T, 3) at most `clip`."""
    norm = grad.flatten(2).norm(dim=-1)
    grad.mul_((clip / norm.clamp(min=clip))[..., None, None])
