"""Compute accounting of Experiment 3: the multiply-adds (MACs) of the network calls a planner ran.

`call_macs` measures, with torch's `FlopCounterMode`, one call of each network on one observation
(convolutions: the MACs of a batch are the batch size times these). `LazyGraph` counts, per episode,
the calls it actually computed (cache hits are counted apart, as requests), so a planner's MACs per
episode are exact sums over what ran:
- a fine transition: encode + fine step + decode;
- a coarse transition: encode + (coarse step + decode) per member of the coarse ensemble;
- the goal energy towards a goal or subgoal: its CNN (the propagated energy's edge costs, the local
  energy's node embeddings), plus, for the propagated one, Bellman-Ford sweeps, which are additions
  and minima (no multiplies): reported apart as `sweep_ops` (sweeps x the graph's edges);
- an energy read: one product of the observation's agent planes with the values (4 W H MACs).
The flat gradient planner: per re-plan, one encode and `gd_step_macs` (forward and backward of one
relaxed step, measured the same way) times its gradient steps and horizon.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from exp3_planning_efficiency.energy import CHANNELS, GoalEnergy
from exp3_planning_efficiency.env_minigrid import NUM_ACTIONS, NUM_CODES

SWEEP_EDGES = CHANNELS * (9 + CHANNELS)  # per cell: a move to each 3x3 neighbour, a switch to each channel


def _macs(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() // 2  # a multiply-add is two floating-point operations


def call_macs(model, energy, shape: tuple[int, int], device) -> dict:
    """MACs of one call of each kind on one observation of `shape` (W, H); "sweep_ops": the additions
    (and as many minima) of one Bellman-Ford sweep."""
    W, H = shape
    x = torch.zeros(1, NUM_CODES, W, H, device=device)
    with torch.no_grad():
        z = model.encode(x)
        a = torch.zeros(1, NUM_ACTIONS, device=device)
        macro = torch.zeros(1, model.coarse_stride, NUM_ACTIONS, device=device)
        encode, decode = _macs(lambda: model.encode(x)), _macs(lambda: model.decode_logits(z))
        coarse = sum(_macs(lambda h=h: model.coarse_step(z, macro, h)) + decode for h in range(len(model.coarse)))
        return {"encode": encode, "fine": encode + _macs(lambda: model.step(z, a)) + decode, "coarse": encode + coarse,
                "values": _macs(lambda: energy.values(x[:, None], 1)), "read": CHANNELS * W * H,
                "sweep_ops": SWEEP_EDGES * W * H, "gd_step": gd_step_macs(model, shape, device)}


def gd_step_macs(model, shape: tuple[int, int], device) -> int:
    """MACs of one relaxed step of the flat gradient planner (step, soft decode, energy read), forward
    and backward, on one episode."""
    W, H = shape
    z = torch.zeros(1, model.encoder[-1].out_channels, W, H, device=device)
    logits = torch.zeros(1, NUM_ACTIONS, device=device, requires_grad=True)
    V = torch.zeros(1, CHANNELS, W, H, device=device)

    def step():  # the gradients the planner's backward computes (its weights' too), without storing them
        with torch.enable_grad():
            state = model.step(z, F.softmax(logits, dim=-1))
            cost = GoalEnergy.read(V, model.soft_observation(state)[:, None]).sum()
            torch.autograd.grad(cost, [logits, *(p for p in model.parameters() if p.requires_grad)], allow_unused=True)
    return _macs(step)
