"""The goal energy of Experiment 3: a learned quasimetric d(observation, goal observation) >= 0.

`GoalEnergy` embeds an observation (one-hot codes plus two fixed coordinate planes) with a small
strided CNN and an MLP, and measures d = ||h(s) - h(g)||_2 + max_i relu(f_i(s) - f_i(g)) between the
embeddings (a Metric Residual Network, Liu et al. 2023: d(x, x) = 0 and the triangle inequality hold
for any weights; the max term makes it asymmetric, as turning costs make this maze's distances).

Training uses replay only: the target of a pair of observations of one layout is their temporal
distance in the agent's own experience, the shortest path in the graph of the transitions it recorded
there (`replay_distances`); observations are identified by equality, never by the layout.
HELM's HF invariance (`hf_noise_sigma` > 0) mollifies the energy: the CNN features get Gaussian
noise of `hf_noise_sigma` x their standard deviation during training, so the energy is fitted as
its Gaussian smoothing and features finer than the noise are suppressed.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path
from torch import nn

from common.runs import progress
from exp3_planning_efficiency.env_minigrid import NUM_CODES, Replay
from exp3_planning_efficiency.world_model import one_hot_codes, optimizer_step

UNREACHED = 255  # replay distance of pairs the replay never connects (stored as uint8)


class GoalEnergy(nn.Module):
    def __init__(self, width: int, height: int, hidden: int, sym_dim: int = 32, asym_dim: int = 8):
        super().__init__()
        self.sym_dim = sym_dim
        self.features = nn.Sequential(nn.Conv2d(NUM_CODES + 2, 16, 3, padding=1), nn.SiLU(),
                                      nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.SiLU(),
                                      nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.SiLU(), nn.Flatten())
        size = 32 * ((width + 3) // 4) * ((height + 3) // 4)
        self.head = nn.Sequential(nn.Linear(size, hidden), nn.SiLU(), nn.Linear(hidden, sym_dim + asym_dim))
        xs, ys = torch.meshgrid(torch.linspace(-1, 1, width), torch.linspace(-1, 1, height), indexing="ij")
        self.register_buffer("coords", torch.stack([xs, ys]))

    def embed(self, x: torch.Tensor, noise: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """One-hot (or relaxed) observations (B, 6, W, H) -> embeddings (B, sym_dim + asym_dim); `noise`
        > 0 perturbs the CNN features by noise x their std (HF invariance, training only)."""
        f = self.features(torch.cat([x, self.coords.expand(len(x), -1, -1, -1)], dim=1))
        if noise > 0:
            f = f + noise * f.detach().std() * torch.randn(f.shape, generator=generator, device=f.device)
        return self.head(f)

    def embed_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return self.embed(one_hot_codes(codes))

    def distance(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Quasimetric between embeddings (broadcasting over leading dims) -> (...)."""
        diff = u - v
        symmetric = torch.sqrt(diff[..., :self.sym_dim].pow(2).sum(-1) + 1e-8)
        return symmetric + torch.relu(-diff[..., self.sym_dim:]).amax(-1)

    def to_goal(self, embedding: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """Energy of embeddings (B, ..., E) w.r.t. a goal cell given by the embeddings of its 4 arrival
        observations (B, 4, E): the smallest distance to any of them -> (B, ...)."""
        goal = goal.reshape(goal.shape[0], *([1] * (embedding.dim() - 2)), *goal.shape[1:])
        return self.distance(embedding.unsqueeze(-2), goal).amin(-1)


def replay_distances(replay: Replay) -> np.ndarray:
    """Temporal distances in the agent's own experience, per layout: shortest-path lengths in the
    directed graph of recorded transitions. -> (layouts, P, P) uint8, UNREACHED where never connected
    (P = the largest number of distinct observations a layout can have)."""
    P = replay.pose_table.shape[1]
    out = np.full((len(replay.mazes), P, P), UNREACHED, dtype=np.uint8)
    for i in range(len(replay.mazes)):
        walks = replay.poses[replay.layout == i]
        src, dst = walks[:, :-1].reshape(-1), walks[:, 1:].reshape(-1)
        graph = csr_matrix((np.ones(src.size), (src, dst)), shape=(P, P))
        sources = np.unique(walks)
        d = shortest_path(graph, method="D", unweighted=True, indices=sources)
        out[i, sources] = np.where(np.isfinite(d), np.minimum(d, UNREACHED - 1), UNREACHED)
    return out


def energy_loss(energy: GoalEnergy, x_start: torch.Tensor, x_goal: torch.Tensor, target: torch.Tensor,
                noise: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Regression of d(start, goal) on temporal distances `target` (B,), short ones weighted more."""
    d = energy.distance(energy.embed(x_start, noise, generator), energy.embed(x_goal, noise, generator))
    return (F.smooth_l1_loss(d, target, reduction="none") / (1 + target).sqrt()).mean()


def train_energy(energy: GoalEnergy, replay: Replay, cfg, rng: np.random.Generator, generator: torch.Generator,
                 quiet: bool = False) -> np.ndarray:
    """Fit the energy to replay distances between observations of the same layout. Returns the losses."""
    device = next(energy.parameters()).device
    distances = replay_distances(replay)
    visited = [np.unique(replay.poses[replay.layout == i]) for i in range(len(replay.mazes))]
    opt = torch.optim.Adam(energy.parameters(), lr=cfg.energy_lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.energy_train_steps)
    losses = []
    for _ in progress(range(cfg.energy_train_steps), quiet, desc="goal energy", leave=False):
        layout, start, goal = sample_connected_pairs(distances, visited, cfg.energy_batch_size, rng)
        codes = torch.as_tensor(replay.codes(np.stack([layout, layout]), np.stack([start, goal])), device=device)
        target = torch.as_tensor(distances[layout, start, goal], dtype=torch.float32, device=device)
        loss = energy_loss(energy, one_hot_codes(codes[0]), one_hot_codes(codes[1]), target, cfg.hf_noise_sigma,
                           generator)
        if not optimizer_step(opt, schedule, loss, losses):
            break
    return torch.stack(losses).cpu().numpy()


def sample_connected_pairs(distances: np.ndarray, visited: list[np.ndarray], batch: int, rng: np.random.Generator):
    """`batch` (layout, start, goal) index triples of visited observations whose replay distance is
    known (rejection sampling)."""
    counts = np.array([len(v) for v in visited])
    table = np.stack([np.pad(v, (0, counts.max() - len(v))) for v in visited])  # (layouts, max visited)
    parts = []
    while sum(len(p[0]) for p in parts) < batch:
        layout = rng.integers(len(visited), size=batch)
        start, goal = table[layout, rng.integers(counts[layout])], table[layout, rng.integers(counts[layout])]
        keep = distances[layout, start, goal] != UNREACHED
        parts.append((layout[keep], start[keep], goal[keep]))
    return tuple(np.concatenate(column)[:batch] for column in zip(*parts))
