"""Experiment 3's goal energies: the propagated one (energy.py: Bellman-Ford over learned edge costs,
its reach and backward, replay distances; its training loop) and the local one (local_energy.py)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from exp3_mazes import MAZE2
from exp3_planning_efficiency.energy import GoalEnergy
from exp3_planning_efficiency.env_minigrid import FastMaze, Replay, goal_observations
from exp3_planning_efficiency.world_models import one_hot_codes


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
    def node(layer, c, i, j):
        return ((layer * C + c) * W + i) * H + j  # layer 0: nodes, 1: after a switch
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
        move = torch.randint(1, 3, (B, C, 9, W, H), generator=g)
        switch = torch.randint(0, 2, (B, C, C, W, H), generator=g)
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


@pytest.mark.slow
def test_goal_energy_learns_the_distances_of_an_unseen_layout_from_replay():
    """Trained on random-walk replay of 20 small mazes, the energy ranks the BFS distances of other
    mazes (never seen) almost exactly."""
    from types import SimpleNamespace
    from scipy.stats import spearmanr
    from exp3_planning_efficiency.training import train_energy
    def make(seed):
        return FastMaze(MAZE2, layout_seed=seed)
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
    def far_from(cell):
        return np.maximum(abs(i - cell[0]), abs(j - cell[1])) > RECEPTIVE_RADIUS
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
