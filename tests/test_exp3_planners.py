"""Experiment 3's planners (planners.py, run through evaluation.py): the lazy graph, every planner
with a perfect (exact) model, HELM's subgoal, the coarse ensemble's disagreement, Pareto budgets."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.config import Exp3Config
from exp3_mazes import ROOM5
from exp3_planning_efficiency.energy import GoalEnergy
from exp3_planning_efficiency.env_minigrid import NUM_ACTIONS, FastMaze, goal_observations, tasks_across_layouts
from exp3_planning_efficiency.evaluation import run_episodes
from exp3_planning_efficiency.planners import GraphView, LazyGraph, coarse_subgoal
from exp3_planning_efficiency.world_models import WorldModel, one_hot_codes


# ----------------------------------------------------------------------------------------------
# the lazy graph is the network with snapping, and counts each network call once


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
    def distinct(t):
        return [len(set(row.tolist())) for row in t]
    assert {k: v.tolist() for k, v in graph.computed.items()} == {
        "fine": distinct(actions), "coarse": distinct(macros), "values": [1] * 3, "read": distinct(nxt)}


# ----------------------------------------------------------------------------------------------
# every planner solves a tiny task with a perfect model


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


def test_a_pareto_budget_scales_every_sample_count_of_its_planner():
    from exp3_planning_efficiency.evaluation import scaled
    cfg = Exp3Config()
    helm = scaled(cfg, "helm", 0.25)
    assert (helm.helm_num_samples, helm.helm_fine_samples) == (cfg.helm_num_samples // 4, cfg.helm_fine_samples // 4)
    assert scaled(cfg, "cem", 0.5).cem_num_samples == cfg.cem_num_samples // 2
    assert scaled(cfg, "flat", 0.01).gd_steps == 1  # at least one
    no_coarse = scaled(cfg, "helm_no_coarse", 0.5)
    assert dataclasses.replace(no_coarse, no_coarse_num_samples=cfg.no_coarse_num_samples) == cfg
