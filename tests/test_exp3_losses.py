"""Experiment 3's losses (losses.py): the spectral norm of the world model's fine transition that its
hinge reads, and the goal energy's quasimetric loss."""

import torch
import torch.nn.functional as F

from common.jacobian_utils import spectral_norm_power_iteration
from exp3_planning_efficiency.env_minigrid import NUM_ACTIONS
from exp3_planning_efficiency.world_models import WorldModel


def test_power_iteration_is_the_largest_singular_value_of_the_fine_jacobian():
    """The spectral hinge's power iteration (`common.jacobian_utils.spectral_norm_power_iteration`, forward-mode
    J v, backward J^T J v) on the world model's fine step against the SVD of the full Jacobian of step(., a)
    at each sample (a latent map: 50 x 50), and differentiable in the fine transition's weights."""
    torch.manual_seed(0)
    model = WorldModel(2, 4, 4, 2)
    z, action = torch.randn(3, 2, 5, 5), F.one_hot(torch.tensor([0, 1, 2]), NUM_ACTIONS).float()
    estimate = spectral_norm_power_iteration(lambda x: model.step(x, action), z, iters=200)
    for b in range(3):
        J = torch.autograd.functional.jacobian(lambda x: model.step(x, action[b:b + 1]), z[b:b + 1]).reshape(50, 50)
        torch.testing.assert_close(estimate[b], torch.linalg.matrix_norm(J, ord=2), rtol=1e-4, atol=1e-5)
    grads = torch.autograd.grad(estimate.sum(), list(model.fine.parameters()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_energy_loss_fits_transitions_both_ways_and_holds_longer_pairs_below_the_replay():
    from exp3_planning_efficiency.energy import PUSH_CAP, UNREACHED
    from exp3_planning_efficiency.losses import energy_loss
    d = torch.tensor([[0.5, 3.0, 8.0, 9.0]])
    target = torch.tensor([[1.0, 5.0, 6.0, float(UNREACHED)]])
    # (0.5 - 1)^2 two-sided, 3 < 5 free, (8 - 6)^2 hinge, unreached pair: bonus only
    expected = (0.25 + 0 + 4.0) / 3 - 2.0 * (0.5 + 3 + 8 + 9) / 4 / PUSH_CAP
    torch.testing.assert_close(energy_loss(d, target, 2.0), torch.tensor(expected))
