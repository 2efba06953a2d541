"""Prediction accuracy of the learned models on the test trajectories (normalized units)."""

from __future__ import annotations

import numpy as np
import torch

from exp1_spectral_cliff.models import EnsembleStepModel, rollout


@torch.no_grad()
def model_rmse(model: EnsembleStepModel, datasets: dict, seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """1-step (teacher-forced, every test transition) and 10-step open-loop RMSE per member. -> 2 x (E,)."""
    states = torch.stack([datasets[s].test_states for s in seeds]).to(model.device)  # (E, N, L+1, 3)
    actions = torch.stack([datasets[s].test_actions for s in seeds]).to(model.device)
    E, N, L = actions.shape[:3]
    pred = model(states[:, :, :-1].reshape(E, -1, 3), actions.reshape(E, -1, 3))
    rmse1 = (pred - states[:, :, 1:].reshape(E, -1, 3)).pow(2).mean(dim=(1, 2)).sqrt()
    starts = torch.arange(0, L - 9, 10, device=model.device)
    s0 = states[:, :, starts].reshape(E, -1, 3)
    windows = actions[:, :, starts[:, None] + torch.arange(10, device=model.device)].reshape(E, -1, 10, 3)
    final = rollout(model, s0, windows)[:, :, -1]
    rmse10 = (final - states[:, :, starts + 10].reshape(E, -1, 3)).pow(2).mean(dim=(1, 2)).sqrt()
    return rmse1.cpu().numpy(), rmse10.cpu().numpy()
