"""Reference measurements of the learned networks on evaluation layouts (they read the true layout:
BFS distances, optimal paths; nothing here feeds back into training or planning).

- `k_step_accuracy`: exactly decoded observations after k open-loop fine steps, and one coarse step.
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
from exp3_planning_efficiency.world_model import WorldModel


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
    out["coarse"] = float((model.decode_codes(model.coarse_step(z0, one_hot[:, :k])) == codes[:, k]
                           ).flatten(1).all(1).float().mean())
    return out


@torch.no_grad()
def energy_quality(energy: GoalEnergy, mazes: list[FastMaze], cell_dists: list[np.ndarray], rng: np.random.Generator,
                   num: int = 2000, num_paths: int = 50) -> dict:
    """Spearman (random pose / goal cell pairs) and monotonicity (along BFS-optimal paths) on `mazes`."""
    device = next(energy.parameters()).device
    layout = rng.integers(len(mazes), size=num)
    starts = np.array([rng.integers(mazes[l].num_poses) for l in layout])
    cells = np.array([rng.integers(len(mazes[l].cells)) for l in layout])
    goal_codes = np.stack([goal_observations(mazes[l], mazes[l].cells[c][None])[0] for l, c in zip(layout, cells)])
    start_codes = np.stack([mazes[l].codes(mazes[l].poses[s][None])[0] for l, s in zip(layout, starts)])
    predicted = energy.to_goal(energy.embed_codes(torch.as_tensor(start_codes, device=device)),
                               energy.embed_codes(torch.as_tensor(goal_codes, device=device).flatten(0, 1)
                                                  ).unflatten(0, (num, 4))).cpu().numpy()
    true = np.array([cell_dists[l][s, c] for l, s, c in zip(layout, starts, cells)])
    decreases = []
    for l, s, c in list(zip(layout, starts, cells))[:num_paths]:
        path = optimal_path(mazes[l], cell_dists[l], s, c)
        e = energy.to_goal(energy.embed_codes(torch.as_tensor(mazes[l].codes(mazes[l].poses[path]), device=device))[None],
                           energy.embed_codes(torch.as_tensor(goal_observations(mazes[l], mazes[l].cells[c][None])[0],
                                                              device=device))[None])[0].cpu().numpy()
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
