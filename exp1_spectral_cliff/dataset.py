"""Controlled Lorenz system: RK4 integration, trajectories on the attractor, normalization.

s_dot = f_Lorenz(s) + c * std * u, with u in [-1, 1]^3 held constant for one model step of
`dt_model` (integrated with `dt_model / dt` RK4 substeps). States are normalized with the training
mean/std; `LorenzData.true_step` is the TRUE system in those normalized coordinates, differentiable,
so the same Jacobian code measures the learned models and the real dynamics.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from common.runs import torch_generator

SIGMA, RHO, BETA = 10.0, 28.0, 8.0 / 3.0


def lorenz_rhs(s: torch.Tensor, force: torch.Tensor) -> torch.Tensor:
    """Time derivative of the forced Lorenz system. s (..., 3), force (..., 3) -> (..., 3)."""
    x, y, z = s.unbind(-1)
    return torch.stack([SIGMA * (y - x), x * (RHO - z) - y, x * y - BETA * z], dim=-1) + force


def rk4_step(s: torch.Tensor, force: torch.Tensor, dt: float) -> torch.Tensor:
    """One classical Runge-Kutta step of size dt with the forcing held constant."""
    k1 = lorenz_rhs(s, force)
    k2 = lorenz_rhs(s + 0.5 * dt * k1, force)
    k3 = lorenz_rhs(s + 0.5 * dt * k2, force)
    k4 = lorenz_rhs(s + dt * k3, force)
    return s + (dt / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)


def integrate(s: torch.Tensor, force: torch.Tensor, dt: float, num_steps: int) -> torch.Tensor:
    """num_steps RK4 steps with constant forcing. s (B, 3) -> (B, 3)."""
    for _ in range(num_steps):
        s = rk4_step(s, force, dt)
    return s


def random_initial_states(num: int, generator: torch.Generator) -> torch.Tensor:
    """Initial conditions in a box around the attractor (float64), before burn-in. -> (num, 3)."""
    low = torch.tensor([-15.0, -20.0, 5.0], dtype=torch.float64)
    high = torch.tensor([15.0, 20.0, 45.0], dtype=torch.float64)
    return low + (high - low) * torch.rand(num, 3, generator=generator, dtype=torch.float64)


@functools.lru_cache(maxsize=4)
def attractor_std(dt: float = 0.01) -> torch.Tensor:
    """Per-coordinate std of the uncontrolled attractor (fixed reference sample, seed-independent).

    It scales the forcing, so the system itself does not depend on the run's seed. -> (3,) float64.
    """
    gen = torch.Generator().manual_seed(12345)
    s = integrate(random_initial_states(256, gen), torch.zeros(3, dtype=torch.float64), dt, round(20.0 / dt))
    samples = []
    for _ in range(200):  # 200 samples 0.1 time units apart per initial state
        s = integrate(s, torch.zeros(3, dtype=torch.float64), dt, round(0.1 / dt))
        samples.append(s)
    return torch.cat(samples).std(dim=0)


@dataclass
class LorenzSystem:
    """The controlled Lorenz map over one model step, in raw (unnormalized) coordinates."""

    dt: float
    substeps: int
    forcing: torch.Tensor  # (3,) float64: c * attractor std

    @classmethod
    def from_config(cls, cfg) -> "LorenzSystem":
        return cls(cfg.dt, round(cfg.dt_model / cfg.dt), cfg.control_scale * attractor_std(cfg.dt))

    def step(self, s: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """s (B, 3), u (B, 3) in [-1, 1] -> state after dt_model. Differentiable in s and u."""
        return integrate(s, u * self.forcing.to(s), self.dt, self.substeps)


@dataclass
class LorenzData:
    """Normalized trajectories. states (N, L+1, 3) float32, actions (N, L, 3) float32 in [-1, 1]."""

    train_states: torch.Tensor
    train_actions: torch.Tensor
    test_states: torch.Tensor
    test_actions: torch.Tensor
    mean: torch.Tensor  # (3,) float64, raw units
    std: torch.Tensor  # (3,) float64, raw units
    system: LorenzSystem

    def true_step(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """The true controlled Lorenz step in normalized coordinates. s (B, 3), a (B, 3) -> (B, 3).

        Runs in s's dtype (use float64 for long-horizon Jacobians)."""
        mean, std = self.mean.to(s), self.std.to(s)
        return (self.system.step(s * std + mean, a) - mean) / std


def simulate(system: LorenzSystem, s0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Raw trajectories. s0 (N, 3), actions (N, L, 3) -> states (N, L+1, 3)."""
    states = [s0]
    for t in range(actions.shape[1]):
        states.append(system.step(states[-1], actions[:, t]))
    return torch.stack(states, dim=1)


def make_dataset(cfg, seed: int) -> LorenzData:
    """Train/test trajectories of the controlled system for one seed (random actions, uniform)."""
    gen = torch_generator(seed, "exp1-data")
    system = LorenzSystem.from_config(cfg)
    n = cfg.num_train_trajectories + cfg.num_test_trajectories
    zero = torch.zeros(3, dtype=torch.float64)
    s0 = integrate(random_initial_states(n, gen), zero, cfg.dt, round(cfg.burn_in_time / cfg.dt))
    actions = 2 * torch.rand(n, cfg.trajectory_steps, 3, generator=gen, dtype=torch.float64) - 1
    states = simulate(system, s0, actions)
    n_train = cfg.num_train_trajectories
    mean = states[:n_train].reshape(-1, 3).mean(dim=0)
    std = states[:n_train].reshape(-1, 3).std(dim=0)
    normed = ((states - mean) / std).float()
    return LorenzData(normed[:n_train], actions[:n_train].float(), normed[n_train:], actions[n_train:].float(),
                      mean, std, system)


def stacked_true_step(datasets: list[LorenzData]):
    """The true step of several seeds at once (each in its own normalization).

    -> step(s (E, B, 3), a (E, B, 3)) -> (E, B, 3), member e normalized like datasets[e]; runs in s's dtype.
    """
    mean = torch.stack([d.mean for d in datasets])[:, None]  # (E, 1, 3) float64, raw units
    std = torch.stack([d.std for d in datasets])[:, None]
    system = datasets[0].system  # the forcing does not depend on the seed (attractor_std)

    def step(s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        m, sd = mean.to(s), std.to(s)
        return (system.step(s * sd + m, a) - m) / sd

    return step
