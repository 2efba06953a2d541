"""Flat: plain MSE regression of E_theta on E* at points sampled uniformly from the domain."""

from __future__ import annotations

import torch

from exp2_funnel_heatmap.energy_functions import Landscape, energy


def flat_loss(E_x: torch.Tensor, x: torch.Tensor, p: Landscape) -> torch.Tensor:
    """Per-model MSE to E*: E_x (M, B) model energies at x (M, B, 2) -> (M,)."""
    return ((E_x - energy(x, p)) ** 2).mean(-1)
