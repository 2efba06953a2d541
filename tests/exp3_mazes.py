"""Small Experiment 3 mazes for the tests, registered with gymnasium on import, and index helpers."""

import gymnasium as gym
import numpy as np

from exp3_planning_efficiency.env_minigrid import SpanningMazeEnv

ROOM3 = "HELM-TestRoom3-v0"  # one 3x3 room (5x5 grid with the outer wall)
ROOM5 = "HELM-TestRoom5-v0"  # one 5x5 open room
MAZE2 = "HELM-TestMaze2x2-v0"  # 2x2 rooms of 2x2 cells joined by 3 gaps
for _id, _kw in ((ROOM3, dict(rooms=1, room_size=3)), (ROOM5, dict(rooms=1, room_size=5)),
                 (MAZE2, dict(rooms=2, room_size=2, layout_seed=3))):
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=SpanningMazeEnv, kwargs=_kw)


def idx(maze, x, y, d):
    i = int(maze.pose_index[x, y, d])
    assert i >= 0, (x, y, d)
    return i


def cell_idx(maze, x, y):
    return int(np.flatnonzero((maze.cells == (x, y)).all(1))[0])
