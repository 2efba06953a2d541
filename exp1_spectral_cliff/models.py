"""Residual MLP world model s' = s + g([s, a]) as an ensemble of independent members.

E members (seeds, or lambda values of a sweep) are stored as stacked weights (E, d_in, d_out) and run
with one batched matmul per layer, so training 3 seeds costs about one model's Python overhead.
Members never interact: row e of every output depends only on member e's weights and inputs, so
the gradient of the summed loss gives each member exactly its own gradient.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from common.runs import torch_generator

STATE_DIM = ACTION_DIM = 3


class EnsembleStepModel(nn.Module):
    """E residual tanh MLPs. forward: s (E, B, 3), a (E, B, 3) -> (E, B, 3)."""

    def __init__(self, init_seeds: list[int], hidden_dim: int = 128, num_layers: int = 2):
        super().__init__()
        self.hidden_dim, self.num_layers = hidden_dim, num_layers
        dims = [STATE_DIM + ACTION_DIM] + [hidden_dim] * num_layers + [STATE_DIM]
        weights, biases = [], []
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            # nn.Linear's default init, drawn per member from the member's own generator, so a
            # member's weights do not depend on which other members it is trained with.
            bound = 1.0 / math.sqrt(d_in)
            w = torch.stack([_uniform((d_in, d_out), bound, s, len(weights)) for s in init_seeds])
            b = torch.stack([_uniform((1, d_out), bound, s, len(weights) + 100) for s in init_seeds])
            weights.append(nn.Parameter(w))
            biases.append(nn.Parameter(b))
        self.weights, self.biases = nn.ParameterList(weights), nn.ParameterList(biases)

    @property
    def device(self) -> torch.device:
        return self.weights[0].device

    @property
    def num_members(self) -> int:
        return self.weights[0].shape[0]

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return residual_mlp(self.weights, self.biases, s, a)

    def flat_step(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """The step on members' batches laid end to end. s (E*B, 3), a (E*B, 3) -> (E*B, 3).

        This is the `step(s_BxD, a_BxA)` form `common.jacobian_utils` expects (examples independent)."""
        return _flat(self, s, a)

    def member_state(self, e: int) -> dict:
        """State dict of member e alone (a 1-member ensemble)."""
        return {k: v[e:e + 1].detach().cpu().clone() for k, v in self.state_dict().items()}

    @classmethod
    def from_member_states(cls, states: list[dict], hidden_dim: int, num_layers: int) -> "EnsembleStepModel":
        """Stack saved 1-member states into one ensemble (for batched analysis)."""
        model = cls([0] * len(states), hidden_dim, num_layers)
        model.load_state_dict({k: torch.cat([s[k].cpu() for s in states]) for k in states[0]})
        return model


class MemberSubset:
    """Members `idx` of an ensemble, as a step model differentiable in the ensemble's weights (a
    penalty computed on the members that use it only). Same call and `flat_step` as the ensemble."""

    def __init__(self, model: EnsembleStepModel, idx: torch.Tensor):
        self.weights = [w[idx] for w in model.weights]
        self.biases = [b[idx] for b in model.biases]
        self.num_members = len(idx)

    def __call__(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return residual_mlp(self.weights, self.biases, s, a)

    def flat_step(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return _flat(self, s, a)


def residual_mlp(weights, biases, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """s + g([s, a]) with stacked weights (E, d_in, d_out), tanh hidden layers. s, a (E, B, 3) -> (E, B, 3)."""
    h = torch.cat([s, a], dim=-1)
    for i, (w, b) in enumerate(zip(weights, biases)):
        h = torch.baddbmm(b, h, w)
        if i < len(weights) - 1:
            h = torch.tanh(h)
    return s + h


def _flat(model, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    E = model.num_members
    return model(s.reshape(E, -1, STATE_DIM), a.reshape(E, -1, ACTION_DIM)).reshape(-1, STATE_DIM)


def _uniform(shape, bound: float, seed: int, layer: int) -> torch.Tensor:
    gen = torch_generator(seed, "exp1-init", layer)
    return (2 * torch.rand(shape, generator=gen) - 1) * bound


def rollout(model: EnsembleStepModel, s0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Open-loop rollout. s0 (E, B, 3), actions (E, B, T, 3) -> states (E, B, T+1, 3)."""
    states = [s0]
    for t in range(actions.shape[2]):
        states.append(model(states[-1], actions[:, :, t]))
    return torch.stack(states, dim=2)
