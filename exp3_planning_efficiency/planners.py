"""Planners over the learned world model and goal energy, batched over episodes.

Every planner gets the current latents z (B, D) (or, for HELM and CEM with `snap_latents`, snapped
pose ids from `world_models.SnappedModel`), the embedded goal (from the goal observations) and the
remaining step budget H, and returns actions (B, n) with n <= H to execute before re-planning,
plus the number of transition evaluations (fine or coarse model applications) it spent per episode.
All score a plan the same way: the lowest `energy(z_t) + depth_cost * t` along its predicted latents
(the soft-min of it for the gradient planner), so reaching the goal early is what counts.

- `flat`: gradient descent on H x 3 action logits through H fine steps, Gumbel-Softmax relaxed
  actions (the seed's gd_steps, gd_lr, gumbel_tau); executes the argmax (one-hot) actions.
- `helm`: coarse-to-fine. Coarse level: all 3^k macro-actions (k = coarse_stride) through the coarse
  transition, and (`helm_coarse_depth` 2) all 3^k second macros behind each, ranking each first
  macro by the lowest energy of its subgoals; fine level: the `helm_top_k` best first macros rolled
  out step by step with the fine transition and re-scored (fine energies, then the coarse tail); the
  best is executed. Long horizons are left to the energy's funnel, descended subgoal by subgoal.
- `cem`: PlaNet-style cross-entropy method over min(H, cem_horizon) x 3 categorical action
  distributions (a fixed planning horizon as in PlaNet; over the full remaining horizon the seed's
  500 x 10 samples cost ~15 minutes per seed here).
- `random`: uniform random actions (floor). `bfs` (in run_planning): the true shortest path (ceiling).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from exp3_planning_efficiency.env_minigrid import NUM_ACTIONS


def rollout_costs(model, energy, z: torch.Tensor, actions: torch.Tensor, goal, cfg):
    """Energy + depth cost after each step of a plan. z (B, [N,] ...), actions (B, [N,] H, 3) -> (B, [N,] H).

    The energy is evaluated step by step, which keeps CEM's memory small.
    """
    costs = []
    for t in range(actions.shape[-2]):
        z = model.step(z, actions[..., t, :])
        costs.append(energy.to_goal(z, goal) + cfg.depth_cost * (t + 1))
    return torch.stack(costs, dim=-1)


def flat_gd(model, energy, z, goal, H, cfg, generator):
    """Gradient descent on relaxed action logits over the whole remaining horizon."""
    logits = torch.zeros(z.shape[0], H, NUM_ACTIONS, device=z.device, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=cfg.gd_lr)
    with torch.enable_grad():  # callers plan under no_grad; only the logits need gradients
        for _ in range(cfg.gd_steps):
            uniform = torch.rand(logits.shape, generator=generator, device=z.device).clamp_min(1e-10)
            actions = F.softmax((logits - torch.log(-torch.log(uniform))) / cfg.gumbel_tau, dim=-1)
            costs = rollout_costs(model, energy, z, actions, goal, cfg)  # (B, H)
            soft_min = -cfg.softmin_temperature * torch.logsumexp(-costs / cfg.softmin_temperature, dim=-1)
            opt.zero_grad(set_to_none=True)
            soft_min.sum().backward()
            opt.step()
    return logits.detach().argmax(-1), cfg.gd_steps * H


def all_macros(length: int, device) -> torch.Tensor:
    """Every action sequence of `length`: (3^length, length) long."""
    return torch.tensor(list(itertools.product(range(NUM_ACTIONS), repeat=length)), device=device)


def helm(model, energy, z, goal, H, cfg, generator=None):
    """Coarse-to-fine: a two-level coarse lookahead ranks the first macro-action, the fine model
    re-scores the best `helm_top_k` step by step; returns the winning macro's k actions (B, k)."""
    B, k = z.shape[0], min(model.coarse_stride, H)
    macros = all_macros(k, z.device)  # (M, k)
    one_hot = F.one_hot(macros, NUM_ACTIONS).float()
    M = len(macros)
    if k < model.coarse_stride:  # the budget ends within one coarse step: refine every sequence
        fine_cost = rollout_costs(model, energy, z[:, None].expand(B, M, *z.shape[1:]),
                                  one_hot.expand(B, M, k, NUM_ACTIONS), goal, cfg).amin(-1)
        return macros[fine_cost.argmin(-1)], M * k
    first = model.coarse_step(z[:, None].expand(B, M, *z.shape[1:]), one_hot.expand(B, M, k, NUM_ACTIONS))
    coarse_cost, coarse_evals = energy.to_goal(first, goal) + cfg.depth_cost * k, M  # (B, M)
    if cfg.helm_coarse_depth == 2 and H >= 2 * k:  # best second subgoal behind each first one
        second = model.coarse_step(first[:, :, None].expand(B, M, M, *first.shape[2:]),
                                   one_hot.expand(B, M, M, k, NUM_ACTIONS))
        continuation = energy.to_goal(second, goal).amin(-1) + cfg.depth_cost * 2 * k
        coarse_cost, coarse_evals = torch.minimum(coarse_cost, continuation), M + M * M
    else:
        continuation = torch.full_like(coarse_cost, float("inf"))
    top = coarse_cost.topk(min(cfg.helm_top_k, M), dim=-1, largest=False).indices  # (B, K)
    fine_cost = rollout_costs(model, energy, z[:, None].expand(B, top.shape[1], *z.shape[1:]), one_hot[top], goal, cfg)
    score = torch.minimum(fine_cost.amin(-1), continuation.gather(1, top))  # fine steps, then the coarse tail
    best = top.gather(1, score.argmin(-1, keepdim=True))[:, 0]
    return macros[best], coarse_evals + top.shape[1] * k


def cem(model, energy, z, goal, H, cfg, generator):
    """Cross-entropy method on per-step categorical action distributions; returns the best sample seen."""
    B, N, H = z.shape[0], cfg.cem_num_samples, min(H, cfg.cem_horizon)
    n_elite = max(1, int(round(cfg.cem_elite_frac * N)))
    probs = torch.full((B, H, NUM_ACTIONS), 1.0 / NUM_ACTIONS, device=z.device)
    best_cost = torch.full((B,), float("inf"), device=z.device)
    best_actions = torch.zeros(B, H, dtype=torch.long, device=z.device)
    z_samples = z[:, None].expand(B, N, *z.shape[1:])
    for _ in range(cfg.cem_num_iters):
        samples = torch.multinomial(probs.reshape(B * H, NUM_ACTIONS), N, replacement=True, generator=generator)
        samples = samples.reshape(B, H, N).transpose(1, 2)  # (B, N, H)
        one_hot = F.one_hot(samples, NUM_ACTIONS).float()
        cost = rollout_costs(model, energy, z_samples, one_hot, goal, cfg).amin(-1)
        elite_cost, elite = cost.topk(n_elite, dim=-1, largest=False)
        elite_actions = samples.gather(1, elite[..., None].expand(-1, -1, H))  # (B, n_elite, H)
        probs = F.one_hot(elite_actions, NUM_ACTIONS).float().mean(1)
        improved = elite_cost[:, 0] < best_cost
        best_cost = torch.where(improved, elite_cost[:, 0], best_cost)
        best_actions = torch.where(improved[:, None], elite_actions[:, 0], best_actions)
    return best_actions, cfg.cem_num_iters * N * H


def random_actions(model, energy, z, goal, H, cfg, generator):
    return torch.randint(NUM_ACTIONS, (z.shape[0], H), generator=generator, device=z.device), 0


MODEL_PLANNERS = {"flat": flat_gd, "helm": helm, "cem": cem, "random": random_actions}
