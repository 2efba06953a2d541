"""Jacobian utilities against autograd, finite differences and closed forms."""

import math

import pytest
import torch

from common.jacobian_utils import (batch_jacobian, log_norms_of_products, lyapunov_exponents, rollout,
                                   rollout_log_norms, spectral_norm, spectral_norm_power_iteration, squared_hinge,
                                   step_jacobians_along)


def make_mlp_step(state_dim=3, action_dim=2, hidden=32, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(state_dim + action_dim, hidden), torch.nn.Tanh(),
                              torch.nn.Linear(hidden, hidden), torch.nn.Tanh(),
                              torch.nn.Linear(hidden, state_dim)).to(dtype)

    def step(s, a):
        return s + 0.5 * net(torch.cat([s, a], dim=-1))

    return step, net


def central_differences(fn, x, eps=1e-6):
    cols = []
    for i in range(x.numel()):
        e = torch.zeros_like(x)
        e[i] = eps
        cols.append((fn(x + e) - fn(x - e)) / (2 * eps))
    return torch.stack(cols, dim=-1)


def test_batch_jacobian_matches_autograd_and_finite_differences():
    step, _ = make_mlp_step()
    s, a = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    J_s, J_a = batch_jacobian(step, s, a, argnums=(0, 1))
    for b in range(5):
        ref_s, ref_a = torch.autograd.functional.jacobian(step, (s[b], a[b]))
        torch.testing.assert_close(J_s[b], ref_s)
        torch.testing.assert_close(J_a[b], ref_a)
        torch.testing.assert_close(J_s[b], central_differences(lambda x: step(x, a[b]), s[b]), atol=1e-7, rtol=1e-6)
        torch.testing.assert_close(J_a[b], central_differences(lambda u: step(s[b], u), a[b]), atol=1e-7, rtol=1e-6)


def test_batched_equals_per_example():
    step, _ = make_mlp_step(dtype=torch.float32)
    s, a = torch.randn(7, 3), torch.randn(7, 2)
    J_batched = batch_jacobian(step, s, a, argnums=0)
    for b in range(7):
        torch.testing.assert_close(J_batched[b], batch_jacobian(step, s[b:b + 1], a[b:b + 1])[0])


def test_exact_spectral_norm():
    """Against the SVD: rectangular float64, Exp 1's 3x3 float32 Jacobians; a non-finite matrix (a
    diverged member) gives a number, not a LAPACK error."""
    J = torch.randn(4, 3, 5, dtype=torch.float64)
    torch.testing.assert_close(spectral_norm(J), torch.linalg.svdvals(J)[:, 0])
    J = torch.randn(50, 3, 3)
    torch.testing.assert_close(spectral_norm(J), torch.linalg.svdvals(J)[:, 0], atol=1e-5, rtol=1e-5)
    J[0, 1, 1] = math.nan
    assert torch.isfinite(spectral_norm(J)).all()


def test_power_iteration_is_the_largest_singular_value():
    """Power iteration (forward-mode J v, backward J^T J v) on a batched step against the exact norm of
    each example's Jacobian, and differentiable in the step's parameters."""
    step, net = make_mlp_step(dtype=torch.float64)
    s, a = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    estimate = spectral_norm_power_iteration(lambda x: step(x, a), s, iters=200)
    torch.testing.assert_close(estimate, spectral_norm(batch_jacobian(step, s, a)), rtol=1e-4, atol=1e-6)
    estimate.sum().backward()
    assert net[0].weight.grad is not None and net[0].weight.grad.abs().sum() > 0


def test_rollout_log_norms_equal_direct_jacobians_for_short_T():
    step, _ = make_mlp_step()
    B, T = 4, 6
    s0, actions = torch.randn(B, 3, dtype=torch.float64), 0.5 * torch.randn(B, T, 2, dtype=torch.float64)
    out = rollout_log_norms(step, s0, actions)
    for t in (1, 3, T):
        for b in range(B):
            def final(s, u):
                return rollout(step, s[None], u[None])[0, -1]
            J0, Ja = torch.autograd.functional.jacobian(final, (s0[b], actions[b, :t]))
            torch.testing.assert_close(out["log_state"][b, t - 1], torch.log(J0.norm()))
            torch.testing.assert_close(out["log_action"][b, t - 1], torch.log(Ja.norm()))


def test_linear_map_closed_form_at_T_1000_where_float32_overflows():
    torch.manual_seed(0)
    D, A_dim, T = 3, 2, 1000
    Q, _ = torch.linalg.qr(torch.randn(D, D, dtype=torch.float64))
    A = (Q @ torch.diag(torch.tensor([1.1, 0.9, 0.5], dtype=torch.float64)) @ Q.T)
    Bm = torch.randn(D, A_dim, dtype=torch.float64)
    A32, B32 = A.float(), Bm.float()
    def step(s, a):
        return s @ A32.T + a @ B32.T
    s0, actions = torch.randn(2, D), torch.randn(2, T, A_dim)

    assert not torch.isfinite(torch.linalg.matrix_power(A32, T)).all()  # the direct product overflows
    out = rollout_log_norms(step, s0, actions)

    powers = [torch.eye(D, dtype=torch.float64)]
    for _ in range(T):
        powers.append(A @ powers[-1])
    expected_state = math.log(powers[T].norm())
    expected_action = 0.5 * math.log(sum(float((powers[k] @ Bm).pow(2).sum()) for k in range(T)))
    A_as_32 = A32.double()  # the step uses the float32-rounded matrices
    assert expected_state > 88  # exp(88) is beyond float32
    for b in range(2):
        assert out["log_state"][b, -1].item() == pytest.approx(
            math.log(torch.linalg.matrix_power(A_as_32, T).norm()), rel=1e-6)
        assert out["log_state"][b, -1].item() == pytest.approx(expected_state, rel=1e-3)
        assert out["log_action"][b, -1].item() == pytest.approx(expected_action, rel=1e-3)


def test_log_norms_without_action_jacobians():
    J = torch.eye(2).expand(3, 4, 2, 2) * 2.0
    log_state, log_action = log_norms_of_products(J)
    assert log_action is None
    torch.testing.assert_close(log_state[:, -1], torch.full((3,), math.log(16 * math.sqrt(2)), dtype=torch.float64))


def test_step_jacobians_along_shapes():
    step, _ = make_mlp_step(dtype=torch.float32)
    s0, actions = torch.randn(4, 3), torch.randn(4, 5, 2)
    states = rollout(step, s0, actions)
    J_s, J_a = step_jacobians_along(step, states, actions)
    assert states.shape == (4, 6, 3) and J_s.shape == (4, 5, 3, 3) and J_a.shape == (4, 5, 3, 2)


def test_lyapunov_of_linear_system():
    torch.manual_seed(1)
    P = torch.randn(3, 3, dtype=torch.float64)
    eig = torch.tensor([1.3, 0.8, 0.4], dtype=torch.float64)
    A = P @ torch.diag(eig) @ torch.linalg.inv(P)
    exps = lyapunov_exponents(lambda s: s @ A.T, torch.randn(2, 3, dtype=torch.float64), num_steps=400, step_time=0.1)
    torch.testing.assert_close(exps, (eig.log() / 0.1).expand(2, 3), atol=0.05, rtol=0)


def test_spectral_hinge():
    contractive = 0.5 * torch.eye(3).expand(4, 3, 3)
    expansive = torch.diag(torch.tensor([2.0, 0.5, 0.5])).expand(4, 3, 3)
    assert squared_hinge(spectral_norm(contractive)).tolist() == [0.0] * 4
    assert squared_hinge(spectral_norm(expansive)).mean().item() == pytest.approx(1.0)
    assert squared_hinge(spectral_norm(expansive), threshold=1.5).mean().item() == pytest.approx(0.25)


def test_spectral_hinge_is_differentiable_wrt_parameters():
    step, net = make_mlp_step(dtype=torch.float32)
    s, a = torch.randn(8, 3), torch.randn(8, 2)
    J_s = batch_jacobian(step, s, a, create_graph=True)
    squared_hinge(spectral_norm(J_s), threshold=0.0).mean().backward()
    assert net[0].weight.grad is not None and net[0].weight.grad.abs().sum() > 0
