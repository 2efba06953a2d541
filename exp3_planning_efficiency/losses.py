"""The losses of Experiment 3's networks: the world model's (decoding, latent rollout, coarse steps and
HELM's spectral hinge on the fine transition, from `common.jacobian_utils`: power iteration and hinge)
and the goal energy's quasimetric loss on replay distances."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from common.jacobian_utils import spectral_norm_power_iteration, squared_hinge
from exp3_planning_efficiency.energy import PUSH_CAP, UNREACHED
from exp3_planning_efficiency.env_minigrid import FIRST_AGENT_CODE, NUM_ACTIONS
from exp3_planning_efficiency.world_models import WorldModel


def decode_loss(model: WorldModel, z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Reconstruction loss of observation codes (B, W, H) from latents (B, C, W, H): binary cross-entropy
    of the walls + cross-entropy of the agent's cell and direction."""
    wall_logits, agent_logits = model.decode_logits(z)
    walls = (codes == 1).float()
    agent_dir = (codes.long() - FIRST_AGENT_CODE).clamp_min(0).flatten(1)  # (B, W*H)
    cell = (codes >= FIRST_AGENT_CODE).flatten(1).float().argmax(-1)
    target = agent_dir[torch.arange(len(codes)), cell] * codes[0].numel() + cell
    return F.binary_cross_entropy_with_logits(wall_logits, walls) + F.cross_entropy(agent_logits, target)


def world_model_loss(model: WorldModel, codes: torch.Tensor, actions: torch.Tensor, coarse_codes: torch.Tensor,
                     coarse_actions: torch.Tensor, lambda_spectral: float, spectral_batch: int = 8) -> torch.Tensor:
    """codes (B, L+1, W, H), actions (B, L) -> decoding of every observation, an L-step latent rollout
    (decoded, and matched to the encoded observations) and the spectral hinge; coarse_codes (Bc, k+1, W, H),
    coarse_actions (Bc, k) -> one coarse step over each window (its own batch: the coarse transition
    has one target per window, the fine one k)."""
    B, L1 = codes.shape[:2]
    flat_codes = codes.flatten(0, 1)
    z = model.encode_codes(flat_codes).unflatten(0, (B, L1))
    one_hot = F.one_hot(actions.long(), NUM_ACTIONS).float()
    loss = decode_loss(model, z.flatten(0, 1), flat_codes)
    z_hat = z[:, 0]
    for t in range(actions.shape[1]):
        z_hat = model.step(z_hat, one_hot[:, t])
        loss = loss + decode_loss(model, z_hat, codes[:, t + 1]) + F.mse_loss(z_hat, z[:, t + 1].detach())
    k = model.coarse_stride
    z_start, z_end = model.encode_codes(coarse_codes[:, 0]), model.encode_codes(coarse_codes[:, k])
    macro = F.one_hot(coarse_actions.long(), NUM_ACTIONS).float()
    for head in range(len(model.coarse)):  # the ensemble: same windows, different initial weights
        z_coarse = model.coarse_step(z_start, macro, head)
        loss = loss + decode_loss(model, z_coarse, coarse_codes[:, k]) + F.mse_loss(z_coarse, z_end.detach())
    if lambda_spectral > 0:
        action = one_hot[:spectral_batch, 0]
        sigma = spectral_norm_power_iteration(lambda x: model.step(x, action), z[:spectral_batch, 0])
        loss = loss + lambda_spectral * squared_hinge(sigma).mean()
    return loss


def energy_loss(d: torch.Tensor, target: torch.Tensor, push_weight: float) -> torch.Tensor:
    """Quasimetric loss of distances d (B, N) of pairs with replay distances `target` (B, N) (UNREACHED:
    never connected). A recorded transition between two observations is exactly 1 apart (0 if they
    are equal), so pairs with target <= 1 are fitted both ways; other connected pairs only have the
    hinge d <= target; all pairs get a capped bonus for d."""
    connected = (target != UNREACHED).float()
    error = torch.where(target <= 1, d - target, torch.relu(d - target))
    fit = (error.pow(2) * connected).sum() / connected.sum().clamp_min(1)
    return fit - push_weight * d.clamp(max=PUSH_CAP).mean() / PUSH_CAP
