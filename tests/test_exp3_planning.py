"""Experiment 3 (planning efficiency): BFS distances, the fast simulator against MiniGrid, task
sampling, layouts, observation codes, the lazy graph, every planner with a perfect (exact) model,
isolation of the learned parts from the environment, smoke runs per track, bad input."""

import dataclasses
import json
import subprocess
import sys
from collections import deque

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.config import Exp3Config
from common.output_folder import REPO_ROOT
from exp3_planning_efficiency import analyze_planning, run_experiment
from exp3_planning_efficiency.energy import GoalEnergy
from exp3_planning_efficiency.env_minigrid import (ENV_ID, FOURROOMS_ID, NUM_ACTIONS, FastMaze, Replay,
                                                   SpanningMazeEnv, goal_observations, layout_split, make_env,
                                                   observation_codes, poses_from_images, sample_tasks, set_pose,
                                                   spanning_tree_gaps, tasks_across_layouts)
from exp3_planning_efficiency.evaluation import run_episodes
from exp3_planning_efficiency.planners import GraphView, LazyGraph, coarse_subgoal
from exp3_planning_efficiency.world_model import WorldModel, one_hot_codes

ROOM3 = "HELM-TestRoom3-v0"  # one 3x3 room (5x5 grid with the outer wall)
ROOM5 = "HELM-TestRoom5-v0"  # one 5x5 open room
MAZE2 = "HELM-TestMaze2x2-v0"  # 2x2 rooms of 2x2 cells joined by 3 gaps
for _id, _kw in ((ROOM3, dict(rooms=1, room_size=3)), (ROOM5, dict(rooms=1, room_size=5)),
                 (MAZE2, dict(rooms=2, room_size=2, layout_seed=3))):
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=SpanningMazeEnv, kwargs=_kw)

PLOTS = ["exp3_pareto.png", "exp3_success_vs_horizon.png", "exp3_training_curves.png", "exp3_world_model.png"]
ALL_PLANNERS = ["helm", "helm_no_coarse", "helm_no_spectral", "helm_no_hf", "cem", "flat", "random", "bfs"]
SHRINK = ["--num-train-layouts", "4", "--walks-per-layout", "5", "--model-train-steps", "5", "--energy-train-steps", "5",
          "--planning-horizons", "10", "--num-eval-episodes", "2", "--num-test-layouts", "2",
          "--num-fourrooms-layouts", "2", "--limited-data-walks", "20", "--budget-scales", "2"]


@pytest.fixture(scope="module")
def default_maze():
    maze = FastMaze()
    return maze, maze.pose_distances(), maze.cell_distances()


def idx(maze, x, y, d):
    i = int(maze.pose_index[x, y, d])
    assert i >= 0, (x, y, d)
    return i


def cell_idx(maze, x, y):
    return int(np.flatnonzero((maze.cells == (x, y)).all(1))[0])


def flipped(maze):
    """Index of each pose turned around (dir + 2)."""
    p = maze.poses
    return maze.pose_index[p[:, 0], p[:, 1], (p[:, 2] + 2) % 4]


# ----------------------------------------------------------------------------------------------
# 1. BFS distances


def test_bfs_distances_on_a_3x3_room_match_hand_computed_values():
    maze = FastMaze(ROOM3)
    assert (maze.width, maze.height, maze.num_poses) == (5, 5, 36)
    assert set(map(tuple, maze.cells)) == {(x, y) for x in (1, 2, 3) for y in (1, 2, 3)}
    D, C = maze.pose_distances(), maze.cell_distances()
    expected = {  # dir 0 = +x, 1 = +y, 2 = -x, 3 = -y; left = dir - 1, right = dir + 1
        ((1, 1, 0), (1, 1, 0)): 0,
        ((1, 1, 0), (3, 1, 0)): 2,  # forward, forward
        ((1, 1, 0), (1, 1, 1)): 1,  # right
        ((1, 1, 0), (1, 1, 3)): 1,  # left
        ((1, 1, 0), (1, 1, 2)): 2,  # turning around costs 2
        ((1, 1, 0), (1, 2, 1)): 2,  # right, forward
        ((1, 1, 0), (1, 2, 0)): 3,  # right, forward, left
        ((1, 1, 0), (3, 3, 1)): 5,  # forward x2, right, forward x2
        ((3, 3, 1), (1, 1, 0)): 7,  # right, forward x2, right, forward x2, right: not symmetric
        ((3, 3, 3), (1, 1, 2)): 5,  # the reverse of (1,1,0) -> (3,3,1) with both poses turned around
    }
    for (p, q), d in expected.items():
        assert D[idx(maze, *p), idx(maze, *q)] == d, (p, q)
    cell_expected = {((1, 1, 2), (3, 1)): 4, ((1, 1, 0), (1, 1)): 0, ((2, 2, 0), (2, 1)): 2,
                     ((1, 1, 0), (3, 3)): 5, ((3, 3, 1), (1, 1)): 6, ((2, 2, 1), (2, 3)): 1}
    for (p, c), d in cell_expected.items():
        assert C[idx(maze, *p), cell_idx(maze, *c)] == d, (p, c)
    # forward into the wall leaves the pose unchanged; turns never move
    assert maze.next_pose[idx(maze, 1, 1, 2), 2] == idx(maze, 1, 1, 2)
    assert maze.next_pose[idx(maze, 2, 2, 0), 2] == idx(maze, 3, 2, 0)
    assert maze.next_pose[idx(maze, 2, 2, 0), 0] == idx(maze, 2, 2, 3)
    assert maze.next_pose[idx(maze, 2, 2, 0), 1] == idx(maze, 2, 2, 1)


def reference_bfs(env_id):
    """All-pairs pose distances by plain BFS, with each transition taken by the real MiniGrid env."""
    env = make_env(env_id)
    env.reset(seed=0)
    base = env.unwrapped
    free = [(x, y) for x in range(base.width) for y in range(base.height)
            if base.grid.get(x, y) is None]
    poses = [(x, y, d) for x, y in free for d in range(4)]
    succ = {}
    for p in poses:
        succ[p] = []
        for a in range(NUM_ACTIONS):
            set_pose(env, p)
            env.step(a)
            succ[p].append((*map(int, base.agent_pos), int(base.agent_dir)))
    env.close()
    dist = {}
    for s in poses:
        seen, queue = {s: 0}, deque([s])
        while queue:
            p = queue.popleft()
            for q in succ[p]:
                if q not in seen:
                    seen[q] = seen[p] + 1
                    queue.append(q)
        dist[s] = seen
    return poses, dist


def test_bfs_distances_match_a_reference_bfs_through_the_real_env():
    maze = FastMaze(MAZE2)
    poses, ref = reference_bfs(MAZE2)
    assert len(poses) == maze.num_poses == 4 * (4 * 4 + 3)  # 4 rooms of 2x2 cells + 3 gaps
    D, C = maze.pose_distances(), maze.cell_distances()
    for p in poses:
        for q in poses:
            assert D[idx(maze, *p), idx(maze, *q)] == ref[p].get(q, np.inf), (p, q)
    for p in poses:
        for c, (x, y) in enumerate(maze.cells):
            assert C[idx(maze, *p), c] == min(ref[p][(x, y, d)] for d in range(4))
    assert np.isfinite(D).all() and D.max() > 10  # connected, and not trivially small


@pytest.mark.parametrize("env_id", [MAZE2, ENV_ID])
def test_bfs_distances_sanity(env_id, default_maze):
    if env_id == ENV_ID:
        maze, D, C = default_maze
    else:
        maze = FastMaze(env_id)
        D, C = maze.pose_distances(), maze.cell_distances()
    n = maze.num_poses
    assert np.isfinite(D).all()  # spanning-tree gaps: every pose reaches every pose
    assert (np.diag(D) == 0).all() and (D[~np.eye(n, dtype=bool)] >= 1).all()
    # Bellman equation of unit-cost shortest paths, i.e. D is exactly the BFS distance
    best_next = D[maze.next_pose].min(axis=1)  # (n, n): min over actions of D[next(i, a), k]
    off = ~np.eye(n, dtype=bool)
    assert (D[off] == 1 + best_next[off]).all()
    # reversing a path: d(p -> q) = d(flip q -> flip p); turning around costs exactly 2
    f = flipped(maze)
    assert (D == D[f][:, f].T).all()
    assert (D[np.arange(n), f] == 2).all()
    assert not (D == D.T).all()  # but it is a quasimetric, not a metric
    # triangle inequality on random triples
    rng = np.random.default_rng(0)
    i, j, k = rng.integers(n, size=(3, 20000))
    assert (D[i, k] <= D[i, j] + D[j, k]).all()
    # cell distance = min over the 4 arrival dirs, and 0 on the agent's own cell
    cell_of_pose = maze.pose_index[maze.cells[:, 0], maze.cells[:, 1]]
    assert (C == D[:, cell_of_pose].min(-1)).all()
    own = np.array([cell_idx(maze, x, y) for x, y, _ in maze.poses])
    assert (C[np.arange(n), own] == 0).all()
    if env_id == ENV_ID:
        assert n == 932 and 40 < C.max() <= 80  # tasks at T = 80 ((40, 80]) exist


# ----------------------------------------------------------------------------------------------
# 2. the fast simulator equals MiniGrid


def test_fast_maze_equals_minigrid_step_by_step(default_maze):
    maze = default_maze[0]
    env = make_env()
    env.reset(seed=0)
    assert (env.unwrapped.grid.encode() == maze.base_image).all()
    rng = np.random.default_rng(1)
    blocked = moved = 0
    for start in maze.poses[rng.choice(maze.num_poses, size=5, replace=False)]:
        image = set_pose(env, start)
        i = idx(maze, *start)
        assert (image == maze.images(start[None])[0]).all()
        for a in rng.integers(NUM_ACTIONS, size=150):
            obs, *_ = env.step(int(a))
            j = maze.next_pose[i, a]
            pose = maze.poses[j]
            assert (np.array([*env.unwrapped.agent_pos, env.unwrapped.agent_dir]) == pose).all()
            assert (maze.step_poses(maze.poses[i][None], np.array([a]))[0] == pose).all()
            assert (obs["image"] == maze.images(pose[None])[0]).all()
            assert (poses_from_images(obs["image"]) == pose).all()
            if a == 2:
                blocked, moved = blocked + (i == j), moved + (i != j)
            i = j
    env.close()
    assert blocked > 10 and moved > 50  # both wall collisions and moves were exercised


# ----------------------------------------------------------------------------------------------
# 3. task sampling


@pytest.mark.parametrize("T", [4, 10, 25, 50, 80])
def test_sample_tasks_respects_the_horizon_band_and_is_deterministic(T, default_maze):
    maze, _, C = default_maze
    starts, goals, dist = sample_tasks(maze, C, T, 64, np.random.default_rng(7))
    assert starts.shape == (64, 3) and goals.shape == (64, 2) and dist.shape == (64,)
    assert maze.free[starts[:, 0], starts[:, 1]].all() and maze.free[goals[:, 0], goals[:, 1]].all()
    true = C[maze.pose_index[starts[:, 0], starts[:, 1], starts[:, 2]], [cell_idx(maze, *g) for g in goals]]
    assert (dist == true).all()
    assert ((true > T / 2) & (true <= T)).all()
    again = sample_tasks(maze, C, T, 64, np.random.default_rng(7))
    assert all((a == b).all() for a, b in zip((starts, goals, dist), again))
    other = sample_tasks(maze, C, T, 64, np.random.default_rng(8))
    assert not (other[0] == starts).all()


def test_sample_tasks_without_eligible_pairs_raises(default_maze):
    maze, _, C = default_maze
    with pytest.raises(ValueError, match="no start/goal pair"):
        sample_tasks(maze, C, int(2 * C.max()) + 2, 4, np.random.default_rng(0))


# ----------------------------------------------------------------------------------------------
# 4. observations, goal observations and tasks across layouts


def test_observation_codes_are_cellwise_and_fast_maze_codes_equal_them(default_maze):
    maze = default_maze[0]
    rng = np.random.default_rng(0)
    poses = maze.poses[rng.integers(maze.num_poses, size=20)]
    images = maze.images(poses)
    codes = observation_codes(images)
    assert codes.shape == (20, maze.width, maze.height) and codes.dtype == np.uint8
    assert (codes == maze.codes(poses)).all()
    assert ((codes == 1) == (images[..., 0] == 2)).all()  # walls
    for c, (x, y, d) in zip(codes, poses):
        assert c[x, y] == 2 + d and (c >= 2).sum() == 1  # exactly one agent cell, coding its direction
    four = FastMaze(FOURROOMS_ID, reset_seed=5)  # its goal square is floor for the codes, and free
    goal = np.argwhere(four.base_image[..., 0] == 8)
    assert len(goal) == 1 and four.base_codes[tuple(goal[0])] == 0 and four.free[tuple(goal[0])]


def test_goal_observations_have_the_agent_on_the_goal_cell(default_maze):
    maze = default_maze[0]
    goals = maze.cells[np.random.default_rng(3).choice(len(maze.cells), size=6, replace=False)]
    codes = goal_observations(maze, goals)
    assert codes.shape == (6, 4, maze.width, maze.height)
    env = make_env()
    env.reset(seed=0)
    for b, (x, y) in enumerate(goals):
        for d in range(4):
            assert codes[b, d, x, y] == 2 + d and (codes[b, d] >= 2).sum() == 1
            assert (observation_codes(set_pose(env, (x, y, d))) == codes[b, d]).all()  # the real env agrees
    env.close()


def test_tasks_across_layouts_respect_the_band_on_their_own_layout():
    mazes = [FastMaze(layout_seed=s) for s in (3, 4, 5)] + [FastMaze(FOURROOMS_ID, reset_seed=1)]
    dists = [m.cell_distances() for m in mazes]
    for T in (10, 50, 80):
        layouts, starts, goals, d = tasks_across_layouts(mazes, dists, T, 40, np.random.default_rng(T))
        for l, s, g, dd in zip(layouts, starts, goals, d):
            m = mazes[l]
            assert dists[l][m.pose_index[tuple(s)], cell_idx(m, *g)] == dd and T / 2 < dd <= T
        if T == 80:
            assert 3 not in layouts  # FourRooms has no task that long
    assert len(set(tasks_across_layouts(mazes, dists, 20, 40, np.random.default_rng(0))[0])) == 4


def test_replay_windows_read_the_observations_of_their_own_layout():
    mazes = [FastMaze(layout_seed=s) for s in (3, 4)]
    replay = Replay(mazes, 6, 20, np.random.default_rng(0))
    layout, poses, actions = replay.windows(5, 30, np.random.default_rng(1))
    codes = replay.codes(np.repeat(layout[:, None], 6, 1), poses)
    for b in range(30):
        m = mazes[layout[b]]
        assert (codes[b] == observation_codes(m.images(m.poses[poses[b]]))).all()
        assert (m.next_pose[poses[b, :-1], actions[b]] == poses[b, 1:]).all()


# ----------------------------------------------------------------------------------------------
# 5. the lazy graph is the network with snapping, and counts each network call once


def test_lazy_graph_equals_snapping_the_network_and_counts_requests(default_maze):
    maze = default_maze[0]
    torch.manual_seed(0)
    model, energy = WorldModel(4, 8, 8, 2), GoalEnergy(8, 4)
    rng = np.random.default_rng(0)
    poses = maze.poses[rng.integers(maze.num_poses, size=3)]
    goals = goal_observations(maze, maze.cells[rng.integers(len(maze.cells), size=3)])
    graph = LazyGraph(model, energy, goals, "cpu")
    ids = torch.as_tensor(graph.ids_of(np.arange(3), maze.codes(poses)))
    view = GraphView(graph, np.arange(3))
    actions = torch.as_tensor(rng.integers(NUM_ACTIONS, size=(3, 5)))
    with torch.no_grad():
        nxt = view.fine(ids[:, None].expand(3, 5).contiguous(), actions)
        z = model.encode_codes(torch.as_tensor(maze.codes(poses)))
        for j in range(5):
            expected = model.decode_codes(model.step(z, F.one_hot(actions[:, j], NUM_ACTIONS).float())).numpy()
            assert (graph.codes[np.arange(3), nxt[:, j].numpy()] == expected).all()
        macros = torch.as_tensor(rng.integers(graph.num_macros, size=(3, 2)))
        coarse = view.coarse(ids[:, None].expand(3, 2).contiguous(), macros)
        expected = model.decode_codes(model.coarse_step(z, graph.macros[macros[:, 0]])).numpy()
        assert (graph.codes[np.arange(3), coarse[:, 0].numpy()] == expected).all()
        e = view.to_goal(nxt)
        V = energy.values_of_codes(torch.as_tensor(goals))[0]
        x = one_hot_codes(torch.as_tensor(graph.codes[np.arange(3)[:, None], nxt.numpy()]).flatten(0, 1))
        torch.testing.assert_close(e, GoalEnergy.read(V, x.unflatten(0, (3, 5))), rtol=1e-5, atol=1e-5)
    assert (graph.evals == 4 + 5 + 2 + 5).all()  # goal observations, fine, coarse and energy requests
    calls = []
    model.fine.register_forward_hook(lambda module, args, output: calls.append(len(output)))
    energy.features.register_forward_hook(lambda module, args, output: calls.append(len(output)))
    view.fine(ids[:, None].expand(3, 5).contiguous(), actions)  # answered from the cache: no network call,
    view.to_goal(nxt)  # but the requests still count as model evaluations
    assert calls == [] and (graph.evals == 16 + 5 + 5).all()
    # what ran, per episode: the goal's values, one fine transition per distinct action from the start,
    # and macro-action, one read per distinct predicted state (repeats were computed once)
    distinct = lambda t: [len(set(row.tolist())) for row in t]
    assert {k: v.tolist() for k, v in graph.computed.items()} == {
        "fine": distinct(actions), "coarse": distinct(macros), "values": [1] * 3, "read": distinct(nxt)}


def _conv_macs(module: torch.nn.Module, W: int, H: int) -> int:
    """Hand count: each convolution (same padding) makes cin x cout x k^2 multiply-adds per cell."""
    return sum(m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1] * W * H
               for m in module.modules() if isinstance(m, torch.nn.Conv2d))


def test_call_macs_equal_a_hand_count_of_the_convolutions():
    from exp3_planning_efficiency.compute import call_macs
    model, energy = WorldModel(4, 8, 6, 2, coarse_heads=2), GoalEnergy(8, 4)
    W, H = 7, 5
    macs = call_macs(model, energy, (W, H), "cpu")
    encode, decode = _conv_macs(model.encoder, W, H), _conv_macs(model.decoder, W, H)
    assert macs["fine"] == encode + _conv_macs(model.fine, W, H) + decode
    assert macs["coarse"] == encode + sum(_conv_macs(head, W, H) + decode for head in model.coarse)
    assert macs["values"] == sum(_conv_macs(m, W, H) for m in (energy.features, energy.move_cost, energy.switch_cost))
    assert macs["read"] == 4 * W * H and macs["sweep_ops"] == 4 * (9 + 4) * W * H
    assert macs["gd_step"] > 2 * (_conv_macs(model.fine, W, H) + decode)  # a forward and a backward


def test_spectral_norm_estimate_is_the_largest_singular_value_of_the_fine_jacobian():
    """Power iteration (forward-mode J v, backward J^T J v) against the SVD of the full Jacobian of
    step(., a) at each sample, and differentiable in the fine transition's weights."""
    from exp3_planning_efficiency.world_model import spectral_norm_estimate
    torch.manual_seed(0)
    model = WorldModel(2, 4, 4, 2)
    z, action = torch.randn(3, 2, 5, 5), F.one_hot(torch.tensor([0, 1, 2]), NUM_ACTIONS).float()
    estimate = spectral_norm_estimate(model, z, action, iters=200)
    for b in range(3):
        J = torch.autograd.functional.jacobian(lambda x: model.step(x, action[b:b + 1]), z[b:b + 1]).reshape(50, 50)
        torch.testing.assert_close(estimate[b], torch.linalg.matrix_norm(J, ord=2), rtol=1e-4, atol=1e-5)
    grads = torch.autograd.grad(estimate.sum(), list(model.fine.parameters()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


# ----------------------------------------------------------------------------------------------
# 6. every planner solves a tiny task with a perfect model


class ExactModel:
    """Duck-typed world model whose latent is a distribution over poses (n, P) and whose transitions
    are the true ones (linear, so differentiable in relaxed actions): step(z, a) = sum_i a_i z P_i."""

    def __init__(self, maze, coarse_stride):
        self.maze, self.coarse_stride = maze, coarse_stride
        P = np.zeros((NUM_ACTIONS, maze.num_poses, maze.num_poses), dtype=np.float32)
        for a in range(NUM_ACTIONS):
            P[a, np.arange(maze.num_poses), maze.next_pose[:, a]] = 1
        self.P = torch.as_tensor(P)

    def encode_codes(self, codes):
        cell = (codes >= 2).flatten(1).float().argmax(-1).numpy()
        x, y = cell // self.maze.height, cell % self.maze.height
        d = codes.flatten(1).numpy()[np.arange(len(cell)), cell] - 2
        return F.one_hot(torch.as_tensor(self.maze.pose_index[x, y, d]), self.maze.num_poses).float()

    def decode_codes(self, z):
        return torch.as_tensor(self.maze.codes(self.maze.poses[z.argmax(-1).numpy()]))

    def step(self, z, a):
        return sum(a[..., i:i + 1] * (z @ self.P[i]) for i in range(NUM_ACTIONS))

    coarse = [None]  # one coarse "head": the exact one

    def coarse_step(self, z, macro, head=0):
        for j in range(macro.shape[-2]):
            z = self.step(z, macro[..., j, :])
        return z

    def soft_observation(self, z):
        """A pose distribution (n, P) -> the relaxed observation (n, 6, W, H) whose agent planes hold it."""
        p = self.maze.poses
        planes = torch.zeros(len(z), 6, self.maze.width, self.maze.height)
        planes[:, 2 + p[:, 2], p[:, 0], p[:, 1]] = z
        return planes


class ExactEnergy:
    """Duck-typed goal energy whose values are the true BFS distances of every pose to the nearest
    goal observation (read as GoalEnergy reads its values)."""

    def __init__(self, model, pose_dist):
        self.model, self.D = model, torch.as_tensor(pose_dist, dtype=torch.float32)

    def values_of_codes(self, goal_codes, iterations=None):
        assert iterations is None, "the exact energy sees the whole maze"
        B, n = goal_codes.shape[:2]
        goal = self.model.encode_codes(goal_codes.flatten(0, 1)).argmax(-1).reshape(B, n)  # goal pose ids
        to_goal = self.D[:, goal].amin(-1).T  # (B, P)
        return self.model.soft_observation(to_goal)[:, 2:], 0  # values (B, 4, W, H), no sweeps

    read, read_codes = staticmethod(GoalEnergy.read), staticmethod(GoalEnergy.read_codes)


@pytest.fixture(scope="module")
def open_room():
    maze = FastMaze(ROOM5)
    D, C = maze.pose_distances(), maze.cell_distances()
    cfg = dataclasses.replace(Exp3Config(), coarse_stride=3, gd_steps=30, gd_lr=0.5, helm_num_samples=64,
                              helm_fine_samples=64, no_coarse_num_samples=64, cem_num_samples=64, replan_every=3)
    model = ExactModel(maze, cfg.coarse_stride)
    tasks = tasks_across_layouts([maze], [C], 8, 8, np.random.default_rng(1))
    return maze, C, cfg, model, ExactEnergy(model, D), tasks


@pytest.mark.parametrize("planner", ["helm", "helm_no_coarse", "cem", "flat", "bfs"])
def test_planner_solves_open_room_with_a_perfect_model(planner, open_room):
    maze, C, cfg, model, energy, (layouts, starts, goals, dist) = open_room
    assert ((dist > 4) & (dist <= 8)).all()
    out = run_episodes(planner, model, energy, [maze], [C], layouts, starts, goals, 8, cfg,
                       torch.Generator().manual_seed(0), "cpu")
    # the relaxed gradient planner may miss one task of eight; the discrete ones solve all
    assert out["success"].mean() >= (0.75 if planner == "flat" else 1.0), out
    assert (out["steps"] <= 8).all() and (out["steps"] >= dist).all()
    if planner != "bfs":
        assert (out["model_evals"] > 0).all()


def test_random_planner_rarely_solves_the_open_room(open_room):
    maze, C, cfg, model, energy, (layouts, starts, goals, _) = open_room
    out = run_episodes("random", model, energy, [maze], [C], layouts, starts, goals, 8, cfg,
                       torch.Generator().manual_seed(0), "cpu")
    assert out["success"].mean() <= 0.5


def test_helm_subgoal_is_the_best_state_of_the_coarse_plan_within_reach(open_room):
    """coarse_subgoal: the lowest-energy coarse state among the first helm_subgoal_macros macro-steps."""
    maze, C, cfg, model, energy, (layouts, starts, goals, dist) = open_room
    goal_codes = np.stack([goal_observations(maze, g[None])[0] for g in goals])
    graph = LazyGraph(model, energy, goal_codes, "cpu")
    view = GraphView(graph, np.arange(len(goals)))
    ids = torch.as_tensor(graph.ids_of(np.arange(len(goals)), maze.codes(starts)))
    plan = torch.as_tensor(np.random.default_rng(0).integers(NUM_ACTIONS, size=(len(goals), 4 * cfg.coarse_stride)))
    for subgoal_macros in (1, 2, 4):
        sub = coarse_subgoal(view, ids, plan, dataclasses.replace(cfg, helm_subgoal_macros=subgoal_macros))
        state, energies, states = ids[:, None], [], []
        for j in range(plan.shape[1]):
            state = view.fine(state, plan[:, j:j + 1])
            if (j + 1) % cfg.coarse_stride == 0:
                states.append(state[:, 0])
                energies.append(view.to_goal(state)[:, 0] + cfg.depth_cost * (j + 1))
        best = torch.stack(energies, 1).argmin(1).clamp_max(subgoal_macros - 1)
        assert torch.equal(sub, torch.stack(states, 1).gather(1, best[:, None])[:, 0])


# ----------------------------------------------------------------------------------------------
# 7. the learned parts never read the environment


@pytest.mark.parametrize("module", ["planners", "energy", "world_model"])
def test_learned_parts_and_planners_do_not_read_the_environment(module):
    source = (REPO_ROOT / "exp3_planning_efficiency" / f"{module}.py").read_text()
    for internal in ("FastMaze", "cell_dist", "next_pose", "poses_from_images", "pose_index", "base_image",
                     "agent_pos", "from minigrid", "import gymnasium"):
        assert internal not in source, (module, internal)
    imports = [line for line in source.splitlines() if "env_minigrid import" in line]
    allowed = {"NUM_ACTIONS", "NUM_CODES", "FIRST_AGENT_CODE", "Replay"}
    for line in imports:
        assert set(line.split("import")[1].replace(" ", "").split(",")) <= allowed, line


# ----------------------------------------------------------------------------------------------
# 8. smoke runs


def _metrics(out):
    return json.loads((out / "results" / "metrics.json").read_text())


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp3_quick")
    assert run_experiment.main(["--quick", "--out-dir", str(out), "--quiet"]) == 0
    return out


def test_a_pareto_budget_scales_every_sample_count_of_its_planner():
    from exp3_planning_efficiency.evaluation import scaled
    cfg = Exp3Config()
    helm = scaled(cfg, "helm", 0.25)
    assert (helm.helm_num_samples, helm.helm_fine_samples) == (cfg.helm_num_samples // 4, cfg.helm_fine_samples // 4)
    assert scaled(cfg, "cem", 0.5).cem_num_samples == cfg.cem_num_samples // 2
    assert scaled(cfg, "flat", 0.01).gd_steps == 1  # at least one
    assert dataclasses.replace(scaled(cfg, "helm_no_coarse", 0.5), no_coarse_num_samples=cfg.no_coarse_num_samples) == cfg


@pytest.mark.slow
def test_quick_run_writes_plots_and_metrics_for_every_track(quick_run):
    for name in PLOTS:
        assert (quick_run / "plots" / name).stat().st_size > 10_000
    m = _metrics(quick_run)
    assert {"experiment", "config", "seeds", "runtime_seconds", "environment", "criteria", "tracks", "models"} <= set(m)
    assert set(m["tracks"]) == {"unseen-layouts", "fourrooms", "limited-data-100"}
    assert len(m["criteria"]) == 9
    for c in m["criteria"]:
        assert {"name", "target", "measured", "passed"} <= set(c) and isinstance(c["passed"], bool)
    for track, entry in m["tracks"].items():
        expected = ALL_PLANNERS if track == "unseen-layouts" else ["helm", "helm_no_coarse", "cem", "random", "bfs"]
        assert set(entry["success"]) == set(expected), track
        for planner, rows in entry["success"].items():
            assert set(rows) == {str(T) for T in entry["horizons"]} == {"10", "50"}
            for row in rows.values():
                assert 0.0 <= row["success"] <= 1.0 and row["episodes"] == 2 * len(m["seeds"])
                assert row["ci95"][0] <= row["success"] <= row["ci95"][1]
        assert entry["success"]["bfs"]["50"]["success"] == 1.0
        assert entry["success"]["bfs"]["50"]["path_length_over_optimal"] == 1.0
        for planner, per_T in entry["pareto"].items():  # the default budget plus each --budget-scales
            assert set(per_T) == {"50"} and len(per_T["50"]) == 2
    arrays = dict(np.load(quick_run / "results" / "exp3_arrays.npz"))
    assert arrays["spectral_loss_layouts_seed0"].shape == (m["config"]["model_train_steps"],)
    rebuilt = analyze_planning.plot_all(quick_run / "results" / "metrics.json", arrays, quick_run / "replot")
    assert [p.name for p in rebuilt] == sorted(PLOTS, key=[p.name for p in rebuilt].index) and all(p.exists() for p in rebuilt)


@pytest.mark.slow
@pytest.mark.parametrize("track", ["unseen-layouts", "limited-data", "fourrooms"])
def test_each_track_runs_alone_from_the_command_line(track, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, run_experiment.__file__, "--quick", "--quiet", *SHRINK, "--tracks", track,
                           "--out-dir", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    tracks = _metrics(out)["tracks"]
    assert set(tracks) == {"limited-data-20" if track == "limited-data" else track}
    assert "success rate" in proc.stdout


@pytest.mark.slow
def test_parallel_units_give_the_same_results(tmp_path):
    """--jobs 2 runs the units in worker processes, --launcher local in submitit subprocesses; every
    measured number equals the serial run's."""
    runs = {}
    for name, flags in {"serial": [], "jobs": ["--jobs", "2"], "local": ["--launcher", "local", "--jobs", "2"]}.items():
        out = tmp_path / name
        assert run_experiment.main(["--quick", "--quiet", *SHRINK, "--seeds", "0", "1", *flags,
                                    "--out-dir", str(out)]) == 0
        runs[name] = _metrics(out)
    without_seconds = lambda d: {k: without_seconds(v) if isinstance(v, dict) else v for k, v in d.items()
                                 if "seconds" not in k}
    for name in ("jobs", "local"):
        assert without_seconds(runs[name]["models"]) == without_seconds(runs["serial"]["models"]), name
        assert without_seconds(runs[name]["tracks"]) == without_seconds(runs["serial"]["tracks"]), name


@pytest.mark.slow
def test_worker_processes_end_when_the_main_process_is_killed(tmp_path):
    """--jobs 2: SIGKILL of the main process must not leave its workers training as orphans."""
    import os
    import signal
    import time
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, run_experiment.__file__, "--quick", "--quiet", "--jobs", "2",
                             "--model-train-steps", "5000", "--out-dir", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    children = []
    while len(children) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
        children = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                                    text=True).stdout.split()]
    assert len(children) >= 2, "the workers did not start"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    alive = lambda: [pid for pid in children if os.path.exists(f"/proc/{pid}") and
                     open(f"/proc/{pid}/stat").read().split()[2] != "Z"]
    deadline = time.monotonic() + 30  # a worker still importing torch exits once its initializer has run
    while alive() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not alive(), f"orphaned workers still running: {alive()}"


# ----------------------------------------------------------------------------------------------
# 9. bad input


@pytest.mark.parametrize("flags", [["--tracks", "mars"], ["--planning-horizons", "0"],
                                   ["--planning-horizons", "10", "-5"], ["--coarse-stride", "1"],
                                   ["--replan-every", "0"], ["--cem-elite-frac", "0"], ["--hf-noise-sigma", "0"],
                                   ["--walk-length", "2"], ["--planners", "dijkstra"], ["--gumbel-tau", "-1"],
                                   ["--cem-horizon", "0"], ["--num-train-layouts", "ten"], ["--budget-scales", "0"]])
def test_bad_input_exits_2_with_one_line(flags, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        run_experiment.main([*flags, "--quiet", "--out-dir", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "error" in err
    assert not out.exists()


# ----------------------------------------------------------------------------------------------
# the layout family (train / test layouts)


def test_layouts_are_seeded_connected_and_the_split_is_disjoint():
    train, tuning, test = layout_split(40, 10, 20, split_seed=0)
    assert (train, tuning, test) == layout_split(40, 10, 20, split_seed=0) and len(set(train)) == 40
    walls = lambda s: tuple(sorted(spanning_tree_gaps(3, 5, s)))
    sets = [{walls(s) for s in part} for part in (train, tuning, test)]
    assert [len(w) for w in sets] == [40, 10, 20]
    assert not sets[0] & sets[1] and not sets[0] & sets[2] and not sets[1] & sets[2]
    assert layout_split(40, 10, 20, split_seed=1)[0] != train
    for seed in train[:5] + test[:5]:
        maze = FastMaze(layout_seed=seed)
        assert np.isfinite(maze.cell_distances()).all()  # a spanning tree joins every room
        assert maze.num_poses == 4 * (9 * 25 + 8)  # 9 rooms of 5x5 cells and 8 gaps


@pytest.mark.slow
@pytest.mark.parametrize("env_id,layout_seed", [(ENV_ID, 11), (ENV_ID, 12345), (ENV_ID, 2**31 - 5), (FOURROOMS_ID, 3),
                                                (FOURROOMS_ID, 77)])
def test_fast_maze_equals_minigrid_on_other_layouts(env_id, layout_seed):
    """Random layouts of both families; FourRooms draws its gaps per reset (reset_seed)."""
    kwargs = {"layout_seed": layout_seed} if env_id == ENV_ID else {"reset_seed": layout_seed}
    maze = FastMaze(env_id, **kwargs)
    env = make_env(env_id, **{k: v for k, v in kwargs.items() if k == "layout_seed"})
    env.reset(seed=layout_seed)
    assert (env.unwrapped.grid.encode() == maze.base_image).all()
    rng = np.random.default_rng(layout_seed)
    i = int(rng.integers(maze.num_poses))
    set_pose(env, maze.poses[i])
    for a in rng.integers(NUM_ACTIONS, size=300):
        obs, *_ = env.step(int(a))
        i = maze.next_pose[i, a]
        assert (obs["image"] == maze.images(maze.poses[i][None])[0]).all()
    env.close()


def test_env_reset_is_reproducible_per_seed_and_layout():
    env = make_env(layout_seed=7)
    first = env.reset(seed=3)[0]["image"]
    assert (env.reset(seed=3)[0]["image"] == first).all()
    other = make_env(layout_seed=8).reset(seed=3)[0]["image"]
    assert not (other[..., 0] == first[..., 0]).all()  # another layout has other walls


# ----------------------------------------------------------------------------------------------
# the goal energy: a learned shortest-path distance


def test_goal_energy_values_are_the_shortest_paths_of_its_learned_graph():
    """Converged Bellman-Ford values equal Dijkstra on the graph of the CNN's edge costs (one step: a
    switch of channel at the cell, then a move to a 3x3 neighbour), and are 0 on the goal's own nodes
    (any weights: here random ones with costs spread over two decades)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra
    maze = FastMaze(MAZE2)
    torch.manual_seed(0)
    energy = GoalEnergy(8, 4)
    with torch.no_grad():
        for p in energy.parameters():
            p.mul_(3.0)
    goal = goal_observations(maze, maze.cells[[2]])  # (1, 4, W, H)
    x = one_hot_codes(torch.as_tensor(goal[0]))[None]
    V = energy.values(x).numpy()[0]  # (4, W, H)
    with torch.no_grad():
        move, switch = (c.numpy()[0] for c in energy.edge_costs(x[:, 0]))
    C, W, H = 4, maze.width, maze.height
    node = lambda layer, c, i, j: ((layer * C + c) * W + i) * H + j  # layer 0: nodes, 1: after a switch
    edges = []  # (from, to, cost), walked from the start towards the goal
    for c in range(C):
        for i in range(W):
            for j in range(H):
                edges += [(node(0, c, i, j), node(1, c_to, i, j), switch[c, c_to, i, j]) for c_to in range(C)]
                edges += [(node(1, c, i, j), node(0, c, i + o // 3 - 1, j + o % 3 - 1), move[c, o, i, j])
                          for o in range(9) if 0 <= i + o // 3 - 1 < W and 0 <= j + o % 3 - 1 < H]
    frm, to, cost = map(np.array, zip(*edges))
    reversed_graph = coo_matrix((cost, (to, frm)), shape=(2 * C * W * H,) * 2).tocsr()
    gx, gy = maze.cells[2]
    sources = [node(layer, d, gx, gy) for layer in (0, 1) for d in range(4)]
    expected = dijkstra(reversed_graph, indices=sources, min_only=True)[:C * W * H].reshape(C, W, H)
    np.testing.assert_allclose(V, np.minimum(expected, 1e3), rtol=1e-4)
    assert (V[:, gx, gy] == 0).all()


def test_energy_reach_sees_that_many_steps_from_the_goal_and_no_further():
    """With `energy_reach` K sweeps a node more than K cells from the goal (a step moves one cell, in
    any of 8 directions) keeps the flat value FAR, nearer ones are upper bounds of the converged values,
    and enough sweeps give the converged values exactly."""
    from exp3_planning_efficiency.energy import FAR
    maze = FastMaze(MAZE2)
    torch.manual_seed(0)
    energy = GoalEnergy(8, 4)
    goal = torch.as_tensor(goal_observations(maze, maze.cells[[2]]))  # (1, 4, W, H)
    converged, sweeps = energy.values_of_codes(goal)
    converged = converged[0]
    gx, gy = maze.cells[2]
    i, j = np.meshgrid(np.arange(maze.width), np.arange(maze.height), indexing="ij")
    cells_away = torch.as_tensor(np.maximum(abs(i - gx), abs(j - gy)))
    for K in (2, 5):
        V, sweeps_run = energy.values_of_codes(goal, K)
        assert sweeps_run == K and (V[0][:, cells_away > K] == FAR).all() and (V[0][:, cells_away <= K] < FAR).any()
        assert (V[0] >= converged).all()
    assert torch.equal(energy.values_of_codes(goal, 10_000)[0][0], converged)
    assert energy.values_of_codes(goal, 10_000)[1] == sweeps < 10_000  # stops at the fixed point


@pytest.mark.parametrize("integer_costs", [False, True])
def test_bellman_ford_backward_equals_autograd_through_the_sweeps_bit_for_bit(integer_costs):
    """The hand-written backward of the training sweeps gives the values and gradients of autograd
    through the plain sweeps (unfold, add, amin, minimum) exactly, ties included (integer costs: many
    equal minima, and paths that tie with the source)."""
    from exp3_planning_efficiency.energy import FAR, BellmanFord
    g = torch.Generator().manual_seed(0)
    B, C, W, H = 3, 4, 7, 6
    if integer_costs:
        move, switch = torch.randint(1, 3, (B, C, 9, W, H), generator=g), torch.randint(0, 2, (B, C, C, W, H), generator=g)
        move, switch = move.float(), switch.float()
    else:
        move, switch = torch.rand(B, C, 9, W, H, generator=g) * 3, torch.rand(B, C, C, W, H, generator=g)
    source = torch.full((B, C, W, H), FAR)
    source[:, :, 2, 3] = 0
    if integer_costs:
        source[0, 0, 0, 0] = 4.0  # a finite source value away from the goal, which integer paths can tie
    weights = torch.rand(B, C, W, H, generator=g)
    grads = []
    for method in ("hand-written", "autograd"):
        m, s = move.clone().requires_grad_(), switch.clone().requires_grad_()
        if method == "autograd":
            V = source
            for _ in range(5):
                neighbours = F.unfold(F.pad(V, (1, 1, 1, 1), value=FAR), 3).reshape(B, C, 9, W, H)
                V = torch.minimum(source, (neighbours + m).amin(2))
                V = torch.minimum(source, (V[:, None] + s).amin(2))
        else:
            V = BellmanFord.apply(m, s, source, 5)
        (V * weights).sum().backward()
        grads.append((V.detach(), m.grad, s.grad))
    for mine, reference in zip(*grads):
        assert torch.equal(mine, reference)
    assert grads[0][1].abs().sum() > 0 and grads[0][2].abs().sum() > 0


def test_read_codes_equals_read_of_the_one_hot_observations():
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 2, (3, 5, 7, 6), generator=g, dtype=torch.uint8)
    codes[:, :, 2, 3] = torch.randint(2, 6, (3, 5), generator=g, dtype=torch.uint8)  # one agent per observation
    V = torch.rand(3, 4, 7, 6, generator=g) * 100
    x = one_hot_codes(codes.flatten(0, 1)).unflatten(0, (3, 5))
    assert torch.equal(GoalEnergy.read_codes(V, codes), GoalEnergy.read(V, x))


def test_energy_loss_fits_transitions_both_ways_and_holds_longer_pairs_below_the_replay():
    from exp3_planning_efficiency.energy import PUSH_CAP, UNREACHED, energy_loss
    d = torch.tensor([[0.5, 3.0, 8.0, 9.0]])
    target = torch.tensor([[1.0, 5.0, 6.0, float(UNREACHED)]])
    # (0.5 - 1)^2 two-sided, 3 < 5 free, (8 - 6)^2 hinge, unreached pair: bonus only
    expected = (0.25 + 0 + 4.0) / 3 - 2.0 * (0.5 + 3 + 8 + 9) / 4 / PUSH_CAP
    torch.testing.assert_close(energy_loss(d, target, 2.0), torch.tensor(expected))


@pytest.mark.slow
def test_goal_energy_learns_the_distances_of_an_unseen_layout_from_replay():
    """Trained on random-walk replay of 20 small mazes, the energy ranks the BFS distances of other
    mazes (never seen) almost exactly."""
    from types import SimpleNamespace
    from scipy.stats import spearmanr
    from exp3_planning_efficiency.energy import train_energy
    make = lambda seed: FastMaze(MAZE2, layout_seed=seed)
    train, test = [make(s) for s in range(20)], [make(s) for s in range(100, 105)]
    cfg = SimpleNamespace(energy_lr=1e-2, energy_train_steps=300, energy_batch_size=16, energy_starts_per_goal=16,
                          hf_noise_sigma=0.0, energy_push_weight=10.0)
    torch.manual_seed(0)
    energy = GoalEnergy(8, 16)
    replay = Replay(train, 10, 24, np.random.default_rng(0))
    losses = train_energy(energy, replay, cfg, np.random.default_rng(1), torch.Generator().manual_seed(2), quiet=True)
    assert np.isfinite(losses).all()
    pred, true = [], []
    with torch.no_grad():
        for maze in test:
            C = maze.cell_distances()
            V = energy.values_of_codes(torch.as_tensor(goal_observations(maze, maze.cells)))[0]
            x = one_hot_codes(torch.as_tensor(maze.codes(maze.poses)))
            pred.append(GoalEnergy.read(V, x[None].expand(len(V), -1, -1, -1, -1)).numpy().T)
            true.append(C)
    assert spearmanr(np.concatenate(pred).ravel(), np.concatenate(true).ravel()).statistic > 0.9


class TwoHeadModel(ExactModel):
    """ExactModel with a second coarse member that is wrong (stays put) on macros starting with a left turn."""

    coarse = [None, None]

    def coarse_step(self, z, macro, head=0):
        moved = ExactModel.coarse_step(self, z, macro)
        return torch.where(macro[:, :1, 0] > 0, z, moved) if head == 1 else moved


def test_coarse_predictions_the_ensemble_disagrees_on_lead_to_the_unknown_state(open_room):
    """Where the coarse members' decoded observations differ the graph records UNKNOWN (absorbing,
    infinite energy); each member's call counts as a model evaluation."""
    from exp3_planning_efficiency.planners import UNKNOWN
    maze, C, cfg, _, energy, (layouts, starts, goals, dist) = open_room
    model = TwoHeadModel(maze, cfg.coarse_stride)
    rng = np.random.default_rng(0)
    graph = LazyGraph(model, energy, np.stack([goal_observations(maze, g[None])[0] for g in goals]), "cpu")
    n = len(goals)
    ids = torch.as_tensor(graph.ids_of(np.arange(n), maze.codes(starts)))
    view = GraphView(graph, np.arange(n))
    macros = torch.as_tensor(rng.integers(graph.num_macros, size=(n, 1)))
    nxt = view.coarse(ids[:, None], macros)[:, 0]
    z = model.encode_codes(torch.as_tensor(maze.codes(starts)))
    heads = [model.decode_codes(model.coarse_step(z, graph.macros[macros[:, 0]], h)).numpy() for h in (0, 1)]
    agree = torch.as_tensor((heads[0] == heads[1]).reshape(n, -1).all(1))
    assert 0 < agree.sum() < n
    assert torch.equal(nxt == UNKNOWN, ~agree)
    assert (graph.codes[np.arange(n)[agree], nxt[agree].numpy()] == heads[0][agree.numpy()]).all()
    assert torch.isinf(view.to_goal(nxt[:, None])[~agree, 0]).all()
    assert (view.coarse(nxt[:, None], macros)[~agree] == UNKNOWN).all()  # absorbing
    assert (graph.evals == 4 + 2 + 1 + 2).all()  # goal values, two coarse requests x 2 members, one energy
    towards_start = view.distance_to(ids)(nxt[:, None])[:, 0]  # a subgoal's distance: UNKNOWN is infinitely far
    assert torch.isinf(towards_start[~agree]).all() and torch.isfinite(towards_start[agree]).all()


@pytest.mark.slow
def test_layout_sweep_keeps_the_total_walks_and_replots_from_its_json(tmp_path):
    from exp3_planning_efficiency import sweep_layouts
    out = tmp_path / "out"
    flags = ["--quick", "--quiet", *SHRINK, "--layout-sweep", "1", "4", "--out-dir", str(out)]
    assert sweep_layouts.main(flags) == 0
    saved = json.loads((out / "results" / "layout_sweep.json").read_text())
    assert [(p["num_train_layouts"], p["walks_per_layout"]) for p in saved["points"]] == [(1, 20), (4, 5)]
    for point in saved["points"]:
        assert set(point["success"]) == {"helm", "helm_no_coarse", "cem", "bfs"}
        assert point["success"]["bfs"]["10"]["success"] == 1.0
        assert 0 <= point["quality"]["energy_spearman"] <= 1 or np.isnan(point["quality"]["energy_spearman"])
    plot = out / "plots" / "exp3_layout_sweep.png"
    assert plot.stat().st_size > 10_000
    assert analyze_planning.plot_layout_sweep(saved, tmp_path / "replot.png").stat().st_size > 10_000  # from the json alone


# ----------------------------------------------------------------------------------------------
# the local energy: an embedding distance that sees a few cells, never the whole maze


def test_local_energy_is_a_distance_that_a_far_wall_cannot_change(default_maze):
    from exp3_planning_efficiency.local_energy import RECEPTIVE_RADIUS, LocalEnergy
    maze = default_maze[0]
    torch.manual_seed(0)
    energy = LocalEnergy(8)
    goal_cell = maze.cells[0]
    goal = torch.as_tensor(goal_observations(maze, goal_cell[None]))  # (1, 4, W, H)
    V = energy.values_of_codes(goal)[0][0]  # (4, W, H)
    assert V.min() >= 0 and (V[:, goal_cell[0], goal_cell[1]] < 1e-3).all()  # d(g, g) = 0
    # flip a cell far (Chebyshev distance > 2 radii) from the goal and from a probe node: the probe's
    # distance to the goal does not move; a flip next to the probe does move it
    W, H = goal.shape[-2:]
    i, j = np.meshgrid(np.arange(W), np.arange(H), indexing="ij")
    far_from = lambda cell: np.maximum(abs(i - cell[0]), abs(j - cell[1])) > RECEPTIVE_RADIUS
    probe = next(c for c in maze.cells if far_from(goal_cell)[c[0], c[1]] and max(abs(c - goal_cell)) > 6)
    far = np.argwhere(far_from(goal_cell) & far_from(probe))[0]
    near = probe + np.array([1, 0]) if probe[0] + 1 < W else probe - np.array([1, 0])
    for cell, moves in ((far, False), (near, True)):
        changed = goal.clone()
        changed[..., cell[0], cell[1]] = 1 - changed[..., cell[0], cell[1]].clamp(max=1)  # wall <-> floor
        V2 = energy.values_of_codes(changed)[0][0]
        assert torch.equal(V2[:, probe[0], probe[1]], V[:, probe[0], probe[1]]) != moves


def test_replay_distances_come_from_observation_identity():
    """Nodes are distinct observations: here each label (pose) shows a distinct observation, so the
    distances are the shortest paths of the recorded pose transitions; labels never visited stay
    UNREACHED."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import shortest_path

    from exp3_planning_efficiency.energy import UNREACHED, replay_distances
    mazes = [FastMaze(MAZE2)]
    replay = Replay(mazes, 6, 10, np.random.default_rng(0))
    out = replay_distances(replay)[0]
    P = out.shape[0]
    src, dst = replay.poses[:, :-1].ravel(), replay.poses[:, 1:].ravel()
    d = shortest_path(csr_matrix((np.ones(src.size), (src, dst)), shape=(P, P)), unweighted=True)
    visited = np.unique(replay.poses)
    expected = np.full((P, P), UNREACHED)
    expected[np.ix_(visited, visited)] = np.where(np.isfinite(d), d, UNREACHED)[np.ix_(visited, visited)]
    assert (out == expected).all() and len(visited) < P
