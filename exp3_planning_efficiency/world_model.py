"""The learned world model of Experiment 3: a convolutional encoder, fine and coarse transitions and a
decoder, all on a spatial latent (channels x W x H) of the observation.

- `encode(x)`: one-hot observation codes (B, 6, W, H) -> latent z (B, C, W, H) (two 3x3 convolutions).
- `step(z, a)`: fine transition over one action, z + g([z, a]) with the action broadcast over the grid.
- `coarse_step(z, macro, head)`: coarse transition over a macro-action of `coarse_stride` actions at once
  (four convolutions, one dilated: a receptive field of radius 4, as far as 4 actions can move); an
  ensemble of `coarse_heads` such transitions, trained side by side from different initial weights, so
  that a planner can tell where the coarse model is unsure (its members disagree).
- `decode_logits(z)`: per cell a wall logit and 4 agent-direction logits; `decode_codes` snaps them to
  an observation (walls where the logit > 0, the agent at the argmax over cells x directions).

Nothing reads the pose or the walls by hand: the model sees the observation codes
(`env_minigrid.observation_codes`, a cell-wise recoding of MiniGrid's symbolic image) and learns
to move the agent. Convolutions make it the same function everywhere on the grid, which is what lets
it transfer to layouts it never saw. HELM's spectral regularization penalizes the largest singular
value of the fine transition's Jacobian d step / d z above 1 (hinge, power iteration).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import nn

from common.runs import progress
from exp3_planning_efficiency.env_minigrid import FIRST_AGENT_CODE, NUM_ACTIONS, NUM_CODES, Replay


def one_hot_codes(codes: torch.Tensor) -> torch.Tensor:
    """Observation codes (B, W, H) integer -> one-hot planes (B, 6, W, H) float, channels-last in
    memory (the layout in which this CPU's convolutions run ~1.5-3x faster; values are unchanged)."""
    planes = torch.arange(NUM_CODES, dtype=codes.dtype, device=codes.device)[:, None, None]
    return (codes[..., None, :, :] == planes).float().contiguous(memory_format=torch.channels_last)


def conv(cin: int, cout: int, kernel: int = 3, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, padding=dilation * (kernel // 2), dilation=dilation)


class WorldModel(nn.Module):
    def __init__(self, channels: int, hidden: int, coarse_hidden: int, coarse_stride: int, coarse_heads: int = 1):
        super().__init__()
        self.coarse_stride = coarse_stride
        self.encoder = nn.Sequential(conv(NUM_CODES, hidden), nn.SiLU(), conv(hidden, channels))
        self.fine = nn.Sequential(conv(channels + NUM_ACTIONS, hidden), nn.SiLU(), conv(hidden, channels))
        self.coarse = nn.ModuleList(
            nn.Sequential(conv(channels + NUM_ACTIONS * coarse_stride, coarse_hidden), nn.SiLU(),
                          conv(coarse_hidden, coarse_hidden), nn.SiLU(),
                          conv(coarse_hidden, coarse_hidden, dilation=2), nn.SiLU(),
                          conv(coarse_hidden, channels, kernel=1)) for _ in range(coarse_heads))
        self.decoder = conv(channels, 1 + 4, kernel=1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """One-hot observations (B, 6, W, H) -> latents (B, C, W, H)."""
        return self.encoder(x)

    def encode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return self.encode(one_hot_codes(codes))

    @staticmethod
    def _with_actions(z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """z (B, C, W, H) and actions (B, A) one-hot or relaxed -> (B, C + A, W, H): the actions as
        constant planes, channels-last like z (so that the concatenation is channels-last too, which
        makes the next convolution ~1.6x faster, with the same values)."""
        planes = action[..., None, None].expand(*action.shape, *z.shape[-2:])
        return torch.cat([z, planes.contiguous(memory_format=torch.channels_last)], dim=1)

    def step(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """z (B, C, W, H), action (B, 3) one-hot or relaxed -> next latent (B, C, W, H)."""
        return z + self.fine(self._with_actions(z, action))

    def coarse_step(self, z: torch.Tensor, macro: torch.Tensor, head: int = 0) -> torch.Tensor:
        """z (B, C, W, H), macro (B, coarse_stride, 3) one-hot -> latent after the macro-action, by the
        coarse transition `head` (an ensemble member)."""
        return z + self.coarse[head](self._with_actions(z, macro.flatten(1)))

    def decode_logits(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, C, W, H) -> wall logits (B, W, H), agent logits (B, 4 * W * H) (direction-major)."""
        out = self.decoder(z)
        return out[:, 0], out[:, 1:].flatten(1)

    def decode_codes(self, z: torch.Tensor) -> torch.Tensor:
        """The most likely observation codes (B, W, H) uint8 of latents (B, C, W, H)."""
        wall_logits, agent_logits = self.decode_logits(z)
        codes = (wall_logits > 0).to(torch.uint8)
        W, H = codes.shape[-2:]
        best = agent_logits.argmax(-1)
        direction, cell = best // (W * H), best % (W * H)
        codes.view(len(codes), -1)[torch.arange(len(codes)), cell] = (FIRST_AGENT_CODE + direction).to(torch.uint8)
        return codes

    def soft_observation(self, z: torch.Tensor) -> torch.Tensor:
        """A relaxed one-hot observation (B, 6, W, H) of latents (for the gradient planner's energy)."""
        wall_logits, agent_logits = self.decode_logits(z)
        agent = agent_logits.softmax(-1).view(len(z), 4, *z.shape[-2:])
        wall, rest = torch.sigmoid(wall_logits)[:, None], 1 - agent.sum(1, keepdim=True)
        return torch.cat([(1 - wall) * rest, wall * rest, agent], dim=1)


def decode_loss(model: WorldModel, z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Reconstruction loss of observation codes (B, W, H) from latents (B, C, W, H): binary cross-entropy
    of the walls + cross-entropy of the agent's cell and direction."""
    wall_logits, agent_logits = model.decode_logits(z)
    walls = (codes == 1).float()
    agent_dir = (codes.long() - FIRST_AGENT_CODE).clamp_min(0).flatten(1)  # (B, W*H)
    cell = (codes >= FIRST_AGENT_CODE).flatten(1).float().argmax(-1)
    target = agent_dir[torch.arange(len(codes)), cell] * codes[0].numel() + cell
    return F.binary_cross_entropy_with_logits(wall_logits, walls) + F.cross_entropy(agent_logits, target)


def spectral_norm_estimate(model: WorldModel, z: torch.Tensor, action: torch.Tensor, iters: int = 3) -> torch.Tensor:
    """Largest singular value of d step(z, a) / d z per sample (B,), by power iteration (J v by forward-mode
    differentiation, J^T J v by one backward pass); differentiable in the model's parameters through the
    last Jacobian-vector product."""
    z = z.detach()

    def normalize(v):
        return v / v.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None, None]

    def step_and_jvp(x, v):
        with fwAD.dual_level():
            return fwAD.unpack_dual(model.step(fwAD.make_dual(x, v), action))  # step(x), J v

    v = normalize(torch.randn_like(z))
    for _ in range(iters):
        x = z.clone().requires_grad_(True)
        out, Jv = step_and_jvp(x, v)
        v = normalize(torch.autograd.grad(out, x, Jv.detach())[0])
    return step_and_jvp(z, v)[1].flatten(1).norm(dim=1)


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
        sigma = spectral_norm_estimate(model, z[:spectral_batch, 0], one_hot[:spectral_batch, 0])
        loss = loss + lambda_spectral * torch.relu(sigma - 1).pow(2).mean()
    return loss


def optimizer_step(opt, schedule, loss: torch.Tensor, losses: list) -> bool:
    """Record `loss` and take one step on it; a non-finite loss takes no step and returns False
    (the model diverged: training stops and the caller records it)."""
    losses.append(loss.detach())
    if not torch.isfinite(loss):
        return False
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    schedule.step()
    return True


def train_world_model(model: WorldModel, replay: Replay, cfg, rng: np.random.Generator, quiet: bool = False):
    """Adam on `world_model_loss` over random windows of the replay. Returns the loss curve (ending at
    the first non-finite loss if the model diverged)."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg.model_lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.model_train_steps)
    device = next(model.parameters()).device
    length = cfg.model_rollout_steps
    losses = []
    for _ in progress(range(cfg.model_train_steps), quiet, desc="world model", leave=False):
        layout, poses, actions = replay.windows(length, cfg.model_batch_size, rng)
        codes = replay.codes(np.repeat(layout[:, None], length + 1, 1), poses)
        coarse_layout, coarse_poses, coarse_actions = replay.windows(cfg.coarse_stride, cfg.coarse_batch_size, rng)
        coarse_codes = replay.codes(np.repeat(coarse_layout[:, None], cfg.coarse_stride + 1, 1), coarse_poses)
        def tensor(a):
            return torch.as_tensor(a, device=device)
        loss = world_model_loss(model, tensor(codes), tensor(actions), tensor(coarse_codes), tensor(coarse_actions),
                                cfg.lambda_spectral)
        if not optimizer_step(opt, schedule, loss, losses):
            break
    return torch.stack(losses).cpu().numpy()
