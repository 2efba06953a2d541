"""The MiniGrid mazes of Experiment 3: the layout family, its fast batched twin, BFS, tasks and replay.

`HELM-SpanningMaze-v0` is a 19x19 MiniGrid of 3x3 rooms (5x5 cells each) whose connecting wall gaps
follow a random spanning tree of the room graph, drawn from `layout_seed` (an env kwarg,
`gym.make(ENV_ID, layout_seed=s)`; ~10^7 layouts). Within a layout the agent's pose (x, y, dir) is the
whole state (932 poses); shortest paths (turns count) reach ~80 actions, enough for tasks at
horizons 10..80. `layout_split` draws disjoint train / tuning / test sets of layouts.
`MiniGrid-FourRooms-v0` (gaps drawn per reset) is the zero-shot family. Actions: 0 left, 1 right,
2 forward.

Observations are MiniGrid's fully observable symbolic image (W, H, 3) = [object, colour, state]
(`FullyObsWrapper`); `observation_codes` recodes it cell by cell into what every model sees.
`FastMaze` reproduces one layout (turns, moves, walls and the observation) with numpy (~1e6
steps/s instead of ~1.6e3); tests check it equals MiniGrid step by step on random layouts of both
families. Data collection and evaluation episodes run in it. BFS distances are for task sampling and
reference measurements only.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from minigrid.core.constants import COLOR_TO_IDX, DIR_TO_VEC, OBJECT_TO_IDX
from minigrid.core.grid import Grid
from minigrid.core.mission import MissionSpace
from minigrid.minigrid_env import MiniGridEnv
from minigrid.wrappers import FullyObsWrapper
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path

from common.runs import numpy_rng

ENV_ID = "HELM-SpanningMaze-v0"
FOURROOMS_ID = "MiniGrid-FourRooms-v0"
NUM_ACTIONS = 3
AGENT = OBJECT_TO_IDX["agent"]
WALL = OBJECT_TO_IDX["wall"]
FREE_OBJECTS = (OBJECT_TO_IDX["empty"], OBJECT_TO_IDX["goal"])  # FourRooms' goal square can be stepped on
NUM_CODES, FIRST_AGENT_CODE = 6, 2  # observation codes: 0 floor, 1 wall, 2 + d agent facing d
DIRS = np.array(DIR_TO_VEC)  # (4, 2): dir 0 = +x, 1 = +y, 2 = -x, 3 = -y


class SpanningMazeEnv(MiniGridEnv):
    """Rooms on a `rooms x rooms` lattice joined by one-cell gaps along a random spanning tree."""

    def __init__(self, rooms: int = 3, room_size: int = 5, layout_seed: int = 0, max_steps: int = 10_000, **kwargs):
        self.rooms, self.room_size, self.layout_seed = rooms, room_size, layout_seed
        size = rooms * (room_size + 1) + 1
        super().__init__(mission_space=MissionSpace(mission_func=lambda: "reach the goal cell"),
                         width=size, height=size, max_steps=max_steps, see_through_walls=True, **kwargs)

    def _gen_grid(self, width: int, height: int) -> None:
        self.grid = Grid(width, height)
        self.grid.wall_rect(0, 0, width, height)
        stride = self.room_size + 1
        for k in range(1, self.rooms):
            self.grid.horz_wall(0, k * stride)
            self.grid.vert_wall(k * stride, 0)
        for x, y in spanning_tree_gaps(self.rooms, self.room_size, self.layout_seed):
            self.grid.set(x, y, None)
        self.place_agent()


def spanning_tree_gaps(rooms: int, room_size: int, layout_seed: int) -> list[tuple[int, int]]:
    """Wall cells opened between rooms: a random spanning tree (randomized DFS) of the room lattice."""
    rng = np.random.default_rng(layout_seed)
    stride = room_size + 1
    visited, stack, gaps = {(0, 0)}, [(0, 0)], []
    while stack:
        i, j = stack[-1]
        options = [(i + di, j + dj) for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1))
                   if 0 <= i + di < rooms and 0 <= j + dj < rooms and (i + di, j + dj) not in visited]
        if not options:
            stack.pop()
            continue
        ni, nj = options[rng.integers(len(options))]
        offset = 1 + int(rng.integers(room_size))
        if ni != i:  # rooms side by side along x: open the vertical wall between them
            gaps.append((max(i, ni) * stride, j * stride + offset))
        else:
            gaps.append((i * stride + offset, max(j, nj) * stride))
        visited.add((ni, nj))
        stack.append((ni, nj))
    return gaps


gym.register(id=ENV_ID, entry_point=SpanningMazeEnv)


def layout_split(num_train: int, num_tuning: int, num_test: int, split_seed: int, rooms: int = 3,
                 room_size: int = 5) -> tuple[list[int], list[int], list[int]]:
    """Layout seeds of a train, a tuning and a test set, drawn from `split_seed`'s named streams: no
    two layouts in them have the same walls, so no tuning or test layout is ever seen in training and
    no test layout is used to choose anything."""
    def walls(s):
        return tuple(sorted(spanning_tree_gaps(rooms, room_size, s)))
    taken: set = set()
    sets = []
    for purpose, size in (("exp3-train-layouts", num_train), ("exp3-tuning-layouts", num_tuning),
                          ("exp3-test-layouts", num_test)):
        rng, chosen = numpy_rng(split_seed, purpose), []
        while len(chosen) < size:
            seed = int(rng.integers(2**31))
            if walls(seed) not in taken:
                taken.add(walls(seed))
                chosen.append(seed)
        sets.append(chosen)
    return sets[0], sets[1], sets[2]


def make_env(env_id: str = ENV_ID, **env_kwargs) -> FullyObsWrapper:
    """The real MiniGrid env with the fully observable symbolic observation (kwargs, e.g.
    `layout_seed`, go to the env's constructor)."""
    return FullyObsWrapper(gym.make(env_id, **env_kwargs))


def set_pose(env: FullyObsWrapper, pose) -> np.ndarray:
    """Put the agent at pose (x, y, dir) in the real env; return the observation image."""
    base = env.unwrapped
    base.agent_pos, base.agent_dir = (int(pose[0]), int(pose[1])), int(pose[2])
    return env.observation(base.gen_obs())["image"]


def observation_codes(images: np.ndarray) -> np.ndarray:
    """The observation every model and planner sees: each cell of the symbolic image coded on its own,
    0 floor, 1 wall, 2 + d the agent facing d (any other object, e.g. FourRooms' goal square, is floor).
    images (..., W, H, 3) -> (..., W, H) uint8. A cell-wise recoding: it locates nothing."""
    objects = images[..., 0]
    return np.where(objects == AGENT, FIRST_AGENT_CODE + images[..., 2], (objects == WALL).astype(np.uint8)
                    ).astype(np.uint8)


def poses_from_images(images: np.ndarray) -> np.ndarray:
    """Read the agent pose off observation images. images (..., W, H, 3) -> (..., 3) int (x, y, dir)."""
    flat = images[..., 0].reshape(*images.shape[:-3], -1)
    cell = flat.argmax(-1)  # the one cell holding object id 10 (agent)
    assert np.all(flat.max(-1) == AGENT), "no agent in the observation"
    height = images.shape[-2]
    x, y = cell // height, cell % height
    direction = np.take_along_axis(images[..., 2].reshape(*images.shape[:-3], -1), cell[..., None], -1)[..., 0]
    return np.stack([x, y, direction], axis=-1).astype(np.int64)


class FastMaze:
    """Numpy twin of the maze: layout, pose indexing, batched steps, observations and BFS.

    A pose (x, y, dir) has index `pose_index[x, y, dir]` in [0, num_poses); `next_pose[i, a]` is the
    transition table, read off the same turn/forward/wall rules MiniGrid applies.
    """

    def __init__(self, env_id: str = ENV_ID, reset_seed: int = 0, **env_kwargs):
        env = make_env(env_id, **env_kwargs)
        env.reset(seed=reset_seed)  # FourRooms draws its gaps per reset; the spanning maze ignores it
        self.base_image = env.unwrapped.grid.encode()  # (W, H, 3) without the agent
        env.close()
        self.width, self.height = self.base_image.shape[:2]
        self.free = np.isin(self.base_image[..., 0], FREE_OBJECTS)  # (W, H) cells the agent can stand on
        self.base_codes = observation_codes(self.base_image)
        xs, ys = np.nonzero(self.free)
        self.poses = np.array([(x, y, d) for x, y in zip(xs, ys) for d in range(4)], dtype=np.int64)
        self.num_poses = len(self.poses)
        self.pose_index = -np.ones((self.width, self.height, 4), dtype=np.int64)
        self.pose_index[self.poses[:, 0], self.poses[:, 1], self.poses[:, 2]] = np.arange(self.num_poses)
        self.cells = np.stack([xs, ys], axis=1)  # free cells (num_cells, 2)
        self.next_pose = np.stack([self.step_poses(self.poses, np.full(self.num_poses, a))
                                   for a in range(NUM_ACTIONS)], axis=1)
        self.next_pose = self.pose_index[self.next_pose[..., 0], self.next_pose[..., 1], self.next_pose[..., 2]]

    def step_poses(self, poses: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Batched MiniGrid step. poses (N, 3), actions (N,) -> next poses (N, 3)."""
        x, y, d = poses[:, 0], poses[:, 1], poses[:, 2]
        d_new = np.where(actions == 0, (d - 1) % 4, np.where(actions == 1, (d + 1) % 4, d))
        fx, fy = x + DIRS[d, 0], y + DIRS[d, 1]
        move = (actions == 2) & self.free[np.clip(fx, 0, self.width - 1), np.clip(fy, 0, self.height - 1)]
        return np.stack([np.where(move, fx, x), np.where(move, fy, y), d_new], axis=1)

    def images(self, poses: np.ndarray) -> np.ndarray:
        """Observation images of poses (N, 3) -> (N, W, H, 3) uint8, as FullyObsWrapper renders them."""
        out = np.broadcast_to(self.base_image, (len(poses), *self.base_image.shape)).copy()
        out[np.arange(len(poses)), poses[:, 0], poses[:, 1]] = np.stack(
            [np.full(len(poses), AGENT), np.full(len(poses), COLOR_TO_IDX["red"]), poses[:, 2]], axis=1)
        return out

    def codes(self, poses: np.ndarray) -> np.ndarray:
        """`observation_codes` of the observations at poses (N, 3) -> (N, W, H) uint8 (without rendering)."""
        out = np.broadcast_to(self.base_codes, (len(poses), self.width, self.height)).copy()
        out[np.arange(len(poses)), poses[:, 0], poses[:, 1]] = FIRST_AGENT_CODE + poses[:, 2]
        return out

    def pose_distances(self) -> np.ndarray:
        """All-pairs BFS distances over poses (turns count): (num_poses, num_poses), inf if unreachable."""
        rows = np.repeat(np.arange(self.num_poses), NUM_ACTIONS)
        graph = csr_matrix((np.ones(rows.size), (rows, self.next_pose.reshape(-1))),
                           shape=(self.num_poses, self.num_poses))
        return shortest_path(graph, method="D", unweighted=True)

    def cell_distances(self) -> np.ndarray:
        """BFS distance from each pose to each free cell (any arrival dir): (num_poses, num_cells)."""
        pose_dist = self.pose_distances()
        cell_of_pose = self.pose_index[self.cells[:, 0], self.cells[:, 1]]  # (num_cells, 4)
        return pose_dist[:, cell_of_pose].min(axis=-1)


def sample_tasks(maze: FastMaze, cell_dist: np.ndarray, horizon: int, num: int, rng: np.random.Generator):
    """Start poses and goal cells with BFS distance in (horizon/2, horizon].

    Returns start_poses (num, 3), goal_cells (num, 2), distances (num,). Pairs are drawn uniformly
    from all eligible (pose, cell) pairs.
    """
    eligible = np.argwhere((cell_dist > horizon / 2) & (cell_dist <= horizon))
    if len(eligible) == 0:
        raise ValueError(f"no start/goal pair has BFS distance in ({horizon / 2}, {horizon}]")
    pick = eligible[rng.choice(len(eligible), size=num, replace=len(eligible) < num)]
    return maze.poses[pick[:, 0]], maze.cells[pick[:, 1]], cell_dist[pick[:, 0], pick[:, 1]]


def goal_observations(maze: FastMaze, goal_cells: np.ndarray) -> np.ndarray:
    """The observations that specify a goal cell: the agent on it facing each of 4 directions.
    goal_cells (B, 2) -> codes (B, 4, W, H)."""
    B = len(goal_cells)
    poses = np.concatenate([np.repeat(goal_cells[:, None], 4, 1), np.tile(np.arange(4), (B, 1))[..., None]], -1)
    return maze.codes(poses.reshape(-1, 3)).reshape(B, 4, maze.width, maze.height)


def tasks_across_layouts(mazes: list[FastMaze], cell_dists: list[np.ndarray], horizon: int, num: int,
                         rng: np.random.Generator):
    """`num` tasks, each on a layout drawn uniformly among those that have a start/goal pair with BFS
    distance in (horizon/2, horizon]. Returns layout indices (num,), start poses (num, 3), goal cells
    (num, 2) and BFS distances (num,)."""
    usable = [i for i, d in enumerate(cell_dists) if ((d > horizon / 2) & (d <= horizon)).any()]
    if not usable:
        raise ValueError(f"no layout has a start/goal pair with BFS distance in ({horizon / 2}, {horizon}]")
    layouts = np.asarray(usable)[rng.integers(len(usable), size=num)]
    tasks = [sample_tasks(mazes[i], cell_dists[i], horizon, 1, rng) for i in layouts]
    return layouts, *(np.concatenate(parts) for parts in zip(*tasks))


def collect_random_walks(maze: FastMaze, num_walks: int, walk_length: int, rng: np.random.Generator):
    """Uniform random-action walks from uniform random poses (batched in the fast simulator).

    Returns pose indices (num_walks, walk_length + 1) and actions (num_walks, walk_length).
    """
    poses = rng.integers(maze.num_poses, size=num_walks)
    actions = rng.integers(NUM_ACTIONS, size=(num_walks, walk_length))
    trajectory = [poses]
    for t in range(walk_length):
        trajectory.append(maze.next_pose[trajectory[-1], actions[:, t]])
    return np.stack(trajectory, axis=1), actions


class Replay:
    """Random-walk replay over several layouts: `walks_per_layout` walks in each maze.

    `layout` (N,), `poses` (N, L+1) pose indices of the walk's own maze, `actions` (N, L). Training
    reads observations (`codes`) and the indices only to tell which observations are identical.
    """

    def __init__(self, mazes: list[FastMaze], walks_per_layout: int, walk_length: int, rng: np.random.Generator):
        self.mazes = mazes
        walks = [collect_random_walks(m, walks_per_layout, walk_length, rng) for m in mazes]
        self.layout = np.repeat(np.arange(len(mazes)), walks_per_layout)
        self.poses = np.concatenate([w[0] for w in walks])
        self.actions = np.concatenate([w[1] for w in walks])
        self.base_codes = np.stack([m.base_codes for m in mazes])  # (layouts, W, H)
        max_poses = max(m.num_poses for m in mazes)
        self.pose_table = np.stack([np.pad(m.poses, ((0, max_poses - m.num_poses), (0, 0))) for m in mazes])

    def codes(self, layout: np.ndarray, pose_ids: np.ndarray) -> np.ndarray:
        """Observation codes of pose indices (...) of layouts (...) -> (..., W, H) uint8."""
        out = self.base_codes[layout].copy()
        poses = self.pose_table[layout, pose_ids]  # (..., 3)
        index = np.indices(layout.shape)
        out[(*index, poses[..., 0], poses[..., 1])] = FIRST_AGENT_CODE + poses[..., 2]
        return out

    def windows(self, length: int, batch: int, rng: np.random.Generator):
        """Random windows of `length` actions: layouts (B,), pose indices (B, length + 1), actions (B, length)."""
        rows = rng.integers(len(self.poses), size=batch)
        starts = rng.integers(self.actions.shape[1] - length + 1, size=batch)
        offsets = np.arange(length + 1)
        return (self.layout[rows], self.poses[rows[:, None], starts[:, None] + offsets],
                self.actions[rows[:, None], starts[:, None] + offsets[:-1]])
