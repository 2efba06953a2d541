"""The energy MLP E_theta: R^2 -> R, the same architecture for Flat and HELM.

Input encoding: random Fourier features [sin(x B), cos(x B)], B ~ N(0, fourier_scale^2), so the
network can represent the ripples (a plain MLP cannot: spectral bias). Then
`num_layers` SiLU layers of width `hidden_dim` and a linear output, rescaled by fixed constants so
the raw output is O(1).

`EnergyEnsemble` holds M independent models with batched weights (one bmm per layer), so the
three seeds' Flat and HELM models, or a whole sweep, train in one loop. Model m is initialised from
its own generator, so its weights do not depend on which other models share the batch.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from common.runs import torch_generator


class EnergyEnsemble(nn.Module):
    """M energy MLPs. forward: x (M, N, 2) -> energies (M, N)."""

    def __init__(self, init_seeds: list[int], num_fourier_features: int, fourier_scale: float,
                 hidden_dim: int, num_layers: int, energy_offset: float, energy_scale: float):
        super().__init__()
        self.energy_offset, self.energy_scale = energy_offset, energy_scale
        dims = [2 * num_fourier_features] + [hidden_dim] * num_layers + [1]
        freqs, weights, biases = [], [[] for _ in dims[1:]], [[] for _ in dims[1:]]
        for seed in init_seeds:
            g = torch_generator(seed, "exp2-init")
            freqs.append(torch.randn(2, num_fourier_features, generator=g) * fourier_scale)
            for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
                bound = 1.0 / math.sqrt(d_in)  # PyTorch's nn.Linear default init
                weights[i].append((torch.rand(d_in, d_out, generator=g) * 2 - 1) * bound)
                biases[i].append((torch.rand(1, d_out, generator=g) * 2 - 1) * bound)
        self.register_buffer("freqs", torch.stack(freqs))  # (M, 2, F), fixed
        self.weights = nn.ParameterList([nn.Parameter(torch.stack(w)) for w in weights])  # (M, d_in, d_out)
        self.biases = nn.ParameterList([nn.Parameter(torch.stack(b)) for b in biases])  # (M, 1, d_out)

    def forward(self, x_MxNx2: torch.Tensor, models: torch.Tensor | None = None) -> torch.Tensor:
        """Energies (M, N); with `models` (K,) indices, x is (K, N, 2) for those models only."""
        pick = (lambda t: t) if models is None else (lambda t: t[models])
        proj = torch.bmm(x_MxNx2, pick(self.freqs))
        h = torch.cat([torch.sin(proj), torch.cos(proj)], -1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(pick(b), h, pick(w))
            if i < last:
                h = nn.functional.silu(h)
        return h.squeeze(-1) * self.energy_scale + self.energy_offset

    def grad(self, x_MxNx2: torch.Tensor) -> torch.Tensor:
        """dE/dx of every model at its own points, (M, N, 2) (models are independent, so the
        gradient of the summed energy is each point's own gradient)."""
        with torch.enable_grad():
            x = x_MxNx2.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self(x).sum(), x)
        return g

    def slice_state(self, m: int) -> dict:
        """Model m's tensors (for its own checkpoint)."""
        return {k: v[m].clone() for k, v in self.state_dict().items()}

    def load_slice(self, m: int, state: dict) -> None:
        with torch.no_grad():
            for k, v in self.state_dict().items():
                v[m].copy_(state[k])
