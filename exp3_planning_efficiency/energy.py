"""The goal energy of Experiment 3: a learned shortest-path distance d(observation, goal) >= 0.

`GoalEnergy` is a learned value-propagation network (in the spirit of Value Iteration Networks, Tamar
et al. 2016, with the max-sum backup written as the min-sum of a shortest path). A small CNN reads the
goal observation (its walls and free cells) and outputs, at every cell, non-negative edge costs of a
graph over (cell, channel) nodes, channel c paired with the observation plane "agent facing c". One
step of a path is a switch from channel c to any channel c' at the same cell (a learned cost per pair),
then a move in channel c' to one of the 3x3 neighbouring cells, the cell itself included (a learned
cost per offset). Which of these are real actions (turns, forward moves) and which are impossible
(walls, diagonals, backwards) is not built in: the CNN learns it from the replay. `values` runs
Bellman-Ford from the goal's own nodes (the planes of the agent in the goal observations), one step per
sweep: V <- min(V_goal, min over steps (cost + V)), so V is the cost of the cheapest path to the goal
in the learned graph, d(x, x) = 0 and the triangle inequality hold by construction, and the distance
propagates through the walls the observation shows, to layouts never seen. `read` evaluates V at an
observation: the sum of V over its agent planes (the observation's own one-hot input, nothing located
by hand), so a goal's values are computed once per goal and every state's energy is one product.

Training uses replay only, as a quasimetric (Quasimetric RL, Wang et al. 2023): the temporal distance
of two observations in the agent's own replay (the shortest path through the transitions it recorded,
`replay_distances`) is an upper bound of their true distance, so d is held below it by a hinge, and
pairs of observations of the same layout are pushed apart (a bonus capped at `PUSH_CAP`; the loss is
`losses.energy_loss`, the loop `training.train_energy`); the largest
d below every recorded path is the true distance of the transitions the CNN generalizes to.
HELM's HF invariance (`hf_noise_sigma` > 0) mollifies the energy: the CNN features get Gaussian noise
of `hf_noise_sigma` x their standard deviation during training, so features finer than the noise are
suppressed.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path
from torch import nn

from exp3_planning_efficiency.env_minigrid import FIRST_AGENT_CODE, NUM_CODES, Replay
from exp3_planning_efficiency.world_models import conv, one_hot_codes

UNREACHED = 255  # replay distance of pairs the replay never connects (stored as uint8)
FAR = 1e3  # value of nodes no path reaches (larger than any distance here)
PUSH_CAP = 128.0  # pairs are pushed apart up to this distance (longer than any shortest path here)
CHANNELS = 4  # value channels: one per agent plane of the observation (agent facing d)
AGENT_PLANES = slice(FIRST_AGENT_CODE, FIRST_AGENT_CODE + CHANNELS)
WALK_STARTS = 4  # start observations per goal taken from the goal's own walk, just before it


def neighbour_costs(V: torch.Tensor, move: torch.Tensor) -> torch.Tensor:
    """Values V (B, 4, W, H), move costs (B, 4, 9, W, H) -> cost via each 3x3 neighbour (B, 4, 9, W, H):
    move[..., k, x] + V at x + offset k (FAR outside the grid; offsets row-major, as `F.unfold`'s)."""
    B, C, W, H = V.shape
    padded = F.pad(V, (1, 1, 1, 1), value=FAR)
    s = padded.stride()
    windows = padded.as_strided((B, C, 3, 3, W, H), (s[0], s[1], s[2], s[3], s[2], s[3]))
    out = torch.empty_like(move)
    torch.add(move.view(B, C, 3, 3, W, H), windows, out=out.view(B, C, 3, 3, W, H))
    return out


def sweep(V: torch.Tensor, move: torch.Tensor, switch: torch.Tensor, source: torch.Tensor, trace: list | None = None):
    """One Bellman-Ford step back from the goal: the move into V's nodes, then the switch of channel
    before it: V, source (B, 4, W, H) -> new V. `trace` (a list) gets what the backward pass needs."""
    costs = neighbour_costs(V, move)
    U = costs.amin(2)
    moved = torch.minimum(source, U)
    switched = moved[:, None] + switch  # [c, c'] = moved[c'] + switch[c, c']
    best = switched.amin(2)
    if trace is not None:
        trace.append([min_trace(costs, U, source), min_trace(switched, best, source)])
    return torch.minimum(source, best)


def min_trace(x: torch.Tensor, x_min: torch.Tensor, source: torch.Tensor) -> tuple:
    """What `min_backward` needs of torch.minimum(source, x_min), x_min = x.amin(2): where x attains
    its minimum (1., else 0.), whether a minimum is attained twice, and the share of the gradient
    torch.minimum passes to x_min (0 where the source is smaller, 1/2 on a tie, else 1). Float
    arithmetic, not comparisons: boolean tensors are ~5x slower here."""
    mask = (x_min[:, :, None] - x).sign_().add_(1)  # x >= x_min, so sign is -1 or 0
    share = (x_min - source).sign_().sub_(1).mul_(-0.5)  # sign(x_min - source) 1, 0, -1 -> 0, 1/2, 1
    exact = torch.float32 if mask.numel() < 2**24 else torch.float64  # the count of ones stays exact
    return mask, mask.sum(dtype=exact) > x_min.numel(), share


def min_backward(grad: torch.Tensor, mask: torch.Tensor, tied: torch.Tensor, share: torch.Tensor) -> torch.Tensor:
    """Autograd's gradient of torch.minimum(source, x.amin(2)) w.r.t. x, from the result's `grad`: a tie
    with the source halves it, and the amin splits it evenly over its equal minima."""
    grad = (grad * share)[:, :, None]
    return grad / mask.sum(2, keepdim=True) * mask if tied else grad * mask


class BellmanFord(torch.autograd.Function):
    """`iterations` sweeps from V = source, differentiable in the move and switch costs.

    The same values and gradients as autograd through the sweeps (the same operations in the same
    order; the tests check it bit for bit), with a hand-written backward that keeps each sweep's
    argmin masks instead of autograd's intermediates and adds each move's gradient back to its
    neighbour with slices instead of `F.fold`: an energy training step ~1.8x faster here."""

    @staticmethod
    def forward(ctx, move, switch, source, iterations: int):
        V, ctx.trace = source, []
        for _ in range(iterations):
            V = sweep(V, move, switch, source, ctx.trace)
        return V

    @staticmethod
    def backward(ctx, grad_V):
        B, C, W, H = grad_V.shape
        move_grad, switch_grad = None, None
        g = grad_V
        for move_trace, switch_trace in reversed(ctx.trace):
            step = min_backward(g, *switch_trace)  # (B, 4, 4, W, H)
            switch_grad = step if switch_grad is None else switch_grad.add_(step)
            step = min_backward(step.sum(1), *move_trace)  # (B, 4, 9, W, H)
            move_grad = step.clone() if move_grad is None else move_grad.add_(step)
            padded = g.new_zeros(B, C, W + 2, H + 2)  # each move's gradient back to its neighbour's value
            for k in range(9):
                padded[:, :, k // 3:k // 3 + W, k % 3:k % 3 + H].add_(step[:, :, k])
            g = padded[:, :, 1:-1, 1:-1]
        del ctx.trace
        return move_grad, switch_grad, None, None


@torch.no_grad()
def propagate(move: torch.Tensor, switch: torch.Tensor, source: torch.Tensor, iterations: int | None = None):
    """`iterations` Bellman-Ford sweeps from V = source, or until V stops changing (None) -> (V, sweeps run)."""
    V, sweeps = source, 0
    for _ in range(iterations or 4 * source[0].numel()):  # a shortest path visits each node at most once
        V, previous = sweep(V, move, switch, source), V
        sweeps += 1
        if torch.equal(V, previous):  # converged: more sweeps change nothing
            break
    return V, sweeps


class GoalEnergy(nn.Module):
    def __init__(self, hidden: int, train_iterations: int):
        super().__init__()
        self.train_iterations = train_iterations
        self.features = nn.Sequential(conv(NUM_CODES, hidden), nn.SiLU(), conv(hidden, hidden), nn.SiLU())
        self.move_cost = conv(hidden, CHANNELS * 9)  # log-costs, exp'd: costs start at 1 and can grow large
        self.switch_cost = conv(hidden, CHANNELS * CHANNELS, kernel=1)
        nn.init.zeros_(self.move_cost.bias)
        nn.init.zeros_(self.switch_cost.bias)

    def edge_costs(self, x_goal: torch.Tensor, noise: float = 0.0, generator: torch.Generator | None = None):
        """One-hot goal observation (B, 6, W, H) -> move costs (B, 4, 9, W, H) (to the 3x3 neighbourhood)
        and switch costs (B, 4 out, 4 in, W, H); `noise` > 0 perturbs the features (HF, training only)."""
        B, _, W, H = x_goal.shape
        f = self.features(x_goal)
        if noise > 0:
            f = f + noise * f.detach().std() * torch.randn(f.shape, generator=generator, device=f.device)
        move = torch.exp(self.move_cost(f).clamp(-6, 6)).reshape(B, CHANNELS, 9, W, H)  # in channel c at x
        switch = torch.exp(self.switch_cost(f).clamp(-6, 6)).reshape(B, CHANNELS, CHANNELS, W, H)
        return move.contiguous(), switch.contiguous()  # the sweeps run ~10 % faster on contiguous costs

    def values(self, x_goal: torch.Tensor, iterations: int | None = None, noise: float = 0.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Goal observations (B, n, 6, W, H) of one layout each (a goal cell: n = 4 directions) ->
        values V (B, 4, W, H): the learned distance of every node to the nearest goal observation.
        `iterations` Bellman-Ford sweeps (differentiable when grad is enabled; training), or None: until V
        stops changing (the exact shortest paths of the learned graph; planning and evaluation)."""
        move, switch = self.edge_costs(x_goal[:, 0], noise, generator)
        source = FAR * (1 - x_goal[:, :, AGENT_PLANES].amax(1))  # 0 on the goal's own nodes
        if iterations is not None and torch.is_grad_enabled():
            return BellmanFord.apply(move, switch, source, iterations)
        return propagate(move, switch, source, iterations)[0]

    def values_of_codes(self, goal_codes: torch.Tensor, iterations: int | None = None) -> tuple[torch.Tensor, int]:
        """Goal observation codes (B, n, W, H) -> values (B, 4, W, H): converged, or after `iterations`
        sweeps (the energy then sees that many steps from the goal; every node further is FAR); and the
        number of sweeps run (compute accounting)."""
        with torch.no_grad():
            x_goal = one_hot_codes(goal_codes.flatten(0, 1)).unflatten(0, goal_codes.shape[:2])
            move, switch = self.edge_costs(x_goal[:, 0])
            return propagate(move, switch, FAR * (1 - x_goal[:, :, AGENT_PLANES].amax(1)), iterations)

    @staticmethod
    def read(V: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Energy of observations x (B, N, 6, W, H) (one-hot or relaxed) w.r.t. values V (B, 4, W, H):
        V summed over each observation's agent planes -> (B, N)."""
        return (x[:, :, AGENT_PLANES] * V[:, None]).flatten(2).sum(-1)

    @staticmethod
    def read_codes(V: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """`read` of one-hot observations given as codes (B, N, W, H) -> (B, N): the same values (V summed
        over each observation's agent planes; the omitted terms are exact zeros), ~3x faster than
        building the six one-hot planes first."""
        agent = torch.arange(FIRST_AGENT_CODE, FIRST_AGENT_CODE + CHANNELS, dtype=codes.dtype, device=codes.device)
        planes = codes[:, :, None] == agent[:, None, None]  # (B, N, 4, W, H)
        return torch.where(planes, V[:, None], 0.0).flatten(2).sum(-1)


def replay_distances(replay: Replay) -> np.ndarray:
    """Temporal distances in the agent's own experience, per layout: shortest-path lengths in the
    directed graph of recorded transitions between observations, two samples being one node exactly
    when their observations are identical (compared as bytes). -> (layouts, P, P) uint8 indexed by the
    replay's sample labels (`replay.poses`, only to look distances up), UNREACHED where never
    connected (P = the largest number of labels a layout can have)."""
    P = replay.pose_table.shape[1]
    out = np.full((len(replay.mazes), P, P), UNREACHED, dtype=np.uint8)
    for i in range(len(replay.mazes)):
        walks = replay.poses[replay.layout == i]
        labels = np.unique(walks)
        codes = replay.codes(np.full(len(labels), i), labels).reshape(len(labels), -1)
        node_of_label = np.unique(codes, axis=0, return_inverse=True)[1].ravel()
        node = np.zeros(P, dtype=np.int64)
        node[labels] = node_of_label
        n = int(node_of_label.max()) + 1
        src, dst = node[walks[:, :-1]].reshape(-1), node[walks[:, 1:]].reshape(-1)
        d = shortest_path(csr_matrix((np.ones(src.size), (src, dst)), shape=(n, n)), method="D", unweighted=True)
        d = d[node_of_label][:, node_of_label]  # (labels, labels)
        out[i, labels[:, None], labels[None, :]] = np.where(np.isfinite(d), np.minimum(d, UNREACHED - 1), UNREACHED)
    return out
