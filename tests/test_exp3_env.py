"""Experiment 3's environment (env_minigrid.py): BFS distances, the fast simulator against MiniGrid,
task sampling, observation codes, replay, the layout family; and the learned parts never read it."""

from collections import deque

import numpy as np
import pytest

from common.output_folder import REPO_ROOT
from exp3_mazes import MAZE2, ROOM3, cell_idx, idx
from exp3_planning_efficiency.env_minigrid import (ENV_ID, FOURROOMS_ID, NUM_ACTIONS, FastMaze, Replay,
                                                   goal_observations, layout_split, make_env, observation_codes,
                                                   poses_from_images, sample_tasks, set_pose, spanning_tree_gaps,
                                                   tasks_across_layouts)


def flipped(maze):
    """Index of each pose turned around (dir + 2)."""
    p = maze.poses
    return maze.pose_index[p[:, 0], p[:, 1], (p[:, 2] + 2) % 4]


# ----------------------------------------------------------------------------------------------
# BFS distances


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
# the fast simulator equals MiniGrid


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
# task sampling


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
# observations, goal observations and tasks across layouts


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
        for layout, s, g, dd in zip(layouts, starts, goals, d):
            m = mazes[layout]
            assert dists[layout][m.pose_index[tuple(s)], cell_idx(m, *g)] == dd and T / 2 < dd <= T
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
# the layout family (train / test layouts)


def test_layouts_are_seeded_connected_and_the_split_is_disjoint():
    train, tuning, test = layout_split(40, 10, 20, split_seed=0)
    assert (train, tuning, test) == layout_split(40, 10, 20, split_seed=0) and len(set(train)) == 40
    def walls(s):
        return tuple(sorted(spanning_tree_gaps(3, 5, s)))
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
# the learned parts never read the environment


@pytest.mark.parametrize("module", ["planners", "energy", "world_models", "losses"])
def test_learned_parts_and_planners_do_not_read_the_environment(module):
    source = (REPO_ROOT / "exp3_planning_efficiency" / f"{module}.py").read_text()
    for internal in ("FastMaze", "cell_dist", "next_pose", "poses_from_images", "pose_index", "base_image",
                     "agent_pos", "from minigrid", "import gymnasium"):
        assert internal not in source, (module, internal)
    imports = [line for line in source.splitlines() if "env_minigrid import" in line]
    allowed = {"NUM_ACTIONS", "NUM_CODES", "FIRST_AGENT_CODE", "Replay"}
    for line in imports:
        assert set(line.split("import")[1].replace(" ", "").split(",")) <= allowed, line
