"""Evaluation: batched planning episodes on layouts, executed in the fast simulator.

Protocol (fixed before any tuning): for horizon T, `num_eval_episodes` tasks per seed, each a layout
of the track's evaluation set, a start pose and a goal cell with BFS distance in (T/2, T]
(`tasks_across_layouts`, seeded per seed and T: the same tasks for every planner); the agent has T
steps; every planner re-plans after `replan_every` steps from the current observation; success = the
agent stands on the goal cell within the T steps. Planners see observations only: the current one
and the goal's (the agent on the goal cell, one per direction). `bfs` follows the true shortest path
(it reads the layout) and is a labelled reference, not a method.

Episodes run in `FastMaze`, the numpy twin of MiniGrid (tested equal to it step by step on random
layouts of both environment families), which makes a batch of episodes ~100x faster to step.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from common.fields import identity_hash
from common.runs import load_checkpoint_if_matches, numpy_rng, progress, save_checkpoint, torch_generator
from exp3_planning_efficiency.compute import call_macs
from exp3_planning_efficiency.env_minigrid import FIRST_AGENT_CODE, FastMaze, goal_observations, tasks_across_layouts
from exp3_planning_efficiency.planners import PLANNERS, GraphView, LazyGraph, flat_gd


def bfs_actions(maze: FastMaze, cell_dist: np.ndarray, pose: int, goal_cell: int, n: int) -> np.ndarray:
    """Reference: n greedy steps down the true BFS distance (reads the true layout)."""
    actions = []
    for _ in range(n):
        a = int(cell_dist[maze.next_pose[pose], goal_cell].argmin())
        actions.append(a)
        pose = maze.next_pose[pose, a]
    return np.asarray(actions)


class ExactCoarseGraph(LazyGraph):
    """A diagnostic reference, not a method: `LazyGraph` whose coarse transitions are the true ones (it
    reads each episode's layout, `maze_of` (B,) FastMazes), so HELM's coarse level searches without
    model error. Calls and MACs are counted as the learned coarse transition's."""

    def __init__(self, model, energy, goal_codes: np.ndarray, device, reach: int | None = None, maze_of=()):
        super().__init__(model, energy, goal_codes, device, reach)
        self.maze_of = list(maze_of)

    def coarse(self, rows, ids, macros):
        """`LazyGraph.coarse` with each missing macro-step taken in the true layout (always trusted)."""
        def predict(b, i, m):
            actions = self.macros[m].argmax(-1).cpu().numpy()  # (n, k)
            codes = np.stack([self.true_next(episode, code, seq)
                              for episode, code, seq in zip(b, self.codes[b, i], actions)])
            return codes, np.ones(len(codes), dtype=bool)
        return self._transition(self.coarse_next, rows[:, None].expand_as(ids), ids, macros, predict, "coarse",
                                calls=len(self.model.coarse))

    def true_next(self, episode: int, code: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """The observation after `actions` from the observation `code` (W, H), in the true layout."""
        maze = self.maze_of[episode]
        x, y = np.argwhere(code >= FIRST_AGENT_CODE)[0]
        pose = maze.pose_index[x, y, code[x, y] - FIRST_AGENT_CODE]
        for a in actions:
            pose = maze.next_pose[pose, a]
        return maze.codes(maze.poses[pose][None])[0]


def run_episodes(planner: str, model, energy, mazes: list[FastMaze], cell_dists: list[np.ndarray],
                 layouts: np.ndarray, starts: np.ndarray, goal_cells: np.ndarray, horizon: int, cfg,
                 generator: torch.Generator, device, per_call: dict | None = None) -> dict:
    """One batch of episodes (one per task) with `planner`; returns per-episode arrays, with the MACs
    and Bellman-Ford operations of what ran when given the cost of each call (`compute.call_macs`)."""
    B = len(starts)
    maze_of = [mazes[i] for i in layouts]
    pose = np.array([m.pose_index[tuple(p)] for m, p in zip(maze_of, starts)])
    goal_index = np.array([int(np.flatnonzero((m.cells == g).all(1))[0]) for m, g in zip(maze_of, goal_cells)])
    goal_codes = np.stack([goal_observations(m, g[None])[0] for m, g in zip(maze_of, goal_cells)])
    reach = cfg.energy_reach or None
    graph = None
    if planner == "helm_exact_coarse":
        graph = ExactCoarseGraph(model, energy, goal_codes, device, reach, maze_of)
    elif PLANNERS[planner].plan is not None:
        graph = LazyGraph(model, energy, goal_codes, device, reach)
    cost = per_call or dict.fromkeys(("encode", "fine", "coarse", "values", "read", "sweep_ops", "gd_step"), 0)
    macs, sweep_ops = np.zeros(B, dtype=np.int64), np.zeros(B, dtype=np.int64)
    if planner == "flat":
        goal, sweeps = energy.values_of_codes(torch.as_tensor(goal_codes, device=device), reach)
        macs += cost["values"]
        sweep_ops += sweeps * cost["sweep_ops"]
    done, steps = np.zeros(B, dtype=bool), np.full(B, horizon)
    evals = np.zeros(B, dtype=np.int64)
    plan_seconds, t = 0.0, 0
    while t < horizon and not done.all():
        active = np.flatnonzero(~done)
        H = horizon - t
        codes = np.stack([maze_of[b].codes(maze_of[b].poses[pose[b]][None])[0] for b in active])
        start = time.perf_counter()
        if planner == "bfs":
            actions = np.stack([bfs_actions(maze_of[b], cell_dists[layouts[b]], pose[b], goal_index[b],
                                            min(cfg.replan_every, H)) for b in active])
        elif planner == "flat":
            with torch.no_grad():
                z = model.encode_codes(torch.as_tensor(codes, device=device))
            goal_of_active = goal[torch.as_tensor(active, device=device)]
            actions, n_evals = flat_gd(model, energy, z, goal_of_active, H, cfg, generator)
            evals[active] += n_evals
            macs[active] += cost["encode"] + cfg.gd_steps * H * cost["gd_step"]
            actions = actions.cpu().numpy()
        else:
            ids = torch.as_tensor(graph.ids_of(active, codes), device=device)
            actions = PLANNERS[planner].plan(GraphView(graph, active), ids, H, cfg, generator).cpu().numpy()
        plan_seconds += time.perf_counter() - start
        executed = min(cfg.replan_every, actions.shape[1], H)  # never past the horizon
        for j in range(executed):
            for row, b in enumerate(active):
                if done[b]:
                    continue
                pose[b] = maze_of[b].next_pose[pose[b], actions[row, j]]
                if (maze_of[b].poses[pose[b], :2] == goal_cells[b]).all():
                    done[b], steps[b] = True, t + j + 1
        t += executed
    if graph is not None:
        evals = graph.evals
        macs = sum(graph.computed[kind] * cost[kind] for kind in graph.computed)
        sweep_ops = graph.sweeps * cost["sweep_ops"]
    counted = {} if per_call is None else {"macs": macs, "sweep_ops": sweep_ops}
    optimal = np.array([cell_dists[i][pose_index, g] for i, pose_index, g in
                        zip(layouts, [m.pose_index[tuple(p)] for m, p in zip(maze_of, starts)], goal_index)])
    return {"success": done, "steps": steps, "bfs_distance": optimal, "model_evals": evals, **counted,
            "plan_seconds_per_episode": plan_seconds / B}


# ----------------------------------------------------------------------------------------------
# evaluation units

PARETO_HORIZONS = (50, 80)
PARETO_TRACKS = ("unseen-layouts", "fourrooms", "limited-data-100")  # one Pareto plot per track (compute)
# what an evaluation unit's episodes depend on, besides its networks, seed, track, layouts, budget scale and
# the fields of its planner (`planners.PLANNERS`)
EPISODE_FIELDS = ("planning_horizons", "num_eval_episodes", "replan_every", "depth_cost", "energy_reach")


def usable_horizons(cfg, cell_dists: list[np.ndarray]) -> list[int]:
    """The configured horizons for which some layout has a task (BFS distance in (T/2, T])."""
    return [T for T in cfg.planning_horizons if any(((d > T / 2) & (d <= T)).any() for d in cell_dists)]


def scaled(cfg, planner: str, scale: float):
    """The config with the planner's budget fields multiplied by `scale` (each at least 1)."""
    return dataclasses.replace(cfg, **{field: max(1, int(round(getattr(cfg, field) * scale)))
                                       for field in PLANNERS[planner].budget})


def evaluation_unit(cfg, models: dict, layouts: str, track_key: int, planner: str, scale: float) -> dict:
    """An evaluation unit's identity: the networks' training unit `models`, the evaluated layouts (e.g.
    "test/50"), the task stream, the planner, its budget scale and the config fields its episodes read."""
    fields = EPISODE_FIELDS + PLANNERS[planner].fields
    return {"models": models, "layouts": layouts, "track_key": track_key, "planner": planner, "scale": scale,
            **json.loads(json.dumps({name: getattr(cfg, name) for name in fields}))}


def evaluate_track(cfg, seed: int, track: str, track_key: int, nets: dict, models: dict, layouts: str,
                   mazes: list[FastMaze], cell_dists: list[np.ndarray], planners: list[str], checkpoint_dir: Path,
                   device) -> dict:
    """Every planner on the seed's tasks of every usable horizon of a track (the same tasks for every
    planner), plus the Pareto budgets at T = 50 and 80. Evaluation units are checkpointed under a name
    with a hash of their identity (`evaluation_unit`), so sweeps over planner settings resume too."""
    horizons = usable_horizons(cfg, cell_dists)
    tasks = {T: tasks_across_layouts(mazes, cell_dists, T, cfg.num_eval_episodes,
                                     numpy_rng(seed, "exp3-tasks", track_key, T)) for T in horizons}
    runs = [(planner, 1.0) for planner in planners]
    if track in PARETO_TRACKS:
        runs += [(planner, s) for planner in planners if PLANNERS[planner].budget for s in cfg.budget_scales]
    out: dict = {"horizons": horizons, "success": {}, "pareto": {}}
    for planner, scale in progress(runs, cfg.quiet, desc=f"seed {seed} {track}", leave=False):
        Ts = horizons if scale == 1.0 else [T for T in horizons if T in PARETO_HORIZONS]
        if not Ts:
            continue
        unit = evaluation_unit(cfg, models, layouts, track_key, planner, scale)
        path = checkpoint_dir / f"evaluation_{track}_seed{seed}_{planner}_x{scale:g}_{identity_hash(unit)}.pt"
        done = load_checkpoint_if_matches(path, unit)
        if done is None:
            model_name, energy_name = PLANNERS[planner].networks
            run_cfg = scaled(cfg, planner, scale) if scale != 1.0 else cfg
            per_call = call_macs(nets[model_name], nets[energy_name], (mazes[0].width, mazes[0].height), device)
            results = {}
            for T in Ts:
                generator = torch_generator(seed, "exp3-planner", track_key, T, device=device)
                episodes = run_episodes(planner, nets[model_name], nets[energy_name], mazes, cell_dists, *tasks[T][:3],
                                        T, run_cfg, generator, device, per_call)
                results[str(T)] = {k: np.asarray(v).tolist() for k, v in episodes.items()}
            done = {"unit_config": unit, "results": results}
            save_checkpoint(path, done)
        target = out["success"] if scale == 1.0 else out["pareto"]
        target.setdefault(planner, {})[scale if scale != 1.0 else "results"] = done["results"]
    out["success"] = {p: v["results"] for p, v in out["success"].items()}
    return out
