"""The one training scaffold of every model, and the one divergence rule.

`fit` runs Adam with a learning rate cosine-decayed to 0 over the run (the same schedule for every
model of the three experiments) on a per-step loss and returns the loss curve. The loss may be one
model's scalar or an ensemble's per-member vector (E,): members are independent, so the sum is
minimized and each member trains as if alone.

The divergence rule (`diverged`): a model diverged when the mean of its last `FINAL_WINDOW` = 50
training losses (`final_loss`) is not finite or above `threshold`, or when one of its weights is not
finite. Exp 1 sets the threshold (`divergence_threshold`); Exp 2 and 3 have none (infinite). A model
trained alone (Exp 3) stops at its first non-finite loss (`stop_at_nonfinite`): every later step
would be NaN, and its curve then ends with that loss, so the rule flags it. An ensemble trains on,
since its other members are unaffected.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch

from common.runs import progress

FINAL_WINDOW = 50  # the last training steps whose mean loss is a model's final loss


def fit(parameters: Iterable[torch.Tensor], lr: float, steps: int, step_loss: Callable[[int], torch.Tensor],
        quiet: bool = False, desc: str = "train", stop_at_nonfinite: bool = False) -> torch.Tensor:
    """Adam (lr cosine-decayed to 0 over `steps`) on `step_loss(step).sum()`, step = 0..steps-1.

    step_loss returns () for one model or (E,) for an ensemble. Returns the loss curve on the CPU,
    (steps,) or (E, steps); with `stop_at_nonfinite`, training stops at the first step whose loss
    is not finite (no update from it), the last entry of a shorter curve."""
    opt = torch.optim.Adam(parameters, lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    history = []
    for step in progress(range(steps), quiet=quiet, desc=desc, leave=False):
        loss = step_loss(step)
        history.append(loss.detach())
        if stop_at_nonfinite and not bool(torch.isfinite(loss).all()):
            break
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        schedule.step()
    return torch.stack(history, dim=-1).cpu()


def final_loss(curve: torch.Tensor) -> torch.Tensor:
    """Mean of the last FINAL_WINDOW losses: (steps,) -> (), (E, steps) -> (E,)."""
    return curve[..., -FINAL_WINDOW:].mean(dim=-1)


def finite_weights(parameters: Iterable[torch.Tensor], members: bool = True) -> torch.Tensor:
    """Whether every weight is finite: per member (E,) bool on the CPU for an ensemble's stacked
    weights (leading member dimension), one () bool for a model with `members` False."""
    if members:
        return torch.stack([torch.isfinite(p).flatten(1).all(dim=1) for p in parameters]).all(dim=0).cpu()
    return torch.stack([torch.isfinite(p).all() for p in parameters]).all().cpu()


def diverged(curve: torch.Tensor, weights_finite: torch.Tensor, threshold: float = math.inf) -> torch.Tensor:
    """The divergence rule (module docstring): curve (steps,) or (E, steps), weights_finite () or (E,)
    -> () or (E,) bool."""
    final = final_loss(curve)
    return ~torch.isfinite(final) | (final > threshold) | ~weights_finite
