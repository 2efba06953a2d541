"""Experiment 1's planner with bounded gradients (`planner.py`): truncation through k steps (exact for
k >= T, the hand-derived chunked gradient on a linear system), per-example clipping (fast)."""

import pytest
import torch

from exp1_spectral_cliff.planner import backward_error, clip_per_example, plan_actions, rollout_chunks

GEN = torch.Generator().manual_seed(0)
A = 0.9 * torch.eye(3, dtype=torch.float64) + 0.3 * torch.randn(3, 3, generator=GEN, dtype=torch.float64)
B_MAT = torch.eye(3, dtype=torch.float64) + 0.1 * torch.randn(3, 3, generator=GEN, dtype=torch.float64)


def linear_step(s, a):
    return s @ A.T + a @ B_MAT.T


def lorenz_like_step(s, a):
    """A nonlinear step (Lorenz right-hand side, one Euler step) for gradients that are not linear."""
    x, y, z = s.unbind(-1)
    ds = torch.stack([10 * (y - x), x * (28 - z) - y, x * y - 8 / 3 * z], dim=-1)
    return s + 0.01 * ds + 0.5 * a


def gradient(step, s0, target, actions, window):
    """The planner's action gradient (E, B, T, 3) at `actions`."""
    actions = actions.clone().requires_grad_(True)
    s, ends = rollout_chunks(step, s0, actions, window)
    backward_error((s - target).norm(dim=-1), s, ends, target, window)
    return actions.grad


def problem(T, scale=1.0):
    gen = torch.Generator().manual_seed(T)
    s0 = scale * torch.randn(2, 4, 3, generator=gen, dtype=torch.float64)
    target = scale * torch.randn(2, 4, 3, generator=gen, dtype=torch.float64)
    actions = 2 * torch.rand(2, 4, T, 3, generator=gen, dtype=torch.float64) - 1
    return s0, target, actions


@pytest.mark.parametrize("window", [12, 50])
def test_truncated_gradient_is_the_full_gradient_when_the_window_covers_T(window):
    s0, target, actions = problem(12, scale=5.0)
    full = gradient(lorenz_like_step, s0, target, actions, 0)
    torch.testing.assert_close(gradient(lorenz_like_step, s0, target, actions, window), full, rtol=1e-10, atol=1e-12)


def test_truncated_gradient_passes_through_the_rest_of_its_chunk_only():
    """s' = A s + B a, T = 5, k = 2: chunks {0}, {1, 2}, {3, 4} (aligned to the end); a_t's gradient is
    B^T (A^T)^(end - 1 - t) 2 (s_T - target), end = its chunk's end; the full one has end = T."""
    T, k = 5, 2
    s0, target, actions = problem(T)
    s = s0
    for t in range(T):
        s = linear_step(s, actions[:, :, t])
    adjoint = 2 * (s - target)
    chunk_end = {0: 1, 1: 3, 2: 3, 3: 5, 4: 5}
    for window, end_of in ((k, chunk_end), (0, {t: T for t in range(T)})):
        got = gradient(linear_step, s0, target, actions, window)
        for t in range(T):
            expected = adjoint @ torch.linalg.matrix_power(A, end_of[t] - 1 - t) @ B_MAT
            torch.testing.assert_close(got[:, :, t], expected, rtol=1e-10, atol=1e-12)
    # the last chunk's gradient is exact
    torch.testing.assert_close(gradient(linear_step, s0, target, actions, k)[:, :, 3:],
                               gradient(linear_step, s0, target, actions, 0)[:, :, 3:])


def test_truncation_leaves_the_rollout_value_unchanged():
    s0, target, actions = problem(9, scale=5.0)
    full, _ = rollout_chunks(lorenz_like_step, s0, actions, 0)
    cut, ends = rollout_chunks(lorenz_like_step, s0, actions, 4)
    assert torch.equal(full, cut) and len(ends) == 3 and ends[-1] is cut


def test_clipped_gradient_norms_are_bounded_per_example_and_keep_their_direction():
    s0, target, actions = problem(30, scale=5.0)
    grad = gradient(lorenz_like_step, s0, target, actions, 0)
    norms = grad.flatten(2).norm(dim=-1)
    clip = float(norms.median())  # half the examples above, half below
    clipped = grad.clone()
    clip_per_example(clipped, clip)
    new = clipped.flatten(2).norm(dim=-1)
    assert bool((new <= clip * (1 + 1e-12)).all())
    below = norms <= clip
    assert below.any() and (~below).any()
    assert torch.equal(clipped[below], grad[below])  # small gradients untouched
    torch.testing.assert_close(new[~below], torch.full_like(new[~below], clip))
    torch.testing.assert_close(clipped / new[..., None, None], grad / norms[..., None, None])  # same direction


def test_bounded_planner_still_solves_a_linear_system():
    """With clipping and truncation the planner still reaches targets that actions in [-1, 1] reach."""
    T = 4
    s0, _, _ = problem(T)
    true_actions = 0.8 * (2 * torch.rand(2, 4, T, 3, generator=torch.Generator().manual_seed(1),
                                         dtype=torch.float64) - 1)
    target = s0
    for t in range(T):
        target = linear_step(target, true_actions[:, :, t])
    plan, iters = plan_actions(linear_step, s0, target, torch.zeros_like(true_actions), 3000, 0.05, 1e-3,
                               clip=0.5, window=T + 1)
    reached = s0
    for t in range(T):
        reached = linear_step(reached, plan[:, :, t])
    assert (reached - target).norm(dim=-1).max() < 1e-3 and bool((iters < 3000).all())
