"""Exact Jacobians of step functions and of their long rollouts, spectral norms and the spectral hinge,
and Lyapunov exponents.

Conventions: a step function is batched, `step(s_BxD, a_BxA) -> s_BxD` (or `step(s_BxD) -> s_BxD`),
and its examples do not interact (row b of the output depends only on row b of the inputs). Rollout
quantities are computed from the per-step
Jacobians `J_s = ds_{t+1}/ds_t` and `J_a = ds_{t+1}/da_t` at the visited states, accumulated in
float64 with rescaling, so that `log ||.||_F` stays exact for horizons in the thousands where the
plain product overflows float32. Every norm of a small Jacobian is exact (`spectral_norm`); the
power iteration (`spectral_norm_power_iteration`) is for a step whose Jacobian is too large to form
(Exp 3's latent maps).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD

StepFn = Callable[..., torch.Tensor]


def batch_jacobian(fn: StepFn, *inputs: torch.Tensor, argnums: int | tuple[int, ...] = 0,
                   create_graph: bool = False):
    """Per-example Jacobians of a batched function whose examples do not interact.

    inputs: tensors (B, n_k); fn(*inputs) -> (B, m). Returns (B, m, n) for an int `argnums`, a tuple
    of them otherwise. Row i of every example's Jacobian is the gradient of sum_b fn(x)_b[i] (examples
    are independent), so this costs one batched forward and m batched backward passes, ~2.5x faster
    than `vmap(jacrev(fn))` on CPU. With `create_graph`, the result is differentiable (training
    penalties): gradients flow to the inputs and to the parameters `fn` closes over.
    """
    indices = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    with torch.enable_grad():
        xs = [x.detach().requires_grad_(True) if i in indices else x for i, x in enumerate(inputs)]
        y = fn(*xs)
        wrt = [xs[i] for i in indices]
        rows = [torch.autograd.grad(y[:, i].sum(), wrt, retain_graph=create_graph or i < y.shape[1] - 1,
                                    create_graph=create_graph) for i in range(y.shape[1])]
    jacobians = tuple(torch.stack([row[k] for row in rows], dim=1) for k in range(len(wrt)))
    return jacobians[0] if isinstance(argnums, int) else jacobians


def spectral_norm(J: torch.Tensor) -> torch.Tensor:
    """Exact spectral norm (largest singular value) of (..., m, n) matrices: sqrt of the top eigenvalue
    of J^T J (n x n), differentiable.

    For Exp 1's 3x3 step Jacobians eigvalsh of the Gram matrix was 1.5x faster forward+backward than
    matrix_norm(ord=2) (SVD), at equal values; NaN/Inf entries (a diverged ensemble member) are
    zeroed so LAPACK never fails.
    """
    J = torch.nan_to_num(J, nan=0.0, posinf=0.0, neginf=0.0)
    return torch.linalg.eigvalsh(J.transpose(-1, -2) @ J)[..., -1].clamp_min(0).sqrt()


def squared_hinge(sigma: torch.Tensor, threshold: float = 1.0) -> torch.Tensor:
    """HELM's spectral hinge, element-wise: relu(sigma - threshold)^2, zero for a non-expansive step
    (sigma = the largest singular value of its Jacobian <= threshold)."""
    return torch.relu(sigma - threshold).pow(2)


def spectral_norm_power_iteration(step: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor,
                                  iters: int = 3) -> torch.Tensor:
    """Largest singular value of d step(z) / d z per example (B,) for inputs z (B, ...) whose examples do
    not interact, by power iteration: J v by forward-mode differentiation, J^T J v by one backward pass,
    from a random start (torch's global generator). Differentiable in the parameters `step` closes
    over through the last Jacobian-vector product; z itself is detached."""
    z = z.detach()

    def normalize(v):
        return v / v.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (v.dim() - 1))

    def step_and_jvp(x, v):
        with fwAD.dual_level():
            return fwAD.unpack_dual(step(fwAD.make_dual(x, v)))  # step(x), J v

    v = normalize(torch.randn_like(z))
    for _ in range(iters):
        x = z.clone().requires_grad_(True)
        out, Jv = step_and_jvp(x, v)
        v = normalize(torch.autograd.grad(out, x, Jv.detach())[0])
    return step_and_jvp(z, v)[1].flatten(1).norm(dim=1)


def rollout(step: StepFn, s0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Batched autoregressive rollout. s0 (B, D), actions (B, T, A) -> states (B, T+1, D)."""
    states = [s0]
    for t in range(actions.shape[1]):
        states.append(step(states[-1], actions[:, t]))
    return torch.stack(states, dim=1)


def step_jacobians_along(step: StepFn, states: torch.Tensor, actions: torch.Tensor):
    """Per-step Jacobians at visited states, computed in one batched call over all (b, t).

    states (B, T(+1), D), actions (B, T, A) -> J_s (B, T, D, D), J_a (B, T, D, A).
    """
    B, T, A = actions.shape
    s_flat = states[:, :T].reshape(B * T, -1)
    J_s, J_a = batch_jacobian(step, s_flat, actions.reshape(B * T, A), argnums=(0, 1))
    return J_s.reshape(B, T, *J_s.shape[1:]), J_a.reshape(B, T, *J_a.shape[1:])


def log_norms_of_products(J_s: torch.Tensor, J_a: torch.Tensor | None = None):
    """Exact `log ||ds_T/ds_0||_F` and `log ||ds_T/da_{0:T-1}||_F` for every prefix T = 1..T_max.

    J_s (B, T, D, D), J_a (B, T, D, A) -> (log_state (B, T), log_action (B, T) or None), float64 on
    J_s's device, where column t-1 holds horizon t. The state product P_T = J_s[T-1] ... J_s[0] is
    carried as a unit-norm matrix and a log scale. The action Jacobian C_T = [P_{T,1} J_a[0], ...,
    J_a[T-1]] enters through its Gram matrix G_T = C_T C_T^T (D x D): ||C_T||_F^2 = trace(G_T) and
    G_{T+1} = J_s[T] G_T J_s[T]^T + J_a[T] J_a[T]^T, also carried normalized with a log scale.
    The T-step loop runs in numpy float64: its 3x3 operations cost ~1 us there and ~6 us in torch.
    """
    Js = J_s.detach().cpu().double().numpy()
    B, T, D, _ = Js.shape
    P = np.broadcast_to(np.eye(D), (B, D, D))
    state_norms = np.empty((B, T))
    for t in range(T):
        P = Js[:, t] @ P
        state_norms[:, t] = np.sqrt(np.einsum("bij,bij->b", P, P))
        P = P / state_norms[:, t, None, None]
    log_state = torch.from_numpy(np.cumsum(np.log(state_norms), axis=1)).to(J_s.device)
    if J_a is None:
        return log_state, None

    Ja = J_a.detach().cpu().double().numpy()
    fresh = Ja @ Ja.transpose(0, 1, 3, 2)  # (B, T, D, D): J_a J_a^T of every step
    G = np.zeros((B, D, D))
    log_g = np.zeros(B)  # the true Gram matrix is exp(log_g) * G
    log_action = np.empty((B, T))
    for t in range(T):
        G = Js[:, t] @ G @ Js[:, t].transpose(0, 2, 1) + np.exp(-log_g)[:, None, None] * fresh[:, t]
        trace = np.einsum("bii->b", G)
        G = G / trace[:, None, None]
        log_g = log_g + np.log(trace)
        log_action[:, t] = 0.5 * log_g
    return log_state, torch.from_numpy(log_action).to(J_s.device)


def rollout_log_norms(step: StepFn, s0: torch.Tensor, actions: torch.Tensor):
    """Exact log Frobenius norms of a T-step rollout's Jacobians, for every horizon 1..T.

    s0 (B, D), actions (B, T, A) -> dict with `log_state` = log ||ds_t/ds_0||_F and
    `log_action` = log ||ds_t/da_{0:t-1}||_F, each (B, T) (column t-1 = horizon t), and `states`.
    """
    with torch.no_grad():
        states = rollout(step, s0, actions)
    J_s, J_a = step_jacobians_along(step, states, actions)
    log_state, log_action = log_norms_of_products(J_s, J_a)
    return {"log_state": log_state, "log_action": log_action, "states": states}


def lyapunov_exponents(step: StepFn, s0: torch.Tensor, num_steps: int, step_time: float,
                       num_exponents: int | None = None) -> torch.Tensor:
    """Benettin/QR estimate of the leading Lyapunov exponents of the map `s' = step(s)`.

    s0 (B, D) initial states (already on the attractor); returns (B, k) exponents per unit time,
    largest first, from `num_steps` steps of duration `step_time` each.
    """
    B, D = s0.shape
    k = num_exponents or D
    Q = torch.eye(D, k, dtype=torch.float64, device=s0.device).expand(B, D, k)
    log_growth = torch.zeros(B, k, dtype=torch.float64, device=s0.device)
    s = s0
    for _ in range(num_steps):
        J = batch_jacobian(step, s).double()
        with torch.no_grad():
            s = step(s)
        Q, R = torch.linalg.qr(J @ Q)
        log_growth += torch.log(torch.diagonal(R, dim1=-2, dim2=-1).abs())
    exponents = log_growth / (num_steps * step_time)
    return exponents.sort(dim=-1, descending=True).values.to(s0.dtype)
