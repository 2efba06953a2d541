"""The true rugged funnel E*, its gradient, and its exact Gaussian mollification E*_sigma.

    E*(x)       = 0.5 k ||x||^2 + A sum_i (1 - cos(w x_i))                   on [-L, L]^2
    E*_sigma(x) = E_{d ~ N(0, sigma^2 I)} E*(x + d)
                = 0.5 k ||x||^2 + k sigma^2 + A sum_i (1 - exp(-sigma^2 w^2 / 2) cos(w x_i))

(E[cos(w (x + d))] = cos(w x) exp(-sigma^2 w^2 / 2) for Gaussian d; the quadratic gains the variance.)
`sigma = 0` gives E* itself. The global minimum of both is x* = 0 (E*(0) = 0): the quadratic and each
cosine term are minimised there at once. The global basin of E* is, per coordinate, the ripple
period around 0, so "x ends in the global basin" is tested as max_i |x_i| < pi / w.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Landscape:
    """Parameters of E*: domain half-width L, curvature k, ripple amplitude A and frequency w."""

    L: float
    k: float
    A: float
    w: float

    @classmethod
    def from_config(cls, cfg) -> "Landscape":
        return cls(cfg.domain_half_width, cfg.quadratic_k, cfg.ripple_amplitude, cfg.ripple_frequency)

    def ripple_factor(self, sigma: float) -> float:
        """How much of the ripple amplitude survives Gaussian smoothing at `sigma`."""
        return math.exp(-0.5 * (sigma * self.w) ** 2)


def energy(x: torch.Tensor, p: Landscape, sigma: float = 0.0) -> torch.Tensor:
    """E*_sigma at points x (..., 2) -> (...). sigma = 0 is the true energy."""
    quad = 0.5 * p.k * (x ** 2).sum(-1) + p.k * sigma ** 2
    ripple = p.A * (1.0 - p.ripple_factor(sigma) * torch.cos(p.w * x)).sum(-1)
    return quad + ripple


def energy_grad(x: torch.Tensor, p: Landscape, sigma: float = 0.0) -> torch.Tensor:
    """Analytic gradient of E*_sigma, (..., 2) -> (..., 2)."""
    return p.k * x + p.A * p.ripple_factor(sigma) * p.w * torch.sin(p.w * x)


def global_minimum(p: Landscape) -> torch.Tensor:
    """x* (2,): the global minimiser of E* (and of every E*_sigma)."""
    return torch.zeros(2)


def in_global_basin(x: torch.Tensor, p: Landscape) -> torch.Tensor:
    """Bool (...): x (..., 2) lies within half a ripple period of x* in every coordinate."""
    return (x - global_minimum(p).to(x)).abs().amax(-1) < math.pi / p.w


def grid(p: Landscape, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An n x n grid on [-L, L]^2: the 1-D axis (n,) and the points (n, n, 2), [i, j] = (axis[j], axis[i])."""
    axis = torch.linspace(-p.L, p.L, n)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return axis, torch.stack([xx, yy], -1)
