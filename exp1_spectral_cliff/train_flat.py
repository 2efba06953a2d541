"""Training loop of the world models: K-step open-loop rollout MSE ("Flat" = no regularizer).

`train_ensemble` trains E independent members at once (seeds, or the lambda values of a sweep);
`train_helm.py` adds the HELM regularizers through its `penalty` argument.
"""

from __future__ import annotations

from typing import Callable

import torch

from common.runs import progress, torch_generator
from exp1_spectral_cliff.models import EnsembleStepModel

# penalty(model, s_ExNx3, a_ExNx3) -> (E,): a regularizer at the visited (state, action) inputs
Penalty = Callable[[EnsembleStepModel, torch.Tensor, torch.Tensor], torch.Tensor]


def sample_windows(states: torch.Tensor, actions: torch.Tensor, rollout_steps: int, batch_size: int,
                   generators: list[torch.Generator]):
    """Random training windows, drawn per member from its own generator.

    states (E, N, L+1, 3), actions (E, N, L, 3) (may be expanded views) ->
    s (E, B, K+1, 3), a (E, B, K, 3) with K = rollout_steps.
    """
    E, N, L = actions.shape[:3]
    traj = torch.stack([torch.randint(N, (batch_size,), generator=g) for g in generators]).to(states.device)
    start = torch.stack([torch.randint(L - rollout_steps + 1, (batch_size,), generator=g) for g in generators])
    start = start.to(states.device)
    member = torch.arange(E, device=states.device)[:, None, None]
    t = start[..., None] + torch.arange(rollout_steps + 1, device=states.device)
    return states[member, traj[..., None], t], actions[member, traj[..., None], t[..., :-1]]


def rollout_loss(model: EnsembleStepModel, s: torch.Tensor, a: torch.Tensor):
    """Open-loop K-step prediction MSE per member, and the visited inputs.

    s (E, B, K+1, 3), a (E, B, K, 3) -> loss (E,), inputs s_in (E, B*K, 3), a_in (E, B*K, 3).
    With K = 1 this is 1-step teacher forcing.
    """
    pred, inputs = s[:, :, 0], []
    sq_err = 0.0
    for k in range(a.shape[2]):
        inputs.append(pred)
        pred = model(pred, a[:, :, k])
        sq_err = sq_err + (pred - s[:, :, k + 1]).pow(2).mean(dim=(1, 2))
    E = s.shape[0]
    s_in = torch.stack(inputs, dim=2).reshape(E, -1, 3)
    return sq_err / a.shape[2], s_in, a.reshape(E, -1, 3)


def train_ensemble(model: EnsembleStepModel, states: torch.Tensor, actions: torch.Tensor, cfg,
                   rollout_steps: int, sample_seeds: list[int], penalty: Penalty | None = None,
                   desc: str = "train") -> dict:
    """Adam (cosine-decayed lr) on sum_e (mse_e + penalty_e); members are independent.

    states/actions: (E, N, L+1, 3) / (E, N, L, 3) normalized training trajectories.
    Returns {"final_loss": (E,) mean training loss of the last 50 steps, "diverged": (E,) bool,
    "loss_curve": (E, train_steps) the loss of every step} (on the CPU).
    A member diverged when that loss is NaN/Inf or above cfg.divergence_threshold, or a weight is
    not finite; training continues for the others (members never interact).
    """
    generators = [torch_generator(s, "exp1-batches") for s in sample_seeds]
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    # cosine decay to 0, the same schedule for every variant (see README: tuning-seed effect)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.train_steps)
    history = []
    for _ in progress(range(cfg.train_steps), quiet=cfg.quiet, desc=desc, leave=False):
        s, a = sample_windows(states, actions, rollout_steps, cfg.batch_size, generators)
        mse, s_in, a_in = rollout_loss(model, s, a)
        loss = mse + penalty(model, s_in, a_in) if penalty is not None else mse
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        schedule.step()
        history.append(loss.detach())
    curve = torch.stack(history, dim=1).cpu()
    final = curve[:, -50:].mean(dim=1)
    diverged = ~torch.isfinite(final) | (final > cfg.divergence_threshold) | ~model.is_finite().cpu()
    return {"final_loss": final, "diverged": diverged, "loss_curve": curve}
