"""Evaluation: batched planning episodes executed in the real MiniGrid env.

Protocol (fixed before any tuning): for horizon T, `num_eval_episodes` start poses and goal cells
with BFS distance in (T/2, T] (`sample_tasks`, seeded per seed and T, the same tasks for every
planner); the agent has T real steps; every planner re-plans after `replan_every` real steps from the
encoded current observation; success = the agent stands on the goal cell within the T steps.
Planners see only the encoded observations and goal observations (agent placed on the goal cell,
one per arrival direction); `bfs` reads the true layout and is a labelled reference, not a method.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from exp3_planning_efficiency.env_minigrid import FastMaze, make_env, poses_from_images, set_pose
from exp3_planning_efficiency.planners import MODEL_PLANNERS


def goal_embedding(model, energy, maze: FastMaze, goal_cells: np.ndarray):
    """Embed the goal observations of cells (B, 2): the agent on the cell facing each of 4 dirs."""
    B = len(goal_cells)
    poses = np.concatenate([np.repeat(goal_cells[:, None], 4, 1), np.tile(np.arange(4), (B, 1))[..., None]], -1)
    z = model.encode_images(maze.images(poses.reshape(-1, 3)))
    return energy.embed_goal(z.reshape(B, 4, *z.shape[1:]))


def bfs_actions(maze: FastMaze, cell_dist: np.ndarray, poses: np.ndarray, goal_index: np.ndarray, n: int):
    """Reference: n greedy steps down the true BFS distance (uses the true layout)."""
    idx = maze.pose_index[poses[:, 0], poses[:, 1], poses[:, 2]]
    actions = []
    for _ in range(n):
        next_idx = maze.next_pose[idx]  # (B, 3)
        a = cell_dist[next_idx, goal_index[:, None]].argmin(-1)
        actions.append(a)
        idx = next_idx[np.arange(len(idx)), a]
    return np.stack(actions, axis=1)


@torch.no_grad()
def _encode(model, images):
    return model.encode_images(images)


def run_episodes(planner: str, model, energy, maze: FastMaze, cell_dist: np.ndarray, starts: np.ndarray,
                 goal_cells: np.ndarray, horizon: int, cfg, generator: torch.Generator) -> dict:
    """Run one batch of episodes (one per task) with `planner`; returns per-episode arrays."""
    B = len(starts)
    envs = [make_env(cfg.env_id) for _ in range(B)]
    images = np.stack([(env.reset(seed=i), set_pose(env, pose))[1] for i, (env, pose) in enumerate(zip(envs, starts))])
    goal_index = np.array([np.flatnonzero((maze.cells == g).all(1))[0] for g in goal_cells])
    with torch.no_grad():
        goal = goal_embedding(model, energy, maze, goal_cells)
    done = np.zeros(B, dtype=bool)
    steps = np.full(B, horizon)
    evals = np.zeros(B, dtype=np.int64)
    plan_seconds, t = 0.0, 0
    while t < horizon and not done.all():
        active = np.flatnonzero(~done)
        H = horizon - t
        start = time.perf_counter()
        if planner == "bfs":
            actions, n_evals = bfs_actions(maze, cell_dist, poses_from_images(images[active]), goal_index[active],
                                           min(cfg.replan_every, H)), 0
        else:
            z = _encode(model, images[active])
            goal_active = goal[torch.as_tensor(active)]
            with torch.no_grad():  # only the gradient planner re-enables autograd, for its logits
                actions, n_evals = MODEL_PLANNERS[planner](model, energy, z, goal_active, H, cfg, generator)
            actions = actions.cpu().numpy()
        plan_seconds += time.perf_counter() - start
        evals[active] += n_evals
        for j in range(min(cfg.replan_every, actions.shape[1])):
            for row, b in enumerate(active):
                if done[b]:
                    continue
                obs, *_ = envs[b].step(int(actions[row, j]))
                images[b] = obs["image"]
                if tuple(envs[b].unwrapped.agent_pos) == tuple(goal_cells[b]):
                    done[b], steps[b] = True, t + j + 1
            if done.all():
                break
        t += min(cfg.replan_every, actions.shape[1])
    for env in envs:
        env.close()
    return {"success": done, "steps": steps, "model_evals": evals, "plan_seconds_per_episode": plan_seconds / B}
