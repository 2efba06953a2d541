"""The local goal energy of Experiment 3: a distance between learned embeddings, no propagation.

`LocalEnergy` embeds every node (cell, facing direction) of an observation's map with a small CNN
over the map's static planes (floor, wall) and the cells' coordinates (as CoordConv), one embedding per
direction, and reads d(x, g) = min over the goal's observations of ||phi(x) - phi(g)||_2 (a latent L2
cost, as in PLDM / HWM). Each embedding sees the walls within RECEPTIVE_RADIUS cells of its node and
nothing further: beyond that it knows only where it is, so across the maze it can learn at best a
warped distance on the coordinates, blind to the walls in between. It is trained with the same replay
losses as the propagated energy (`energy.train_energy`), through the same `values` / `read` interface:
`values` returns the distance of every node to the goal in one pass, so planners use it unchanged.
HF invariance (`hf_noise_sigma` > 0) perturbs its CNN features as it does the propagated energy's.
"""

from __future__ import annotations

import torch
from torch import nn

from exp3_planning_efficiency.energy import AGENT_PLANES, CHANNELS, GoalEnergy
from exp3_planning_efficiency.world_models import conv, one_hot_codes

STATIC_PLANES = slice(0, 2)  # floor, wall: the map without the agent
RECEPTIVE_RADIUS = 2  # two 3x3 convolutions: an embedding sees the 5 x 5 cells around its node
EPS = 1e-8  # inside the square root: a finite gradient where two embeddings coincide


class LocalEnergy(nn.Module):
    train_iterations = None  # nothing propagates

    def __init__(self, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.features = nn.Sequential(conv(2 + 2, hidden), nn.SiLU(), conv(hidden, hidden), nn.SiLU())
        self.embed = conv(hidden, CHANNELS * hidden, kernel=1)

    def node_embeddings(self, x: torch.Tensor, noise: float = 0.0, generator: torch.Generator | None = None):
        """One-hot observations (B, 6, W, H) -> embeddings of every node (B, 4, D, W, H) (the agent's own
        planes are not read); `noise` > 0 perturbs the features (HF, training only)."""
        B, _, W, H = x.shape
        rows = torch.linspace(-1, 1, W, device=x.device)[:, None].expand(W, H)
        cols = torch.linspace(-1, 1, H, device=x.device)[None, :].expand(W, H)
        coords = torch.stack([rows, cols]).expand(B, 2, W, H)
        f = self.features(torch.cat([x[:, STATIC_PLANES], coords], dim=1))
        if noise > 0:
            f = f + noise * f.detach().std() * torch.randn(f.shape, generator=generator, device=f.device)
        return self.embed(f).unflatten(1, (CHANNELS, self.hidden))

    def values(self, x_goal: torch.Tensor, iterations: int | None = None, noise: float = 0.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Goal observations (B, n, 6, W, H) of one layout each -> distances V (B, 4, W, H) of every node
        to the nearest goal observation. `iterations` is ignored: nothing propagates."""
        phi = self.node_embeddings(x_goal[:, 0], noise, generator)  # (B, 4, D, W, H)
        phi_goal = torch.einsum("bncwh,bcewh->bne", x_goal[:, :, AGENT_PLANES], phi)  # (B, n, D)
        diff = phi[:, None] - phi_goal[:, :, None, :, None, None]  # (B, n, 4, D, W, H)
        return (diff.pow(2).sum(3) + EPS).sqrt().amin(1)

    def values_of_codes(self, goal_codes: torch.Tensor, iterations: int | None = None) -> tuple[torch.Tensor, int]:
        """Goal observation codes (B, n, W, H) -> (values (B, 4, W, H), 0 Bellman-Ford sweeps)."""
        with torch.no_grad():
            return self.values(one_hot_codes(goal_codes.flatten(0, 1)).unflatten(0, goal_codes.shape[:2])), 0

    read, read_codes = staticmethod(GoalEnergy.read), staticmethod(GoalEnergy.read_codes)
