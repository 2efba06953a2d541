"""Reference measurements of the learned networks on evaluation layouts (they read the true layout:
BFS distances, optimal paths; nothing here feeds back into training or planning).

- `k_step_accuracy`: exactly decoded observations after k open-loop fine steps, and one coarse step
  (its first ensemble member; how often the members agree, and how often they are right when they do).
- `energy_quality`: Spearman correlation of the goal energy with the BFS distance, and its
  monotonicity along BFS-optimal paths (the fraction of steps on which it decreases).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from exp3_planning_efficiency.energy import GoalEnergy
from exp3_planning_efficiency.env_minigrid import NUM_ACTIONS, FastMaze, Replay, goal_observations
from exp3_planning_efficiency.world_models import WorldModel, one_hot_codes


@torch.no_grad()
def k_step_accuracy(model: WorldModel, replay: Replay, ks: list[int], rng: np.random.Generator,
                    num: int = 512) -> dict:
    """Fraction of exactly decoded observations after k fine steps predicted open loop from an encoded
    start (k in ks), and after one coarse step; on the replay's layouts (pass a test replay for unseen ones)."""
    device = next(model.parameters()).device
    length = max(max(ks), model.coarse_stride)
    layout, poses, actions = replay.windows(length, num, rng)
    codes = torch.as_tensor(replay.codes(np.repeat(layout[:, None], length + 1, 1), poses), device=device)
    one_hot = F.one_hot(torch.as_tensor(actions, device=device), NUM_ACTIONS).float()
    z0 = model.encode_codes(codes[:, 0])
    z, out = z0, {}
    for t in range(max(ks)):
        z = model.step(z, one_hot[:, t])
        if t + 1 in ks:
            out[str(t + 1)] = float((model.decode_codes(z) == codes[:, t + 1]).flatten(1).all(1).float().mean())
    k = model.coarse_stride
    heads = torch.stack([model.decode_codes(model.coarse_step(z0, one_hot[:, :k], h))
                         for h in range(len(model.coarse))])
    exact = (heads[0] == codes[:, k]).flatten(1).all(1)
    agreed = (heads == heads[0]).flatten(2).all(2).all(0)
    out["coarse"] = float(exact.float().mean())  # the first ensemble member
    out["coarse_agreement"] = float(agreed.float().mean())  # all members decode the same observation
    out["coarse_when_agreed"] = float(exact[agreed].float().mean()) if agreed.any() else None
    return out


@torch.no_grad()
def energy_quality(energy: GoalEnergy, mazes: list[FastMaze], cell_dists: list[np.ndarray], rng: np.random.Generator,
                   num_goals: int = 100, starts_per_goal: int = 20) -> dict:
    """Spearman (random start poses x goal cells) and monotonicity (along one BFS-optimal path per
    goal, from its first start) on `mazes`."""
    device = next(energy.parameters()).device
    layout = rng.integers(len(mazes), size=num_goals)
    cells = np.array([rng.integers(len(mazes[i].cells)) for i in layout])
    starts = np.stack([rng.integers(mazes[i].num_poses, size=starts_per_goal) for i in layout])
    goal_codes = np.stack([goal_observations(mazes[i], mazes[i].cells[c][None])[0] for i, c in zip(layout, cells)])
    V = energy.values_of_codes(torch.as_tensor(goal_codes, device=device))[0]  # (num_goals, 4, W, H)

    def read(g, codes):
        return GoalEnergy.read(V[g:g + 1], one_hot_codes(torch.as_tensor(codes, device=device))[None])[0]
    predicted = np.concatenate([read(g, mazes[i].codes(mazes[i].poses[s])).cpu().numpy()
                                for g, (i, s) in enumerate(zip(layout, starts))])
    true = np.concatenate([cell_dists[i][s, c] for i, s, c in zip(layout, starts, cells)])
    decreases = []
    for g, (i, s, c) in enumerate(zip(layout, starts[:, 0], cells)):
        e = read(g, mazes[i].codes(mazes[i].poses[optimal_path(mazes[i], cell_dists[i], s, c)])).cpu().numpy()
        decreases.extend(np.diff(e) < 0)
    return {"spearman": float(spearmanr(predicted, true).statistic),
            "monotonicity": float(np.mean(decreases)) if decreases else None,
            "pairs_bfs": true.tolist()[:500], "pairs_energy": predicted.tolist()[:500]}


def optimal_path(maze: FastMaze, cell_dist: np.ndarray, start: int, cell: int) -> np.ndarray:
    """Pose indices along one BFS-optimal path from pose `start` to goal cell `cell` (reference only)."""
    path = [start]
    while cell_dist[path[-1], cell] > 0:
        path.append(maze.next_pose[path[-1]][cell_dist[maze.next_pose[path[-1]], cell].argmin()])
    return np.asarray(path)
