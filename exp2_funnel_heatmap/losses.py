"""The losses of the energy models, per model of a batch.

Flat (`flat_loss`): plain MSE regression of E_theta on E* at points sampled uniformly from the domain.
HELM: the fit plus HF invariance (mollification), in one of two forms (`hf_form`).

- `consistency` (the seed's wording): MSE to E*(x) + lambda_hf * E_delta (E(x + delta) - E(x))^2.
  It penalises every variation of E_theta at scale sigma, the funnel's slope as much as the ripples.
- `mollified_target`: (E(x) - mean_k E*(x + delta_k))^2, regression on noise-perturbed targets
  averaged over K draws (`hf_target_draws`; a Monte-Carlo estimate of E*_sigma(x) whose variance
  falls like 1/K). Its exact minimiser over functions is E_delta E*(x + delta) = E*_sigma, the
  Gaussian mollification, for every K, so it removes features below sigma like a convolution and
  keeps the funnel; K only changes how noisy the regression targets are.
delta ~ N(0, sigma^2 I) in both.
"""

from __future__ import annotations

import torch

from exp2_funnel_heatmap.energy_functions import Landscape, energy


def flat_loss(E_x: torch.Tensor, x: torch.Tensor, p: Landscape) -> torch.Tensor:
    """Per-model MSE to E*: E_x (M, B) model energies at x (M, B, 2) -> (M,)."""
    return ((E_x - energy(x, p)) ** 2).mean(-1)


def mollified_target_loss(E_x: torch.Tensor, x: torch.Tensor, delta: torch.Tensor, p: Landscape) -> torch.Tensor:
    """Per-model mean over the batch of (E(x) - mean_k E*(x + delta_k))^2: E_x (M, B), x (M, B, 2),
    delta (M, B, K, 2) -> (M,)."""
    return ((E_x - energy(x[:, :, None] + delta, p).mean(-1)) ** 2).mean(-1)


def consistency_loss(E_x: torch.Tensor, E_x_delta: torch.Tensor) -> torch.Tensor:
    """Per-model E_delta (E(x + delta) - E(x))^2: both (M, B) -> (M,)."""
    return ((E_x_delta - E_x) ** 2).mean(-1)
