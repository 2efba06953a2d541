"""World model (encoder, fine and coarse latent transitions, decoder) and the goal energy.

- `WorldModel.encode_images`: the real observation -> agent pose read off the grid (one-hot x, y,
  dir; the maze layout is fixed, so the pose is the whole state) -> MLP -> latent z (latent_dim).
- `WorldModel.step(z, a)`: fine transition z' = z + g([z, a]), a a one-hot (or relaxed) action.
- `WorldModel.coarse_step(z, macro)`: coarse transition over `coarse_stride` actions at once.
- `GoalEnergy(z, g)`: a quasimetric distance head (a Metric Residual Network, so d(x, x) = 0 and
  the triangle inequality hold by construction),
  trained on frozen latents to follow temporal distance: the shortest-path length between two
  observed states in the graph of the agent's recorded transitions (the fixed point of Quasimetric
  RL's constraints d(s, s') <= 1 per transition with far pairs pushed apart, computed exactly by BFS
  instead of by gradient descent; a first QRL-style head trained by gradient descent reached only
  61 % greedy success at T = 50 with the true dynamics here, this one 98 %). A funnel with no local minima when exact.
  HELM's HF invariance (mollification) trains it on noisy latents (`hf_noise_sigma` x latent std).

HELM's spectral regularization (`lambda_spectral`) penalizes the fine transition's per-step Jacobian.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path
from scipy.stats import spearmanr
from torch import nn

from common.jacobian_utils import batch_jacobian, spectral_hinge_penalty
from common.runs import progress
from exp3_planning_efficiency.env_minigrid import NUM_ACTIONS, FastMaze, poses_from_images


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim), nn.SiLU(),
                         nn.Linear(hidden_dim, out_dim))


class WorldModel(nn.Module):
    def __init__(self, width: int, height: int, latent_dim: int, hidden_dim: int, coarse_stride: int):
        super().__init__()
        self.width, self.height, self.coarse_stride = width, height, coarse_stride
        self.encoder = mlp(width + height + 4, hidden_dim, latent_dim)
        self.fine = mlp(latent_dim + NUM_ACTIONS, hidden_dim, latent_dim)
        self.coarse = mlp(latent_dim + NUM_ACTIONS * coarse_stride, hidden_dim, latent_dim)
        self.decoder = mlp(latent_dim, hidden_dim, width + height + 4)

    def pose_features(self, poses: torch.Tensor) -> torch.Tensor:
        """poses (..., 3) long (x, y, dir) -> concatenated one-hots (..., W + H + 4)."""
        return torch.cat([F.one_hot(poses[..., 0], self.width), F.one_hot(poses[..., 1], self.height),
                          F.one_hot(poses[..., 2], 4)], dim=-1).float()

    def encode_poses(self, poses: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.pose_features(poses))

    def encode_images(self, images: np.ndarray) -> torch.Tensor:
        """Observation images (N, W, H, 3) -> latents (N, latent_dim)."""
        device = next(self.parameters()).device
        return self.encode_poses(torch.as_tensor(poses_from_images(images), device=device))

    def step(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """z (..., D), action (..., 3) one-hot or relaxed -> next latent (..., D)."""
        return z + self.fine(torch.cat([z, action], dim=-1))

    def coarse_step(self, z: torch.Tensor, macro: torch.Tensor) -> torch.Tensor:
        """z (..., D), macro (..., coarse_stride, 3) -> latent after the macro-action (..., D)."""
        return z + self.coarse(torch.cat([z, macro.flatten(-2)], dim=-1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Most likely pose (..., 3) of latents z (..., D)."""
        logits = self.decoder(z)
        parts = logits.split([self.width, self.height, 4], dim=-1)
        return torch.stack([p.argmax(-1) for p in parts], dim=-1)

    def pose_loss(self, z: torch.Tensor, poses: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of decoding the pose (x, y, dir) from z."""
        parts = self.decoder(z).split([self.width, self.height, 4], dim=-1)
        return sum(F.cross_entropy(p.flatten(0, -2), poses[..., i].flatten()) for i, p in enumerate(parts))


class GoalEnergy(nn.Module):
    """Quasimetric d(z, g) >= 0 on world-model latents: a Metric Residual Network (Liu et al., 2023).

    d = ||h(z) - h(g)||_2 + max_i relu(f_i(z) - f_i(g)): a Euclidean part plus an asymmetric part
    (turning costs make this maze's distances asymmetric). d(x, x) = 0 and the triangle inequality
    hold for any weights, so training only shapes which quasimetric it is. (An Interval Quasimetric
    Embedding fit as well here but made CEM's 15,000-sample energy evaluations ~10x slower.)
    """

    def __init__(self, latent_dim: int, hidden_dim: int, sym_dim: int = 64, asym_dim: int = 16):
        super().__init__()
        self.sym_dim = sym_dim
        self.net = mlp(latent_dim, hidden_dim, sym_dim + asym_dim)

    def embed(self, z: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., sym_dim + asym_dim)."""
        return self.net(z)

    def distance(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Distance between embeddings (broadcasting over leading dims) -> (...)."""
        diff = u - v
        symmetric = torch.sqrt(diff[..., :self.sym_dim].pow(2).sum(-1) + 1e-8)
        return symmetric + torch.relu(-diff[..., self.sym_dim:]).amax(-1)

    def forward(self, z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.distance(self.embed(z), self.embed(g))

    def embed_goal(self, z_goal: torch.Tensor) -> torch.Tensor:
        """Latents of the goal observations (B, 4, D) (agent on the goal cell, 4 dirs) -> (B, 4, E)."""
        return self.embed(z_goal)

    def to_goal(self, z: torch.Tensor, goal_embedding: torch.Tensor) -> torch.Tensor:
        """Energy of latents z (B, ..., D) w.r.t. goal cells embedded from their 4 arrival poses
        (B, 4, E): min over the 4 directions -> (B, ...)."""
        ez = self.embed(z).unsqueeze(-2)  # (B, ..., 1, E)
        eg = goal_embedding.reshape(goal_embedding.shape[0], *([1] * (z.dim() - 2)), *goal_embedding.shape[1:])
        return self.distance(ez, eg).amin(-1)


class SnappedModel:
    """The world model restricted to encoded states ("snapping"), tabulated once per model.

    Snapping projects every predicted latent onto an encoded state: decode the most likely pose,
    re-encode it. A snapped rollout from pose p therefore visits decode(step(encode(p), a)), so the
    learned dynamics on encoded states is a table over the W x H x 4 poses the decoder can name (walls
    included; nothing comes from the environment). Planners with discrete actions (HELM, CEM) use
    it: the same model as snapping after every network call, ~100x faster on CPU; "latents" are pose
    ids, and a lookup counts as one model evaluation, like the call it replaces.
    """

    def __init__(self, model: WorldModel):
        W, H, k = model.width, model.height, model.coarse_stride
        device = next(model.parameters()).device
        grid = torch.stack(torch.meshgrid(torch.arange(W), torch.arange(H), torch.arange(4), indexing="ij"), -1)
        self.poses = grid.reshape(-1, 3).to(device)  # pose id = (x * H + y) * 4 + dir
        self.height, self.coarse_stride = H, k
        macros = torch.tensor(list(itertools.product(range(NUM_ACTIONS), repeat=k)), device=device)
        self.macro_weights = NUM_ACTIONS ** torch.arange(k - 1, -1, -1, device=device)
        with torch.no_grad():
            self.latents = model.encode_poses(self.poses)  # (P, D)
            P = len(self.poses)
            actions = torch.eye(NUM_ACTIONS, device=device).expand(P, NUM_ACTIONS, NUM_ACTIONS)
            self.fine_table = self.ids(model.decode(model.step(self.latents[:, None].expand(-1, NUM_ACTIONS, -1), actions)))
            macro_hot = F.one_hot(macros, NUM_ACTIONS).float().expand(P, -1, -1, -1)
            self.coarse_table = self.ids(model.decode(model.coarse_step(
                self.latents[:, None].expand(-1, len(macros), -1), macro_hot)))  # (P, 3^k)
            self.snap_table = self.ids(model.decode(self.latents))

    def ids(self, poses: torch.Tensor) -> torch.Tensor:
        return (poses[..., 0] * self.height + poses[..., 1]) * 4 + poses[..., 2]

    def encode_images(self, images: np.ndarray) -> torch.Tensor:
        """Observation images (N, W, H, 3) -> snapped pose ids (N,)."""
        poses = torch.as_tensor(poses_from_images(images), device=self.poses.device)
        return self.snap_table[self.ids(poses)]

    def step(self, ids: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """ids (...), one-hot action (..., 3) -> next ids (...)."""
        return self.fine_table[ids, action.argmax(-1)]

    def coarse_step(self, ids: torch.Tensor, macro: torch.Tensor) -> torch.Tensor:
        """ids (...), one-hot macro-action (..., k, 3) -> ids after the macro (...)."""
        return self.coarse_table[ids, (macro.argmax(-1) * self.macro_weights).sum(-1)]


class SnappedEnergy:
    """The goal energy on snapped states: per goal, a table of energies of every pose id."""

    def __init__(self, energy: GoalEnergy, snapped: SnappedModel):
        with torch.no_grad():
            self.energy, self.embedded = energy, energy.embed(snapped.latents)  # (P, E)

    def embed_goal(self, goal_ids: torch.Tensor) -> torch.Tensor:
        """Snapped ids of the goal observations (B, 4) -> energy of every pose id (B, P), min over dirs."""
        with torch.no_grad():
            goal = self.embedded[goal_ids]  # (B, 4, E)
            return self.energy.distance(self.embedded[None, None], goal[:, :, None]).amin(1)

    def to_goal(self, ids: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """ids (B, ...) -> energies (B, ...)."""
        return table.gather(1, ids.reshape(ids.shape[0], -1)).reshape(ids.shape)


# ----------------------------------------------------------------------------------------------
# training


def sample_windows(walk_poses: np.ndarray, walk_actions: np.ndarray, length: int, batch: int,
                   rng: np.random.Generator):
    """Random windows of `length` actions: pose indices (batch, length + 1), actions (batch, length)."""
    rows = rng.integers(walk_poses.shape[0], size=batch)
    starts = rng.integers(walk_actions.shape[1] - length + 1, size=batch)
    offsets = np.arange(length + 1)
    poses = walk_poses[rows[:, None], starts[:, None] + offsets]
    return poses, walk_actions[rows[:, None], starts[:, None] + offsets[:-1]]


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


def world_model_loss(model: WorldModel, poses: torch.Tensor, actions: torch.Tensor, lambda_spectral: float):
    """poses (B, L+1, 3), actions (B, L) -> scalar loss: decoding, L-step latent rollout, coarse step, hinge."""
    z = model.encode_poses(poses)
    target = z.detach()
    one_hot = F.one_hot(actions, NUM_ACTIONS).float()
    predicted, z_hat = [], z[:, 0]
    for t in range(actions.shape[1]):
        z_hat = model.step(z_hat, one_hot[:, t])
        predicted.append(z_hat)
    predicted = torch.stack(predicted, dim=1)
    k = model.coarse_stride
    z_coarse = model.coarse_step(z[:, 0], one_hot[:, :k])
    loss = (model.pose_loss(z, poses) + model.pose_loss(predicted, poses[:, 1:]) + model.pose_loss(z_coarse, poses[:, k])
            + F.mse_loss(predicted, target[:, 1:]) + F.mse_loss(z_coarse, target[:, k]))
    if lambda_spectral > 0:
        J = batch_jacobian(model.step, z[:64, 0], one_hot[:64, 0], argnums=0, create_graph=True)
        loss = loss + lambda_spectral * spectral_hinge_penalty(J)
    return loss


def train_world_model(model: WorldModel, maze: FastMaze, walk_poses, walk_actions, cfg, rng, quiet=False):
    """Adam on `world_model_loss` over random windows of the random walks. Returns the loss curve
    (ending with the first non-finite loss, where training stops, if the model diverged)."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg.model_lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.model_train_steps)
    device = next(model.parameters()).device
    pose_table = torch.as_tensor(maze.poses, device=device)
    length = max(cfg.model_rollout_steps, cfg.coarse_stride)
    losses = []
    for _ in progress(range(cfg.model_train_steps), quiet, desc="world model", leave=False):
        idx, actions = sample_windows(walk_poses, walk_actions, length, cfg.model_batch_size, rng)
        try:
            loss = world_model_loss(model, pose_table[torch.as_tensor(idx, device=device)],
                                    torch.as_tensor(actions, device=device), cfg.lambda_spectral)
        except torch.linalg.LinAlgError:  # SVD of a non-finite Jacobian: the model has diverged
            loss = torch.tensor(float("nan"))
        if not optimizer_step(opt, schedule, loss, losses):
            break
    return torch.stack(losses).cpu().numpy()


def replay_graph_distances(walk_poses: np.ndarray, num_states: int) -> np.ndarray:
    """Temporal distances in the agent's own experience: shortest-path lengths (BFS) in the directed
    graph of observed transitions. walk_poses (N, L+1) state ids -> (num_states, num_states), inf if
    never connected. States are identified by their exact observation (here: its pose id); this uses
    only collected data, never the environment's layout.
    """
    src, dst = walk_poses[:, :-1].reshape(-1), walk_poses[:, 1:].reshape(-1)
    graph = csr_matrix((np.ones(src.size), (src, dst)), shape=(num_states, num_states))
    return shortest_path(graph, method="D", unweighted=True)


def energy_loss(energy: GoalEnergy, z_start: torch.Tensor, z_goal: torch.Tensor, target: torch.Tensor,
                noise: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Regression of d(z_start, z_goal) on temporal distances `target` (B,), short ones weighted more.

    `noise` > 0 is HELM's HF invariance in its mollified form: inputs get N(0, noise^2) perturbations,
    so the optimum is the Gaussian-smoothed distance and sub-noise-scale features are suppressed.
    """
    def jitter(z):
        return z + noise * torch.randn(z.shape, generator=generator, device=z.device) if noise > 0 else z

    d = energy(jitter(z_start), jitter(z_goal))
    return (F.smooth_l1_loss(d, target, reduction="none") / (1 + target).sqrt()).mean()


def train_energy(energy: GoalEnergy, model: WorldModel, maze: FastMaze, walk_poses, cfg, rng,
                 generator: torch.Generator, quiet=False):
    """Fit the goal energy on frozen encoder latents to replay-graph temporal distances. Returns losses."""
    device = next(energy.parameters()).device
    with torch.no_grad():
        all_z = model.encode_poses(torch.as_tensor(maze.poses, device=device))
    distances = torch.as_tensor(replay_graph_distances(walk_poses, maze.num_poses), dtype=torch.float32, device=device)
    connected = torch.nonzero(torch.isfinite(distances))  # (P, 2) pairs with a known temporal distance
    noise = float(cfg.hf_noise_sigma * all_z.std(0).mean())
    opt = torch.optim.Adam(energy.parameters(), lr=cfg.energy_lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.energy_train_steps)
    losses = []
    for _ in progress(range(cfg.energy_train_steps), quiet, desc="goal energy", leave=False):
        pairs = connected[torch.as_tensor(rng.integers(len(connected), size=cfg.energy_batch_size), device=device)]
        loss = energy_loss(energy, all_z[pairs[:, 0]], all_z[pairs[:, 1]], distances[pairs[:, 0], pairs[:, 1]],
                           noise, generator)
        if not optimizer_step(opt, schedule, loss, losses):
            break
    return torch.stack(losses).cpu().numpy()


# ----------------------------------------------------------------------------------------------
# quality


@torch.no_grad()
def k_step_accuracy(model: WorldModel, maze: FastMaze, walk_poses, walk_actions, ks, rng, num: int = 2048) -> dict:
    """Exact-pose accuracy of decoding the fine model's k-step prediction from an encoded start."""
    device = next(model.parameters()).device
    idx, actions = sample_windows(walk_poses, walk_actions, max(ks), num, rng)
    poses = torch.as_tensor(maze.poses[idx], device=device)
    one_hot = F.one_hot(torch.as_tensor(actions, device=device), NUM_ACTIONS).float()
    z, out = model.encode_poses(poses[:, 0]), {}
    for t in range(max(ks)):
        z = model.step(z, one_hot[:, t])
        if t + 1 in ks:
            out[t + 1] = float((model.decode(z) == poses[:, t + 1]).all(-1).float().mean())
    k = model.coarse_stride
    z_coarse = model.coarse_step(model.encode_poses(poses[:, 0]), one_hot[:, :k])
    out["coarse"] = float((model.decode(z_coarse) == poses[:, k]).all(-1).float().mean())
    return out


@torch.no_grad()
def energy_vs_bfs(energy: GoalEnergy, model: WorldModel, maze: FastMaze, cell_dist: np.ndarray, rng,
                  num: int = 4000) -> dict:
    """Spearman correlation between the goal energy and the BFS distance, on random (pose, cell) pairs."""
    device = next(model.parameters()).device
    starts = rng.integers(maze.num_poses, size=num)
    cells = rng.integers(len(maze.cells), size=num)
    z = model.encode_poses(torch.as_tensor(maze.poses[starts], device=device))
    goal_poses = np.concatenate([np.repeat(maze.cells[cells][:, None], 4, 1), np.tile(np.arange(4), (num, 1))[..., None]], -1)
    goal_embedding = energy.embed(model.encode_poses(torch.as_tensor(goal_poses, device=device)))
    predicted = energy.to_goal(z, goal_embedding).cpu().numpy()
    true = cell_dist[starts, cells]
    return {"spearman": float(spearmanr(predicted, true).statistic),
            "pairs_bfs": true.tolist()[:500], "pairs_energy": predicted.tolist()[:500]}
