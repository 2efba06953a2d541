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
value of the fine transition's Jacobian d step / d z above 1 (hinge, power iteration; `losses.py`).
"""

from __future__ import annotations

import torch
from torch import nn

from exp3_planning_efficiency.env_minigrid import FIRST_AGENT_CODE, NUM_ACTIONS, NUM_CODES


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
