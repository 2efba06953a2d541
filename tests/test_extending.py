"""The README's "Extending an experiment", done on tiny tasks: a planner added to Exp 3 and a regularizer
added to Exp 1 through the declarations the built-in ones use (`planners.PLANNERS`, `losses.PENALTIES`).
The additions are patched in for the test only; in the code each is one entry (plus its config switch,
which the README names). The exact model and energy of the open room come from test_exp3_planners.py."""

import dataclasses

import numpy as np
import pytest
import torch

from common.config import EXP3_DIAGNOSTIC_PLANNERS, EXP3_PLANNERS, Exp1Config, Exp3Config
from exp1_spectral_cliff import losses
from exp1_spectral_cliff.dataset import make_dataset
from exp1_spectral_cliff.models import EnsembleStepModel
from exp1_spectral_cliff.training import train_members
from exp3_mazes import ROOM5
from exp3_planning_efficiency import analyze_planning, plots
from exp3_planning_efficiency.env_minigrid import NUM_ACTIONS, FastMaze, tasks_across_layouts
from exp3_planning_efficiency.evaluation import evaluation_unit, run_episodes
from exp3_planning_efficiency.planners import PLANNERS, Planner
from exp3_planning_efficiency.training import ENERGIES, WORLD_MODELS
from test_exp3_planners import ExactEnergy, ExactModel

# ----------------------------------------------------------------------------------------------
# Exp 3: a planner


def greedy(view, ids, H, cfg, generator):
    """One step of lookahead: from states ids (n,), the action whose predicted next state has the lowest
    energy -> actions (n, 1) (executed, then the planner is asked again)."""
    actions = torch.arange(NUM_ACTIONS, device=ids.device).expand(len(ids), NUM_ACTIONS)
    return view.to_goal(view.fine(ids[:, None].expand_as(actions), actions)).argmin(-1, keepdim=True)


PER_CALL = dict.fromkeys(("encode", "fine", "coarse", "values", "read", "sweep_ops", "gd_step"), 1)  # count calls


@pytest.fixture(scope="module")
def open_room():
    """The 5x5 room with its exact model and energy, and 8 tasks at T = 8 (as test_exp3_planners' fixture)."""
    maze = FastMaze(ROOM5)
    cell_dists = maze.cell_distances()
    cfg = dataclasses.replace(Exp3Config(), coarse_stride=3, cem_num_samples=64, replan_every=3)
    model = ExactModel(maze, cfg.coarse_stride)
    tasks = tasks_across_layouts([maze], [cell_dists], 8, 8, np.random.default_rng(1))
    return maze, cell_dists, cfg, model, ExactEnergy(model, maze.pose_distances()), tasks


def test_a_new_planner_is_one_entry_in_planners(open_room, monkeypatch):
    monkeypatch.setitem(PLANNERS, "greedy", Planner(greedy, "greedy one-step lookahead"))
    maze, cell_dists, cfg, model, energy, (layouts, starts, goals, _) = open_room

    def episodes(planner):
        return run_episodes(planner, model, energy, [maze], [cell_dists], layouts, starts, goals, 8, cfg,
                            torch.Generator().manual_seed(0), "cpu", PER_CALL)
    new, builtin = episodes("greedy"), episodes("cem")
    # the result fields of a built-in planner, with the same shapes and kinds
    assert new.keys() == builtin.keys()
    for key, value in builtin.items():
        assert np.shape(new[key]) == np.shape(value), key
        assert np.asarray(new[key]).dtype.kind == np.asarray(value).dtype.kind, key
    # with the exact model and energy, one step of lookahead walks a shortest path; its calls are counted
    assert new["success"].all() and (new["steps"] == new["bfs_distance"]).all()
    assert (new["model_evals"] > 0).all() and (new["macs"] > 0).all()
    # its evaluation checkpoints are named by its name and the fields it declares (none)
    unit = evaluation_unit(cfg, {}, "test/1", 0, "greedy", 1.0)
    assert unit["planner"] == "greedy" and unit.keys() == evaluation_unit(cfg, {}, "test/1", 0, "random", 1.0).keys()
    # a row in metrics.json and in the printed table, as saved by an evaluation unit; its label in the figures
    saved = {name: {"8": {k: np.asarray(v).tolist() for k, v in out.items()}}
             for name, out in (("greedy", new), ("cem", builtin))}
    unit = {"tracks": {"unseen-layouts": {"horizons": [8], "success": saved, "pareto": {}}},
            "quality": {}, "diverged": [], "training_seconds": {}}
    metrics = analyze_planning.summarize({(0, "layouts"): unit}, cfg)
    rows = metrics["tracks"]["unseen-layouts"]["success"]
    assert rows["greedy"]["8"].keys() == rows["cem"]["8"].keys() and rows["greedy"]["8"]["success"] == 1.0
    assert any(line.startswith("greedy ") for line in analyze_planning.format_tables(metrics).splitlines())
    assert plots.planner_label("greedy") == "greedy one-step lookahead"


def test_every_planner_a_run_accepts_is_declared():
    """`--planners` accepts exactly the declared planners; each one runs, reads config fields, scales a
    subset of them for the Pareto budgets and plans with networks a training unit trains."""
    assert set(PLANNERS) == set(EXP3_PLANNERS + EXP3_DIAGNOSTIC_PLANNERS)
    fields = {f.name for f in dataclasses.fields(Exp3Config)}
    for name, planner in PLANNERS.items():
        assert planner.plan is not None or name in ("flat", "bfs"), name  # those two run_episodes runs itself
        assert set(planner.fields) <= fields and set(planner.budget) <= set(planner.fields), name
        assert planner.networks[0] in WORLD_MODELS and planner.networks[1] in ENERGIES, name
        assert planner.label, name


# ----------------------------------------------------------------------------------------------
# Exp 1: a regularizer


def step_size(model, s, a, cfg, streams):
    """A toy regularizer: the mean squared step ||F(s, a) - s||^2 at the visited inputs s, a (E, N, 3) -> (E,)."""
    return (model(s, a) - s).pow(2).sum(-1).mean(-1)


def test_a_new_regularizer_is_one_entry_in_penalties(monkeypatch):
    monkeypatch.setitem(losses.PENALTIES, "step_size", step_size)
    cfg = dataclasses.replace(Exp1Config(), num_train_trajectories=8, num_test_trajectories=2, trajectory_steps=20,
                              burn_in_time=1.0, hidden_dim=16, num_layers=1, batch_size=16, train_steps=5, quiet=True)
    # the weighted term, differentiable in every parameter of the model
    model = EnsembleStepModel([0], cfg.hidden_dim, cfg.num_layers)
    s, a = torch.randn(1, 32, 3), 2 * torch.rand(1, 32, 3) - 1
    weights = {name: torch.zeros(1) for name in losses.PENALTIES} | {"step_size": torch.tensor([2.0])}
    penalty = losses.make_penalty(cfg, weights, [0], torch.device("cpu"))(model, s, a)
    torch.testing.assert_close(penalty, 2 * step_size(model, s, a, cfg, {}))
    penalty.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    # trained by the loop of every variant and of the sweep: a Flat member and one with the new term, one
    # seed (same initial weights and minibatches), so only the second pays the penalty
    data = make_dataset(cfg, 0)
    trained, info = train_members(cfg, [data, data], [0, 0], [{}, {"step_size": 2.0}], 1, "test", torch.device("cpu"))
    curves = info["loss_curve"]
    assert curves[1, 0] > curves[0, 0]  # the same model and batch at step 0: the loss differs by the penalty
    flat, regularized = trained.member_state(0), trained.member_state(1)
    assert any(not torch.equal(flat[k], regularized[k]) for k in flat)
