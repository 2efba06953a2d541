"""The shared training scaffold (common/training.py): `fit` and the one divergence rule."""

import math

import torch

from common.training import FINAL_WINDOW, diverged, final_loss, finite_weights, fit


def test_fit_is_adam_with_a_cosine_schedule_and_returns_every_loss():
    """A hand-written Adam + cosine loop gives the same weights and losses, bit for bit."""
    def run(scaffold: bool):
        torch.manual_seed(0)
        w = torch.nn.Parameter(torch.randn(3, 4))
        x = torch.randn(3, 8, 4)

        def step_loss(step):
            return (x @ w[:, :, None]).squeeze(-1).pow(2).mean(-1) + 0.01 * step  # per member (3,)
        if scaffold:
            return w, fit([w], 0.1, 20, step_loss, quiet=True)
        opt = torch.optim.Adam([w], lr=0.1)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20)
        history = []
        for step in range(20):
            loss = step_loss(step)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
            schedule.step()
            history.append(loss.detach())
        return w, torch.stack(history, dim=1)
    (w_a, curve_a), (w_b, curve_b) = run(True), run(False)
    assert curve_a.shape == (3, 20) and torch.equal(curve_a, curve_b) and torch.equal(w_a, w_b)


def test_fit_stops_at_the_first_nonfinite_loss_without_a_step_from_it():
    w = torch.nn.Parameter(torch.ones(2))
    losses = [1.0, 2.0, math.nan, 3.0]

    def step_loss(step):
        return w.sum() * losses[step]
    curve = fit([w], 0.1, 4, step_loss, quiet=True, stop_at_nonfinite=True)
    assert curve.shape == (3,) and math.isnan(curve[-1]) and torch.isfinite(w).all()
    assert bool(diverged(curve, finite_weights([w], members=False)))


def test_the_divergence_rule():
    """Diverged: the mean of the last FINAL_WINDOW losses not finite or above the threshold, or a weight
    not finite; members of an ensemble are judged apart."""
    steps = FINAL_WINDOW + 10
    curve = torch.ones(4, steps)
    curve[1, -1] = math.inf  # a non-finite final loss
    curve[2, :] = 5.0  # finite, above a threshold of 2
    curve[3, 0] = math.nan  # a NaN before the final window: not the rule's concern
    weights = [torch.ones(4, 3), torch.ones(4, 2)]
    weights[1][0, 1] = math.nan  # member 0's weights
    assert final_loss(curve)[0] == 1.0
    assert finite_weights(weights).tolist() == [False, True, True, True]
    assert diverged(curve, finite_weights(weights)).tolist() == [True, True, False, False]
    assert diverged(curve, finite_weights(weights), threshold=2.0).tolist() == [True, True, True, False]
