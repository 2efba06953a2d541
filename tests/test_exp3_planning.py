"""Experiment 3 (planning efficiency): BFS distances, the fast simulator against MiniGrid, task
sampling, every planner with a perfect (exact) model, goal observations, smoke runs, bad input."""

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
from exp3_planning_efficiency import analyze_planning, run_experiment
from exp3_planning_efficiency.env_minigrid import (AGENT, ENV_ID, NUM_ACTIONS, FastMaze, SpanningMazeEnv, layout_split,
                                                   make_env, poses_from_images, sample_tasks, set_pose,
                                                   spanning_tree_gaps)
from exp3_planning_efficiency.planners import MODEL_PLANNERS, flat_gd, helm
from exp3_planning_efficiency.run_planning import goal_embedding, run_episodes
from exp3_planning_efficiency.world_models import GoalEnergy, SnappedEnergy, SnappedModel, WorldModel

ROOM3 = "HELM-TestRoom3-v0"  # one 3x3 room (5x5 grid with the outer wall)
ROOM5 = "HELM-TestRoom5-v0"  # one 5x5 open room
MAZE2 = "HELM-TestMaze2x2-v0"  # 2x2 rooms of 2x2 cells joined by 3 gaps
for _id, _kw in ((ROOM3, dict(rooms=1, room_size=3)), (ROOM5, dict(rooms=1, room_size=5)),
                 (MAZE2, dict(rooms=2, room_size=2, layout_seed=3))):
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=SpanningMazeEnv, kwargs=_kw)

PLOTS = ["exp3_success_vs_horizon.png", "exp3_planning_cost.png", "exp3_world_model.png", "exp3_training_curves.png"]
ALL_PLANNERS = ["flat", "helm", "cem", "random", "bfs"]
SHRINK = ["--num-walks", "100", "--model-train-steps", "30", "--energy-train-steps", "30", "--planning-horizons", "10",
          "--num-eval-episodes", "2", "--gd-steps", "5", "--cem-num-samples", "16", "--cem-num-iters", "2",
          "--hidden-dim", "16"]


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
# 4. every planner solves an open-room task with a perfect model


class ExactModel:
    """Duck-typed world model on one-hot pose latents with the true transitions (linear, so
    differentiable in relaxed actions): step(z, a) = sum_i a_i z P_i."""

    def __init__(self, maze, coarse_stride):
        self.maze, self.coarse_stride = maze, coarse_stride
        P = np.zeros((NUM_ACTIONS, maze.num_poses, maze.num_poses), dtype=np.float32)
        for a in range(NUM_ACTIONS):
            P[a, np.arange(maze.num_poses), maze.next_pose[:, a]] = 1
        self.P = torch.as_tensor(P)
        self.seen_actions = []

    def encode_images(self, images):
        p = poses_from_images(images)
        return F.one_hot(torch.as_tensor(self.maze.pose_index[p[:, 0], p[:, 1], p[:, 2]]), self.maze.num_poses).float()

    def step(self, z, a):
        self.seen_actions.append(a.detach())
        return sum(a[..., i:i + 1] * (z @ self.P[i]) for i in range(NUM_ACTIONS))

    def coarse_step(self, z, macro):
        for j in range(macro.shape[-2]):
            z = self.step(z, macro[..., j, :])
        return z


class ExactEnergy:
    """Duck-typed goal energy: embed(goal latents (B, 4, D)) -> (B, D) true BFS distance of every pose
    to the goal cell; to_goal(z (B, ..., D), goal (B, D)) = z . d_goal -> (B, ...)."""

    def __init__(self, pose_dist):
        self.pose_dist = torch.as_tensor(pose_dist, dtype=torch.float32)

    def embed_goal(self, z_goal):
        assert z_goal.shape[1] == 4
        return self.pose_dist[:, z_goal.argmax(-1)].amin(-1).T  # (D, B, 4) -> (B, D)

    def to_goal(self, z, goal):
        g = goal.reshape(goal.shape[0], *([1] * (z.dim() - 2)), goal.shape[-1])
        return (z * g).sum(-1)


@pytest.fixture(scope="module")
def open_room():
    maze = FastMaze(ROOM5)
    D, C = maze.pose_distances(), maze.cell_distances()
    cfg = dataclasses.replace(Exp3Config(), env_id=ROOM5, coarse_stride=3, helm_top_k=4, gd_steps=30, gd_lr=0.5,
                              cem_num_samples=64, cem_num_iters=3, replan_every=4)
    starts, goals, dist = sample_tasks(maze, C, 6, 8, np.random.default_rng(1))
    return maze, D, C, cfg, starts, goals, dist


def test_exact_model_and_energy_are_exact(open_room):
    maze, D, C, *_ = open_room
    model, energy = ExactModel(maze, 3), ExactEnergy(D)
    rng = np.random.default_rng(0)
    i, a = rng.integers(maze.num_poses, size=50), rng.integers(NUM_ACTIONS, size=50)
    z = model.encode_images(maze.images(maze.poses[i]))
    nxt = model.step(z, F.one_hot(torch.as_tensor(a), NUM_ACTIONS).float())
    assert (nxt.argmax(-1).numpy() == maze.next_pose[i, a]).all() and (nxt.sum(-1) == 1).all()
    cells = maze.cells[rng.integers(len(maze.cells), size=50)]
    goal = goal_embedding(model, energy, maze, cells)
    true = C[i, [cell_idx(maze, *c) for c in cells]]
    assert torch.equal(energy.to_goal(z, goal), torch.as_tensor(true, dtype=torch.float32))


@pytest.mark.parametrize("planner", ["flat", "helm", "cem", "bfs"])
def test_planner_solves_open_room_with_a_perfect_model(planner, open_room):
    maze, D, C, cfg, starts, goals, dist = open_room
    assert ((dist > 3) & (dist <= 6)).all()
    model, energy = ExactModel(maze, cfg.coarse_stride), ExactEnergy(D)
    budget = 16
    out = run_episodes(planner, model, energy, maze, C, starts, goals, budget, cfg, torch.Generator().manual_seed(0))
    assert out["success"].all(), out["steps"]
    assert (out["steps"] >= dist).all() and (out["steps"] <= budget).all()
    if planner in ("helm", "bfs"):  # greedy descent of the exact distance is optimal
        assert (out["steps"] == dist).all()
    if planner == "bfs":
        assert (out["model_evals"] == 0).all()
    else:
        assert (out["model_evals"] > 0).all()


def test_random_planner_does_not_solve_the_open_room(open_room):
    maze, D, C, cfg, starts, goals, dist = open_room
    out = run_episodes("random", ExactModel(maze, 3), ExactEnergy(D), maze, C, starts, goals, 6, cfg,
                       torch.Generator().manual_seed(0))
    assert out["success"].mean() < 0.5 and (out["model_evals"] == 0).all()


def test_one_helm_plan_executed_in_fast_maze_descends_the_distance(open_room):
    maze, D, C, cfg, starts, goals, dist = open_room
    model, energy = ExactModel(maze, 3), ExactEnergy(D)
    z = model.encode_images(maze.images(starts))
    goal = goal_embedding(model, energy, maze, goals)
    actions, evals = helm(model, energy, z, goal, 10, cfg)
    assert actions.shape == (len(starts), 3) and evals == 3 ** 3 + cfg.helm_top_k * 3
    i = maze.pose_index[starts[:, 0], starts[:, 1], starts[:, 2]]
    for t in range(3):
        i = maze.next_pose[i, actions[:, t].numpy()]
    gi = [cell_idx(maze, *g) for g in goals]
    assert (C[i, gi] == dist - 3).all()  # every macro-step gains exactly 3 (all tasks are > 3 away)


# ----------------------------------------------------------------------------------------------
# 5. planners' outputs: flat GD optimizes relaxed actions, executes one-hot (argmax) ones


@pytest.mark.parametrize("planner", sorted(MODEL_PLANNERS))
def test_planners_return_integer_actions(planner, open_room):
    maze, D, C, cfg, starts, goals, _ = open_room
    model, energy = ExactModel(maze, cfg.coarse_stride), ExactEnergy(D)
    z = model.encode_images(maze.images(starts))
    goal = goal_embedding(model, energy, maze, goals)
    H = 7
    cfg = dataclasses.replace(cfg, gd_steps=5)
    with torch.no_grad():  # as run_episodes calls them
        actions, evals = MODEL_PLANNERS[planner](model, energy, z, goal, H, cfg, torch.Generator().manual_seed(0))
    assert actions.dtype == torch.long and actions.dim() == 2 and actions.shape[0] == len(starts)
    assert 1 <= actions.shape[1] <= H and ((actions >= 0) & (actions < NUM_ACTIONS)).all()
    cem_H = min(H, getattr(cfg, "cem_horizon", H))
    expected_len = {"flat": H, "cem": cem_H, "random": H, "helm": cfg.coarse_stride}[planner]
    assert actions.shape[1] == expected_len
    assert evals == {"flat": 5 * H, "cem": cfg.cem_num_iters * cfg.cem_num_samples * cem_H, "random": 0,
                     "helm": 3 ** 3 + cfg.helm_top_k * 3}[planner]


def test_flat_gd_optimizes_gumbel_softmax_actions_and_executes_their_argmax(open_room):
    maze, D, C, cfg, starts, goals, _ = open_room
    model, energy = ExactModel(maze, 3), ExactEnergy(D)
    z = model.encode_images(maze.images(starts))
    goal = goal_embedding(model, energy, maze, goals)
    model.seen_actions.clear()
    with torch.no_grad():
        actions, _ = flat_gd(model, energy, z, goal, 5, dataclasses.replace(cfg, gd_steps=4),
                             torch.Generator().manual_seed(0))
    relaxed = torch.stack(model.seen_actions)  # (4 gd steps x 5 steps, B, 3)
    assert relaxed.shape == (20, len(starts), 3)
    assert torch.allclose(relaxed.sum(-1), torch.ones(()), atol=1e-5) and (relaxed > 0).all()
    assert (relaxed.amax(-1) < 1 - 1e-4).any()  # optimized through relaxed (not one-hot) actions
    assert actions.shape == (len(starts), 5) and actions.dtype == torch.long
    assert set(actions.unique().tolist()) <= {0, 1, 2}
    one_hot = F.one_hot(actions, NUM_ACTIONS)
    assert (one_hot.sum(-1) == 1).all()  # what is executed is one action per step


def test_helm_within_the_last_coarse_step_refines_every_macro(open_room):
    maze, D, C, cfg, starts, goals, dist = open_room
    model, energy = ExactModel(maze, 3), ExactEnergy(D)
    z = model.encode_images(maze.images(starts))
    goal = goal_embedding(model, energy, maze, goals)
    actions, evals = helm(model, energy, z, goal, 2, cfg)  # H = 2 < coarse_stride: no coarse level
    assert actions.shape == (len(starts), 2) and evals == 9 * 2
    i = maze.pose_index[starts[:, 0], starts[:, 1], starts[:, 2]]
    for t in range(2):
        i = maze.next_pose[i, actions[:, t].numpy()]
    assert (C[i, [cell_idx(maze, *g) for g in goals]] == dist - 2).all()


# ----------------------------------------------------------------------------------------------
# 6. goal observations: the agent stands on the goal cell, facing each of the 4 directions


class SpyModel:
    def __init__(self):
        self.images = None

    def encode_images(self, images):
        self.images = images.copy()
        return torch.zeros(len(images), 5)


class IdentityEnergy:
    def embed_goal(self, z):
        return z


def test_goal_observations_have_the_agent_on_the_goal_cell(default_maze):
    maze = default_maze[0]
    rng = np.random.default_rng(3)
    goals = maze.cells[rng.choice(len(maze.cells), size=6, replace=False)]
    spy = SpyModel()
    emb = goal_embedding(spy, IdentityEnergy(), maze, goals)
    assert emb.shape == (6, 4, 5)
    images = spy.images.reshape(6, 4, maze.width, maze.height, 3)
    env = make_env()
    env.reset(seed=0)
    for b, (x, y) in enumerate(goals):
        for d in range(4):
            image = images[b, d]
            assert image[x, y, 0] == AGENT and image[x, y, 2] == d
            assert (image[..., 0] == AGENT).sum() == 1  # exactly one agent, on the goal
            assert (poses_from_images(image) == (x, y, d)).all()
            assert (set_pose(env, (x, y, d)) == image).all()  # the real env renders the same observation
            others = np.ones((maze.width, maze.height), bool)
            others[x, y] = False
            assert (image[others] == maze.base_image[others]).all()
    env.close()
    assert (poses_from_images(images) == np.concatenate(
        [np.repeat(goals[:, None], 4, 1), np.tile(np.arange(4), (6, 1))[..., None]], -1)).all()


# ----------------------------------------------------------------------------------------------
# 7. smoke runs


def _metrics(out):
    return json.loads((out / "results" / "metrics.json").read_text())


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp3_quick")
    assert run_experiment.main(["--quick", "--out-dir", str(out), "--quiet"]) == 0
    return out


@pytest.mark.slow
def test_quick_run_writes_plots_and_metrics(quick_run):
    for name in PLOTS:
        assert (quick_run / "plots" / name).stat().st_size > 10_000
    m = _metrics(quick_run)
    assert {"experiment", "config", "seeds", "runtime_seconds", "environment", "criteria", "success",
            "world_model", "num_poses", "max_bfs_distance"} <= set(m)
    assert m["num_poses"] == 932 and m["diverged_seeds"] == []
    assert len(m["criteria"]) == 5
    for c in m["criteria"]:
        assert {"name", "target", "measured", "passed"} <= set(c) and isinstance(c["passed"], bool)
    assert set(m["success"]) == set(ALL_PLANNERS)
    for planner, rows in m["success"].items():
        assert set(rows) == {"10", "20"}
        for row in rows.values():
            assert 0.0 <= row["success"] <= 1.0 and row["episodes"] == 4 * len(m["seeds"])
            assert row["ci95"][0] <= row["success"] <= row["ci95"][1]
    for T in ("10", "20"):
        assert m["success"]["bfs"][T]["success"] == 1.0 and m["success"]["bfs"][T]["model_evals_per_episode"] == 0
        assert m["success"]["helm"][T]["model_evals_per_episode"] < m["success"]["cem"][T]["model_evals_per_episode"]
    # plots rebuild from metrics.json and the saved loss curves
    arrays = dict(np.load(quick_run / "results" / "exp3_arrays.npz"))
    assert arrays["model_loss_seed0"].shape == (m["config"]["model_train_steps"],) and np.isfinite(arrays["energy_loss_seed0"]).all()
    rebuilt = analyze_planning.plot_all(quick_run / "results" / "metrics.json", arrays, quick_run / "replot")
    assert [p.name for p in rebuilt] == PLOTS and all(p.exists() for p in rebuilt)


@pytest.mark.slow
def test_command_line_run_exits_0_and_same_seed_gives_identical_success(tmp_path):
    cli, again = tmp_path / "cli", tmp_path / "again"
    proc = subprocess.run([sys.executable, run_experiment.__file__, "--quick", "--quiet", *SHRINK,
                           "--out-dir", str(cli)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "success rate" in proc.stdout
    assert run_experiment.main(["--quick", "--quiet", *SHRINK, "--out-dir", str(again)]) == 0
    a, b = _metrics(cli)["success"], _metrics(again)["success"]
    assert set(a) == set(ALL_PLANNERS)
    for planner in a:
        for key in ("success", "success_per_seed", "model_evals_per_episode", "steps_to_goal_mean"):
            assert a[planner]["10"][key] == b[planner]["10"][key], (planner, key)
    assert a["bfs"]["10"]["success"] == 1.0


@pytest.mark.slow
def test_plot_world_model_survives_a_constant_energy(quick_run, tmp_path):
    """A constant goal energy has an undefined (NaN) Spearman correlation, stored as null in JSON
    (regression: plot_world_model formatted it with :.3f and crashed with TypeError)."""
    m = _metrics(quick_run)
    for quality in m["world_model"].values():
        quality["energy"]["spearman"] = None
        quality["k_step_accuracy"]["coarse"] = None
    analyze_planning.plot_world_model(m, tmp_path / "wm.png")
    assert (tmp_path / "wm.png").exists()


# ----------------------------------------------------------------------------------------------
# 8. bad input


@pytest.mark.parametrize("flags", [["--env-id", "MiniGrid-NoSuchEnv-v0"], ["--planning-horizons", "0"],
                                   ["--planning-horizons", "10", "-5"], ["--coarse-stride", "0"],
                                   ["--replan-every", "0"], ["--cem-elite-frac", "0"], ["--helm-top-k", "0"],
                                   ["--walk-length", "2"], ["--planners", "dijkstra"], ["--gumbel-tau", "-1"],
                                   ["--cem-horizon", "0"], ["--num-walks", "ten"]])
def test_bad_input_exits_2_with_one_line(flags, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        run_experiment.main([*flags, "--quiet", "--out-dir", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "error" in err
    assert not out.exists()


@pytest.mark.slow
def test_bad_input_through_the_command_line(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, run_experiment.__file__, "--coarse-stride", "0", "--out-dir", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--coarse-stride" in lines[0], proc.stderr
    assert proc.stdout == "" and not out.exists()


def test_horizon_beyond_the_maze_exits_2_before_training(tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        run_experiment.main(["--quick", "--quiet", "--num-walks", "20", "--model-train-steps", "2",
                             "--energy-train-steps", "2", "--planners", "bfs", "--planning-horizons", "10", "200",
                             "--out-dir", str(out)])
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (out / "checkpoints").exists()


def test_snapped_model_equals_snapping_the_network_after_every_call(default_maze):
    """SnappedModel's tables are decode(step(encode(pose))) etc. of the network, for any weights."""
    maze = default_maze[0]
    torch.manual_seed(0)
    model = WorldModel(maze.width, maze.height, latent_dim=8, hidden_dim=16, coarse_stride=2)
    energy = GoalEnergy(8, 16)
    snapped = SnappedModel(model)
    snapped_energy = SnappedEnergy(energy, snapped)
    rng = np.random.default_rng(0)
    poses = torch.as_tensor(maze.poses[rng.integers(maze.num_poses, size=40)])
    actions = F.one_hot(torch.as_tensor(rng.integers(NUM_ACTIONS, size=(40, 2))), NUM_ACTIONS).float()
    with torch.no_grad():
        z = model.encode_poses(model.decode(model.encode_poses(poses)))  # snapped encoding of the observation
        ids = snapped.encode_images(maze.images(poses.numpy()))
        assert torch.equal(snapped.ids(model.decode(z)), ids)
        fine = model.decode(model.step(z, actions[:, 0]))
        assert torch.equal(snapped.ids(fine), snapped.step(ids, actions[:, 0]))
        coarse = model.decode(model.coarse_step(z, actions))
        assert torch.equal(snapped.ids(coarse), snapped.coarse_step(ids, actions))
        goal_cells = maze.cells[rng.integers(len(maze.cells), size=40)]
        goal_poses = np.concatenate([np.repeat(goal_cells[:, None], 4, 1), np.tile(np.arange(4), (40, 1))[..., None]], -1)
        z_goal = model.encode_poses(model.decode(model.encode_poses(torch.as_tensor(goal_poses))))
        expected = energy.to_goal(z, energy.embed_goal(z_goal))
        table = goal_embedding(snapped, snapped_energy, maze, goal_cells)
        torch.testing.assert_close(snapped_energy.to_goal(ids, table), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_parallel_seeds_give_the_same_results(tmp_path):
    """--jobs 2 runs the seeds in worker processes; every measured number equals the serial run's."""
    runs = {}
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        assert run_experiment.main(["--quick", "--quiet", *SHRINK, "--seeds", "0", "1", "--jobs", str(jobs),
                                    "--out-dir", str(out)]) == 0
        runs[jobs] = json.loads((out / "results" / "metrics.json").read_text())
    assert runs[1]["world_model"] == runs[2]["world_model"]
    for planner, rows in runs[1]["success"].items():
        for T, row in rows.items():
            other = runs[2]["success"][planner][T]
            assert {k: v for k, v in row.items() if "seconds" not in k} == \
                   {k: v for k, v in other.items() if "seconds" not in k}


# ----------------------------------------------------------------------------------------------
# the layout family (train / test layouts)


def test_layouts_are_seeded_connected_and_the_split_is_disjoint():
    train, test = layout_split(40, 20, split_seed=0)
    assert (train, test) == layout_split(40, 20, split_seed=0) and len(set(train)) == 40
    walls = lambda s: tuple(sorted(spanning_tree_gaps(3, 5, s)))
    assert not {walls(s) for s in train} & {walls(s) for s in test}
    assert layout_split(40, 20, split_seed=1)[0] != train
    for seed in train[:5] + test[:5]:
        maze = FastMaze(layout_seed=seed)
        assert np.isfinite(maze.cell_distances()).all()  # a spanning tree joins every room
        assert maze.num_poses == 4 * (9 * 25 + 8)  # 9 rooms of 5x5 cells and 8 gaps


@pytest.mark.slow
@pytest.mark.parametrize("layout_seed", [11, 12345, 2**31 - 5])
def test_fast_maze_equals_minigrid_on_other_layouts(layout_seed):
    maze = FastMaze(layout_seed=layout_seed)
    env = make_env(layout_seed=layout_seed)
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
