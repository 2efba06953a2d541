"""Planners over the learned world model and goal energy, batched over episodes.

Discrete planners (HELM, its ablations, CEM, random) search the learned model through a `LazyGraph`:
every predicted latent is snapped (decoded to an observation; identical observations are one state)
and each (state, action) or (state, macro-action) transition is computed by the network the first
time an episode asks for it, then cached for the rest of that episode. Only states that the
model's own predictions reach from the observed start are ever evaluated. A model evaluation is one
network application a planner requests on one state: a fine transition, a coarse transition or an
energy. Requests answered from the cache count too: the cache is an implementation shortcut of this
small discrete world (it saves wall time, reported separately), and a planner in a continuous latent
space, where no two predictions coincide, would make every one of these calls.

Every planner gets a `GraphView` of the active episodes, their current state ids (B,) and the
remaining budget H, and returns actions (B, n) to execute before re-planning. Plans are scored by
the lowest `energy + depth_cost * steps` along their predicted states, so reaching the goal early wins.

- `helm`: coarse-to-fine. The coarse level runs CEM over sequences of macro-actions (`coarse_stride`
  actions each, 3^k of them) through the coarse transition, over min(ceil(H / k), coarse_horizon)
  macro-steps; the subgoal is the lowest-energy state of the best coarse plan within its first
  `helm_subgoal_macros` macro-steps. The fine level runs CEM over min(H, helm_subgoal_macros x k) fine
  actions towards the subgoal (the energy's distance to it). Within the last k steps it picks the best
  of all fine sequences for the goal directly.
- `helm_no_coarse`: the same CEM on fine actions over the same horizon (min(H, coarse_horizon x k)).
- `cem`: PlaNet-style CEM on fine actions over a fixed horizon min(H, cem_horizon).
- `flat`: the seed's gradient planner: Adam on H x 3 action logits through H fine steps of the
  (unsnapped) latent, Gumbel-Softmax relaxed actions, the energy of the relaxed decoded observations;
  executes the argmax actions.
- `random`: uniform random actions (floor).
- `helm_exact_coarse`: HELM through `evaluation.ExactCoarseGraph`, whose coarse transitions are the
  true ones: a diagnostic reference that reads the layout (how much of HELM's result is coarse-model error).

`PLANNERS` declares each of them once (function, label, the config fields it reads, its Pareto budget,
its networks); adding a planner is an entry there and its name in `common.config` (README: Extending).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from exp3_planning_efficiency.env_minigrid import NUM_ACTIONS

CHUNK = 512  # states per network call
UNKNOWN = 0  # the state id of every coarse prediction the ensemble disagrees on


class LazyGraph:
    """The learned model explored lazily, per episode (see the module docstring).

    start codes are given per call (`observe`); goal_codes (B, 4, W, H): the observations of the
    agent on each episode's goal cell facing each direction; `reach`: the energy's Bellman-Ford sweeps
    (None: until convergence). `evals` (B,) counts network requests (cache hits included);
    `computed` counts per episode the calls that ran, by kind ("fine", "coarse", "values", "read"), and
    `sweeps` the energy's Bellman-Ford sweeps (see `compute.py`).
    """

    def __init__(self, model, energy, goal_codes: np.ndarray, device, reach: int | None = None):
        self.model, self.energy, self.device, self.reach = model, energy, device, reach
        self.B, self.shape = len(goal_codes), goal_codes.shape[2:]
        self.num_macros = NUM_ACTIONS ** model.coarse_stride
        self.macros = F.one_hot(torch.tensor(list(itertools.product(range(NUM_ACTIONS), repeat=model.coarse_stride)),
                                             device=device), NUM_ACTIONS).float()  # (M, k, 3)
        self.keys: list[dict] = [{} for _ in range(self.B)]
        self.capacity = 256
        self.codes = np.zeros((self.B, self.capacity, *self.shape), dtype=np.uint8)
        self.fine_next = torch.full((self.B, self.capacity, NUM_ACTIONS), -1, dtype=torch.long, device=device)
        self.coarse_next = torch.full((self.B, self.capacity, self.num_macros), -1, dtype=torch.long, device=device)
        self.computed = {kind: np.zeros(self.B, dtype=np.int64) for kind in ("fine", "coarse", "values", "read")}
        # values (B, 4, W, H) towards each episode's goal
        self.goal_values, sweeps = energy.values_of_codes(torch.as_tensor(goal_codes, device=device), reach)
        self.computed["values"] += 1
        self.sweeps = np.full(self.B, sweeps, dtype=np.int64)
        self.energy_value = torch.zeros((self.B, self.capacity), device=device)
        self.has_energy = torch.zeros((self.B, self.capacity), dtype=torch.bool, device=device)
        # state UNKNOWN: where the coarse ensemble disagrees; absorbing, with infinite energy
        self.fine_next[:, UNKNOWN], self.coarse_next[:, UNKNOWN] = UNKNOWN, UNKNOWN
        self.energy_value[:, UNKNOWN], self.has_energy[:, UNKNOWN] = float("inf"), True
        self.evals = np.full(self.B, 4, dtype=np.int64)  # the energy's values of the 4 goal observations

    def _grow(self) -> None:
        extra = self.capacity
        self.codes = np.concatenate([self.codes, np.zeros_like(self.codes)], axis=1)
        def pad(t, value):
            return torch.cat([t, torch.full_like(t, value)], dim=1)
        self.fine_next, self.coarse_next = pad(self.fine_next, -1), pad(self.coarse_next, -1)
        self.energy_value, self.has_energy = pad(self.energy_value, 0), pad(self.has_energy, False)
        self.capacity += extra

    def ids_of(self, rows: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """State ids of observations codes (n, W, H) in episodes rows (n,), adding new ones."""
        out = np.empty(len(rows), dtype=np.int64)
        for j, (b, c) in enumerate(zip(rows, codes)):
            key = c.tobytes()
            if key not in self.keys[b]:
                if len(self.keys[b]) + 1 == self.capacity:
                    self._grow()
                self.codes[b, len(self.keys[b]) + 1] = c
                self.keys[b][key] = len(self.keys[b]) + 1  # ids from 1: 0 is UNKNOWN
            out[j] = self.keys[b][key]
        return out

    @torch.no_grad()
    def _transition(self, table: torch.Tensor, rows: torch.Tensor, ids: torch.Tensor, actions: torch.Tensor,
                    predict, kind: str, calls: int = 1) -> torch.Tensor:
        """table[rows, ids, actions], computing the missing entries with `predict(b, i, action_index)` (the
        episodes and state ids of the missing entries), which returns predicted codes (n, W, H) and which
        of them to trust (n,) (the others lead to UNKNOWN).
        Each request counts `calls` model evaluations; each computed entry one call of `kind`."""
        nxt = table[rows, ids, actions]
        missing = nxt < 0
        if missing.any():
            triples = torch.unique(torch.stack([rows[missing], ids[missing], actions[missing]], 1), dim=0)
            for chunk in triples.split(CHUNK):
                b, i, a = chunk.cpu().numpy().T
                np.add.at(self.computed[kind], b, 1)
                predicted, trusted = predict(b, i, chunk[:, 2])
                new = np.full(len(b), UNKNOWN)
                new[trusted] = self.ids_of(b[trusted], predicted[trusted])
                table = self._table_after_growth(table)
                table[chunk[:, 0], chunk[:, 1], chunk[:, 2]] = torch.as_tensor(new, device=self.device)
            nxt = table[rows, ids, actions]
        self._count(rows, calls)
        return nxt

    def _count(self, rows: torch.Tensor, calls: int = 1) -> None:
        """Count `calls` model evaluations per requested state (rows: the episode of each request)."""
        np.add.at(self.evals, rows.reshape(-1).cpu().numpy(), calls)

    def _table_after_growth(self, table: torch.Tensor) -> torch.Tensor:
        return self.fine_next if table.shape[-1] == NUM_ACTIONS else self.coarse_next

    def _encode(self, b: np.ndarray, i: np.ndarray) -> torch.Tensor:
        """Latents of states ids i (n,) of episodes b (n,)."""
        return self.model.encode_codes(torch.as_tensor(self.codes[b, i], device=self.device))

    def fine(self, rows, ids, actions):
        """Next state ids after fine actions: rows (n,), ids (n, N), actions (n, N) -> (n, N)."""
        rows = rows[:, None].expand_as(ids)

        def predict(b, i, a):
            z = self._encode(b, i)
            codes = self.model.decode_codes(self.model.step(z, F.one_hot(a, NUM_ACTIONS).float())).cpu().numpy()
            return codes, np.ones(len(codes), dtype=bool)
        return self._transition(self.fine_next, rows, ids, actions, predict, "fine")

    def coarse(self, rows, ids, macros):
        """Next state ids after macro-actions (indices into all 3^k sequences), shapes as `fine`. Every
        member of the coarse ensemble predicts; where their decoded observations differ the next state
        is UNKNOWN (each member's call counts as a model evaluation)."""
        rows = rows[:, None].expand_as(ids)
        heads = len(self.model.coarse)

        def predict(b, i, m):
            z = self._encode(b, i)
            codes = np.stack([self.model.decode_codes(self.model.coarse_step(z, self.macros[m], h)).cpu().numpy()
                              for h in range(heads)])
            return codes[0], (codes == codes[0]).reshape(heads, len(m), -1).all(-1).all(0)
        return self._transition(self.coarse_next, rows, ids, macros, predict, "coarse", calls=heads)

    def state_codes(self, rows: np.ndarray, ids: np.ndarray) -> torch.Tensor:
        """Observation codes of states ids (n,) of episodes rows (n,) -> (n, W, H)."""
        return torch.as_tensor(self.codes[rows, ids], device=self.device)

    @torch.no_grad()
    def to_goal(self, rows, ids) -> torch.Tensor:
        """Energy of states w.r.t. their episode's goal: rows (n,), ids (n, N) -> (n, N), computed on
        first use."""
        rows = rows[:, None].expand_as(ids)
        missing = ~self.has_energy[rows, ids]
        if missing.any():
            pairs = torch.unique(torch.stack([rows[missing], ids[missing]], 1), dim=0)
            for chunk in pairs.split(CHUNK):
                b, i = chunk.cpu().numpy().T
                np.add.at(self.computed["read"], b, 1)
                self.energy_value[chunk[:, 0], chunk[:, 1]] = self.energy.read_codes(
                    self.goal_values[chunk[:, 0]], self.state_codes(b, i)[:, None])[:, 0]
                self.has_energy[chunk[:, 0], chunk[:, 1]] = True
        self._count(rows)
        return self.energy_value[rows, ids]

    @torch.no_grad()
    def distance_to(self, rows, target: torch.Tensor):
        """The energy towards one state per episode, target (n,) ids (its values: one evaluation each;
        towards the goal where the target is UNKNOWN) -> a function of state ids (n, N) -> (n, N)."""
        self._count(rows)
        episodes = rows.cpu().numpy()
        V, sweeps = self.energy.values_of_codes(torch.as_tensor(self.codes[episodes, target.cpu().numpy()],
                                                                device=self.device)[:, None], self.reach)
        np.add.at(self.computed["values"], episodes, 1)
        np.add.at(self.sweeps, episodes, sweeps)
        V = torch.where((target == UNKNOWN)[:, None, None, None], self.goal_values[rows], V)

        def score(ids):  # the UNKNOWN state (its codes are blank) is infinitely far, as towards the goal
            self._count(rows[:, None].expand_as(ids))
            n = len(ids)
            key = torch.arange(n, device=ids.device)[:, None] * self.capacity + ids  # each distinct state once
            unique, index = torch.unique(key, return_inverse=True)
            local, state = unique // self.capacity, unique % self.capacity
            np.add.at(self.computed["read"], episodes[local.cpu().numpy()], 1)
            codes = self.state_codes(rows[local].cpu().numpy(), state.cpu().numpy())
            energy = self.energy.read_codes(V[local], codes[:, None])
            return torch.where(ids == UNKNOWN, float("inf"), energy[:, 0][index])
        return score


class GraphView:
    """The graph restricted to some episodes: planners index them 0..n-1."""

    def __init__(self, graph: LazyGraph, rows: np.ndarray):
        self.graph, self.rows = graph, torch.as_tensor(rows, device=graph.device)
        self.model, self.energy = graph.model, graph.energy
        self.num_macros, self.device = graph.num_macros, graph.device

    def fine(self, ids, actions):
        return self.graph.fine(self.rows, ids, actions)

    def coarse(self, ids, macros):
        return self.graph.coarse(self.rows, ids, macros)

    def to_goal(self, ids):
        return self.graph.to_goal(self.rows, ids)

    def distance_to(self, target):
        """The energy towards states target (n,) ids, as a function of state ids (n, N) -> (n, N)."""
        return self.graph.distance_to(self.rows, target)


def cem(view: GraphView, ids: torch.Tensor, horizon: int, coarse: bool, num_samples: int, num_iters: int,
        elite_frac: float, depth_cost: float, generator: torch.Generator, target: torch.Tensor | None = None):
    """Cross-entropy method over `horizon` fine actions (independent categoricals, PlaNet-style) from
    states ids (n,). With `coarse` the samples are rolled out by the coarse transition, one call per
    `coarse_stride` actions (horizon must be a multiple of it), and scored at the macro boundaries:
    the same optimizer and distribution, k times fewer model calls per sample. With `target` (n,)
    state ids, the cost is the energy towards that state (a subgoal) instead of the goal.
    Returns the best action sequence found (n, horizon) and its cost (n,)."""
    n = len(ids)
    score = view.to_goal if target is None else view.distance_to(target)
    stride = view.model.coarse_stride if coarse else 1
    weights = NUM_ACTIONS ** torch.arange(stride - 1, -1, -1, device=ids.device)  # macro index of k actions
    probs = torch.full((n, horizon, NUM_ACTIONS), 1.0 / NUM_ACTIONS, device=ids.device)
    num_elite = max(1, int(round(elite_frac * num_samples)))
    best_cost = torch.full((n,), float("inf"), device=ids.device)
    best = torch.zeros((n, horizon), dtype=torch.long, device=ids.device)
    for _ in range(num_iters):
        samples = torch.multinomial(probs.reshape(-1, NUM_ACTIONS), num_samples, replacement=True, generator=generator)
        samples = samples.reshape(n, horizon, num_samples).transpose(1, 2)  # (n, N, horizon)
        state, cost = ids[:, None].expand(n, num_samples), torch.full((n, num_samples), float("inf"), device=ids.device)
        for t in range(horizon // stride):
            chunk = samples[..., t * stride:(t + 1) * stride]
            state = view.coarse(state, (chunk * weights).sum(-1)) if coarse else view.fine(state, chunk[..., 0])
            energy = score(state)
            cost = torch.minimum(cost, energy + depth_cost * stride * (t + 1))
        elite_cost, elite = cost.topk(num_elite, dim=-1, largest=False)
        elite_seq = samples.gather(1, elite[..., None].expand(-1, -1, horizon))
        probs = F.one_hot(elite_seq, NUM_ACTIONS).float().mean(1)
        improved = elite_cost[:, 0] < best_cost
        best_cost = torch.where(improved, elite_cost[:, 0], best_cost)
        best = torch.where(improved[:, None], elite_seq[:, 0], best)
    return best, best_cost


def all_sequences(length: int, device) -> torch.Tensor:
    """Every fine action sequence of `length`: (3^length, length) long."""
    return torch.tensor(list(itertools.product(range(NUM_ACTIONS), repeat=length)), device=device)


def exhaustive(view: GraphView, ids: torch.Tensor, length: int, score) -> torch.Tensor:
    """The fine sequence of `length` with the lowest score(states (n, S) after t+1 steps, t), min over t."""
    seqs = all_sequences(length, ids.device)  # (S, length)
    state = ids[:, None].expand(len(ids), len(seqs))
    cost = torch.full(state.shape, float("inf"), device=ids.device)
    for t in range(length):
        state = view.fine(state, seqs[None, :, t].expand_as(state))
        cost = torch.minimum(cost, score(state, t))
    return seqs[cost.argmin(-1)]


def helm(view, ids, H, cfg, generator):
    k = view.model.coarse_stride
    def goal_score(state, t):
        return view.to_goal(state) + cfg.depth_cost * (t + 1)
    if H <= k:
        return exhaustive(view, ids, H, goal_score)
    macros = min(math.ceil(H / k), cfg.coarse_horizon)
    plan, _ = cem(view, ids, macros * k, True, cfg.helm_num_samples, cfg.helm_num_iters, cfg.cem_elite_frac,
                  cfg.depth_cost, generator)
    subgoal = coarse_subgoal(view, ids, plan, cfg)
    fine_horizon = min(H, cfg.helm_subgoal_macros * k)
    return cem(view, ids, fine_horizon, False, cfg.helm_fine_samples, cfg.helm_num_iters, cfg.cem_elite_frac,
               cfg.depth_cost, generator, target=subgoal)[0]


def coarse_subgoal(view, ids: torch.Tensor, plan: torch.Tensor, cfg) -> torch.Tensor:
    """The subgoal on a coarse plan (n, M x k): its lowest-energy state among the first
    `helm_subgoal_macros` macro-steps (the whole plan's best if that comes earlier)."""
    k = view.model.coarse_stride
    weights = NUM_ACTIONS ** torch.arange(k - 1, -1, -1, device=ids.device)
    macros = (plan.unflatten(1, (-1, k)) * weights).sum(-1)  # (n, M)
    states, state = [], ids[:, None]
    for m in range(macros.shape[1]):
        state = view.coarse(state, macros[:, m:m + 1])
        states.append(state[:, 0])
    states = torch.stack(states, 1)  # (n, M)
    cost = view.to_goal(states) + cfg.depth_cost * k * torch.arange(1, states.shape[1] + 1, device=ids.device)
    best = cost.argmin(-1).clamp_max(cfg.helm_subgoal_macros - 1)
    return states.gather(1, best[:, None])[:, 0]


def helm_no_coarse(view, ids, H, cfg, generator):
    horizon = min(H, cfg.coarse_horizon * view.model.coarse_stride)
    return cem(view, ids, horizon, False, cfg.no_coarse_num_samples, cfg.helm_num_iters, cfg.cem_elite_frac,
               cfg.depth_cost, generator)[0]


def cem_planner(view, ids, H, cfg, generator):
    return cem(view, ids, min(H, cfg.cem_horizon), False, cfg.cem_num_samples, cfg.cem_num_iters, cfg.cem_elite_frac,
               cfg.depth_cost, generator)[0]


def random_planner(view, ids, H, cfg, generator):
    return torch.randint(NUM_ACTIONS, (len(ids), H), generator=generator, device=ids.device)


def flat_gd(model, energy, z: torch.Tensor, goal: torch.Tensor, H: int, cfg, generator):
    """Gradient descent on relaxed action logits over the whole remaining horizon. z (n, C, W, H) encoded
    observations, goal (n, 4, W, H) the energy's goal values -> actions (n, H), model evaluations per
    episode."""
    logits = torch.zeros(len(z), H, NUM_ACTIONS, device=z.device, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=cfg.gd_lr)
    with torch.enable_grad():
        for _ in range(cfg.gd_steps):
            uniform = torch.rand(logits.shape, generator=generator, device=z.device).clamp_min(1e-10)
            actions = F.softmax((logits - torch.log(-torch.log(uniform))) / cfg.gumbel_tau, dim=-1)
            state, costs = z, []
            for t in range(H):
                state = model.step(state, actions[:, t])
                e = energy.read(goal, model.soft_observation(state)[:, None])[:, 0]
                costs.append(e + cfg.depth_cost * (t + 1))
            costs = torch.stack(costs, -1)
            soft_min = -cfg.softmin_temperature * torch.logsumexp(-costs / cfg.softmin_temperature, dim=-1)
            opt.zero_grad(set_to_none=True)
            soft_min.sum().backward()
            opt.step()
    return logits.detach().argmax(-1), cfg.gd_steps * H * 2


@dataclass(frozen=True)
class Planner:
    """Everything a run needs to know of one planner (see `PLANNERS`).

    plan: `plan(view, ids, H, cfg, generator)` -> actions (n, steps >= 1) to execute from states ids (n,) of
        the `GraphView`, with H steps left; None for the two that `evaluation.run_episodes` runs itself
        (`flat` differentiates through unsnapped latents, `bfs` reads the layout);
    label: its name in the figures;
    fields: the config fields its episodes read (part of its evaluation checkpoints' identity);
    budget: the fields a Pareto budget scales (empty: no Pareto rows);
    networks: the trained world model and energy it plans with (`training.WORLD_MODELS`, `training.ENERGIES`).
    """

    plan: Callable | None
    label: str
    fields: tuple[str, ...] = ()
    budget: tuple[str, ...] = ()
    networks: tuple[str, str] = ("spectral", "hf")


HELM_FIELDS = ("coarse_horizon", "helm_num_samples", "helm_num_iters", "helm_subgoal_macros", "helm_fine_samples",
               "cem_elite_frac")
# every planner a run can evaluate, in the figures' order; `common.config.EXP3_PLANNERS` (run by default) and
# `EXP3_DIAGNOSTIC_PLANNERS` (on request) list the same names (a test checks it)
PLANNERS = {
    "helm": Planner(helm, "HELM (coarse-to-fine, spectral, HF)", HELM_FIELDS,
                    budget=("helm_num_samples", "helm_fine_samples")),
    "helm_no_coarse": Planner(helm_no_coarse, "HELM without coarse level",
                              ("coarse_horizon", "no_coarse_num_samples", "helm_num_iters", "cem_elite_frac"),
                              budget=("no_coarse_num_samples",)),
    "helm_no_spectral": Planner(helm, "HELM without spectral", HELM_FIELDS, networks=("no_spectral", "hf")),
    "helm_no_hf": Planner(helm, "HELM without HF", HELM_FIELDS, networks=("spectral", "no_hf")),
    "cem": Planner(cem_planner, "CEM (PlaNet-style)", ("cem_horizon", "cem_num_samples", "cem_num_iters",
                                                       "cem_elite_frac"), budget=("cem_num_samples",)),
    "flat": Planner(None, "flat GD (Gumbel-Softmax)", ("gd_steps", "gd_lr", "gumbel_tau", "softmin_temperature"),
                    budget=("gd_steps",)),
    "random": Planner(random_planner, "random (floor)"),
    "bfs": Planner(None, "BFS on the true layout (ceiling)"),
    "helm_exact_coarse": Planner(helm, "HELM, exact coarse transitions (reference: reads the layout)", HELM_FIELDS),
}
