"""The losses of the world models: `rollout_loss`, the K-step open-loop prediction MSE ("Flat" = this
alone), and the regularizers of the transition (every one returns a per-member penalty (E,) at visited
inputs s, a (E, N, 3); `PENALTIES` names them), with `make_penalty`, their weighted sum with per-member weights.

- spectral: relu(sigma_max(ds'/ds) - 1)^2 at the visited states (per-step hinge; exact 3x3 Jacobians
  from one batched forward + 3 batched backward rows, differentiable);
- ftle: relu(lambda_1 - ftle_margin)^2, lambda_1 the model's finite-time largest Lyapunov exponent
  (per unit time) over `penalty_steps` steps of its own trajectory from a visited state under random
  actions: Benettin's QR with one tangent vector (renormalized every step), as in gradient flossing
  (Engelken 2023), whose loss pushes the exponents towards 0;
- kstep: relu(sigma_max(d s_k / d s_0) - 1)^2 over the same k-step trajectory (the hinge on the
  k-step Jacobian instead of the per-step one);
- hf: E_delta ||F(s + d_s, a + d_a) - F(s, a)||^2, delta ~ N(0, sigma^2 I) on the model's whole input
  (HF invariance / mollification of the transition).
The multi-step penalties start from the first `penalty_states` visited states of the batch (a random
subset: the windows are drawn at random); their tangents are carried forward exactly
(`state_tangents`), so they are differentiable by ordinary autograd.
"""

from __future__ import annotations

import torch

from common.jacobian_utils import batch_jacobian, spectral_norm, squared_hinge
from common.runs import torch_generator
from exp1_spectral_cliff.models import EnsembleStepModel, MemberSubset


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


def spectral_hinge(model: EnsembleStepModel, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Mean over inputs of relu(sigma_max(ds'/ds) - 1)^2, per member. s, a (E, N, 3) -> (E,)."""
    E = s.shape[0]
    J = batch_jacobian(model.flat_step, s.reshape(-1, 3), a.reshape(-1, 3), argnums=0, create_graph=True)
    return squared_hinge(spectral_norm(J)).reshape(E, -1).mean(dim=1)


def hf_invariance(model: EnsembleStepModel, s: torch.Tensor, a: torch.Tensor, sigma: float,
                  generators: list[torch.Generator]) -> torch.Tensor:
    """E_delta ||F(x + delta) - F(x)||^2 with one delta per input, per member. s, a (E, N, 3) -> (E,)."""
    s, a = s.detach(), a.detach()
    noise = sigma * torch.stack([torch.randn(s.shape[1], 6, generator=g) for g in generators]).to(s.device)
    out = model(s, a)
    noisy = model(s + noise[..., :3], a + noise[..., 3:])
    return (noisy - out).pow(2).sum(dim=-1).mean(dim=1)


def state_tangents(model: EnsembleStepModel | MemberSubset, s: torch.Tensor, a: torch.Tensor, V: torch.Tensor):
    """One step and its state Jacobian applied to tangents (forward mode, by hand through the MLP).

    s, a (E, N, 3), V (E, N, 3, m) -> s' (E, N, 3) (equal to model(s, a)), (ds'/ds) V (E, N, 3, m).
    """
    E, N, _, m = V.shape
    h, d = torch.cat([s, a], dim=-1), V.transpose(-1, -2).reshape(E, N * m, 3)  # tangents of the state input
    last = len(model.weights) - 1
    for i, (w, b) in enumerate(zip(model.weights, model.biases)):
        h = torch.baddbmm(b, h, w)
        d = torch.bmm(d, w[:, :3] if i == 0 else w)  # the action inputs carry no tangent
        if i < last:
            h = torch.tanh(h)
            d = (d.reshape(E, N, m, -1) * (1 - h * h)[:, :, None, :]).reshape(E, N * m, -1)
    return s + h, V + d.reshape(E, N, m, 3).transpose(-1, -2)


def _random_steps(generators: list[torch.Generator], shape: tuple, device):
    """Uniform actions in [-1, 1] drawn per member: (E, *shape)."""
    return torch.stack([2 * torch.rand(shape, generator=g) - 1 for g in generators]).to(device)


def ftle_penalty(model: EnsembleStepModel | MemberSubset, s: torch.Tensor, cfg,
                 generators: list[torch.Generator]) -> torch.Tensor:
    """Mean of relu(lambda_1 - cfg.ftle_margin)^2 over trajectories from s (E, N, 3). -> (E,)."""
    x = s.detach()
    q = torch.stack([torch.randn(x.shape[1], 3, 1, generator=g) for g in generators]).to(x.device)
    q = q / q.norm(dim=2, keepdim=True)
    log_growth = torch.zeros(x.shape[:2], device=x.device)
    for _ in range(cfg.penalty_steps):
        x, Jq = state_tangents(model, x, _random_steps(generators, (x.shape[1], 3), x.device), q)
        norm = Jq.norm(dim=2, keepdim=True)  # QR of one column: R_11 = its norm
        log_growth = log_growth + norm.log()[..., 0, 0]
        q = Jq / norm
    exponent = log_growth / (cfg.penalty_steps * cfg.dt_model)
    return torch.relu(exponent - cfg.ftle_margin).pow(2).mean(dim=1)


def kstep_penalty(model: EnsembleStepModel | MemberSubset, s: torch.Tensor, cfg,
                  generators: list[torch.Generator]) -> torch.Tensor:
    """Mean of relu(sigma_max(d s_k / d s_0) - 1)^2 over k-step trajectories from s (E, N, 3). -> (E,)."""
    x = s.detach()
    V = torch.eye(3, device=x.device).expand(*x.shape[:2], 3, 3)
    for _ in range(cfg.penalty_steps):
        x, V = state_tangents(model, x, _random_steps(generators, (x.shape[1], 3), x.device), V)
    return squared_hinge(spectral_norm(V.reshape(-1, 3, 3))).reshape(x.shape[0], -1).mean(dim=1)


# name -> term(model, s, a, cfg, streams) -> (E,): each regularizer at the visited inputs s, a (E, N, 3);
# `streams` holds each member's generators by purpose ("hf": the HF noise, "trajectories": the random actions
# and tangents of the multi-step penalties). `make_penalty` adds the terms in this order.
PENALTIES = {
    "spectral": lambda model, s, a, cfg, streams: spectral_hinge(model, s, a),
    "hf": lambda model, s, a, cfg, streams: hf_invariance(model, s, a, cfg.hf_noise_sigma, streams["hf"]),
    "ftle": lambda model, s, a, cfg, streams: ftle_penalty(model, s[:, :cfg.penalty_states], cfg,
                                                           streams["trajectories"]),
    "kstep": lambda model, s, a, cfg, streams: kstep_penalty(model, s[:, :cfg.penalty_states], cfg,
                                                             streams["trajectories"]),
}


def make_penalty(cfg, weights: dict, noise_seeds: list[int], device: torch.device):
    """The weighted sum of the regularizers; weights: name in PENALTIES -> (E,) tensor (terms whose
    weights are all 0 are skipped). Each member draws its noise and actions from its own streams."""
    streams = {"hf": [torch_generator(s, "exp1-hf-noise") for s in noise_seeds],
               "trajectories": [torch_generator(s, "exp1-penalty-trajectories") for s in noise_seeds]}
    weights = {k: w.to(device) for k, w in weights.items()}

    def penalty(model, s, a):
        total = torch.zeros(s.shape[0], device=s.device)
        for name in PENALTIES:
            w = weights[name]
            if not bool((w > 0).any()):
                continue
            idx = torch.nonzero(w > 0)[:, 0]
            if len(idx) == len(w):  # every member: the ensemble itself
                total = total + w * term(name, model, s, a, list(range(len(w))))
            else:  # only the members that use this term pay for it
                sub = term(name, MemberSubset(model, idx), s[idx], a[idx], idx.tolist())
                total = total.index_add(0, idx, w[idx] * sub)
        return total

    def term(name, model, s, a, members):
        return PENALTIES[name](model, s, a, cfg, {k: [gens[e] for e in members] for k, gens in streams.items()})

    return penalty
