"""Shared test settings: one torch thread (fastest on the 2-core CI machine); a snapshot of the work tree;
Experiment 3's default maze."""

import os

import pytest
import torch

from common.output_folder import REPO_ROOT


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    torch.set_num_threads(1)
    yield


def _repo_files() -> dict[str, tuple[int, int]]:
    """Every file of the work tree (git internals, venvs and caches aside) -> (size, mtime)."""
    skip = {".git", ".venv", "venv", "__pycache__", ".pytest_cache"}
    files = {}
    for root, dirs, names in os.walk(REPO_ROOT):
        dirs[:] = [d for d in dirs if d not in skip]
        for name in names:
            stat = os.stat(os.path.join(root, name))
            files[os.path.join(root, name)] = (stat.st_size, stat.st_mtime_ns)
    return files


@pytest.fixture
def repo_files():
    """A function that snapshots the work tree: compare two calls to see what a command wrote."""
    return _repo_files


@pytest.fixture(scope="module")
def default_maze():
    """Experiment 3's default maze with its pose and cell distances (once per test module)."""
    from exp3_planning_efficiency.env_minigrid import FastMaze
    maze = FastMaze()
    return maze, maze.pose_distances(), maze.cell_distances()
