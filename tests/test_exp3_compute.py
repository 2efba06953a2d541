"""Experiment 3's compute count (compute.py): multiply-adds per network call."""

import torch

from exp3_planning_efficiency.energy import GoalEnergy
from exp3_planning_efficiency.world_models import WorldModel


def _conv_macs(module: torch.nn.Module, W: int, H: int) -> int:
    """Hand count: each convolution (same padding) makes cin x cout x k^2 multiply-adds per cell."""
    return sum(m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1] * W * H
               for m in module.modules() if isinstance(m, torch.nn.Conv2d))


def test_call_macs_equal_a_hand_count_of_the_convolutions():
    from exp3_planning_efficiency.compute import call_macs
    model, energy = WorldModel(4, 8, 6, 2, coarse_heads=2), GoalEnergy(8, 4)
    W, H = 7, 5
    macs = call_macs(model, energy, (W, H), "cpu")
    encode, decode = _conv_macs(model.encoder, W, H), _conv_macs(model.decoder, W, H)
    assert macs["fine"] == encode + _conv_macs(model.fine, W, H) + decode
    assert macs["coarse"] == encode + sum(_conv_macs(head, W, H) + decode for head in model.coarse)
    assert macs["values"] == sum(_conv_macs(m, W, H) for m in (energy.features, energy.move_cost, energy.switch_cost))
    assert macs["read"] == 4 * W * H and macs["sweep_ops"] == 4 * (9 + 4) * W * H
    assert macs["gd_step"] > 2 * (_conv_macs(model.fine, W, H) + decode)  # a forward and a backward
