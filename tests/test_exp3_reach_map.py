"""Experiment 3, stage three: the exact-coarse reference graph and the reach map (a smoke run whose
saved paired differences are recomputed from its saved outcomes, and the committed map's)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from common.output_folder import REPO_ROOT
from exp3_planning_efficiency.energy import GoalEnergy
from exp3_planning_efficiency.env_minigrid import FastMaze, goal_observations
from exp3_planning_efficiency.evaluation import ExactCoarseGraph
from exp3_planning_efficiency.paired import paired_difference
from exp3_planning_efficiency.reach_map import ENERGIES, HORIZONS, PLANNERS
from exp3_planning_efficiency.world_models import WorldModel

FOLDER = REPO_ROOT / "exp3_planning_efficiency"


def test_exact_coarse_transitions_are_the_true_macro_steps():
    maze = FastMaze()
    rng = np.random.default_rng(0)
    model = WorldModel(2, 4, 4, coarse_stride=3, coarse_heads=2)
    goals = maze.cells[rng.integers(len(maze.cells), size=4)]
    graph = ExactCoarseGraph(model, GoalEnergy(4, 2), goal_observations(maze, goals), "cpu", reach=1,
                             maze_of=[maze] * 4)
    poses = maze.poses[rng.integers(maze.num_poses, size=(4, 5))]  # (episodes, states, 3)
    rows = torch.arange(4)
    ids = torch.as_tensor(np.stack([graph.ids_of(np.full(5, b), maze.codes(poses[b])) for b in range(4)]))
    macros = torch.as_tensor(rng.integers(graph.num_macros, size=(4, 5)))
    nxt = graph.coarse(rows, ids, macros).numpy()
    actions = graph.macros[macros].argmax(-1).numpy()  # (4, 5, k)
    for b in range(4):
        expected = poses[b]
        for j in range(3):
            expected = maze.step_poses(expected, actions[b, :, j])
        assert (graph.codes[b, nxt[b]] == maze.codes(expected)).all()
    assert (graph.computed["coarse"] > 0).all() and (graph.computed["fine"] == 0).all()


def check_paired_differences(saved: dict, arrays: dict) -> int:
    """Recompute every saved HELM-minus-flat difference from the saved outcomes; returns how many."""
    checked = 0
    for name, entry in saved["energies"].items():
        for T, per_rival in entry["paired"].items():
            for rival, saved_diff in per_rival.items():
                again = paired_difference(arrays[f"success_{name}_helm_T{T}"], arrays[f"success_{name}_{rival}_T{T}"])
                assert again == saved_diff, (name, T, rival)  # the same floats: the bootstrap stream is fixed
                checked += 1
    for T, matched in saved["energies"].get("local", {}).get("matched", {}).items():
        scale = "" if matched["rival_scale"] == 1 else f"_x{matched['rival_scale']:g}"
        rival = arrays[f"success_local_{matched['rival']}{scale}_T{T}"]
        again = paired_difference(arrays[f"success_local_helm_T{T}"], rival)
        assert again == {k: matched[k] for k in again}, T
    return checked


@pytest.mark.slow
def test_quick_map_writes_every_planner_at_every_energy(tmp_path):
    flags = ["--quick", "--quiet", "--out-dir", str(tmp_path), "--num-train-layouts", "4", "--walks-per-layout", "5",
             "--model-train-steps", "5", "--energy-train-steps", "5", "--num-test-layouts", "3", "--map-seeds", "0",
             "--map-episodes", "2", "--replan-every", "16"]
    done = subprocess.run([sys.executable, "reach_map.py", *flags], cwd=FOLDER, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    saved = json.loads((tmp_path / "results" / "reach_map.json").read_text())
    assert list(saved["energies"]) == list(ENERGIES)
    for entry in saved["energies"].values():
        for planner in PLANNERS:
            for T in map(str, HORIZONS):
                row = entry["success"][planner][T]
                assert 0 <= row["success"] <= 1 and row["episodes"] == 2 and row["macs_per_episode"] >= 0
    with np.load(tmp_path / "results" / "exp3_reach_map_arrays.npz") as npz:
        arrays = dict(npz)
    assert all(a.shape == (1, 2) for a in arrays.values())
    assert check_paired_differences(saved, arrays) == len(ENERGIES) * len(HORIZONS) * 3
    assert set(saved["energies"]["local"]["matched"]) == {"50", "80"}
    assert {c["name"].split(":")[0] for c in saved["criteria"]} == {"local energy", "propagated energy (whole maze)"}
    for plot in ("exp3_reach_map.png", "exp3_reach_map_budgets.png"):
        assert (tmp_path / "plots" / plot).stat().st_size > 0


def test_committed_map_differences_recompute_from_its_outcomes():
    path = FOLDER / "results" / "reach_map.json"
    if not path.exists():
        pytest.skip("no committed reach map")
    with np.load(FOLDER / "results" / "exp3_reach_map_arrays.npz") as npz:
        arrays = dict(npz)
    assert check_paired_differences(json.loads(path.read_text()), arrays) > 0
