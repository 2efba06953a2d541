"""Training of Experiment 3: the loops of the world model (`train_world_model`) and of the goal energy
(`train_energy`), and the training units: the world models and goal energies of one seed on one data source.

A data source is either the training layouts (`"layouts"`, used by the unseen-layouts and fourrooms
tracks) or the one fixed layout with N random walks (`"fixed-N"`, the limited-data track). Each unit
trains HELM's world model (spectral hinge on) and energy (HF on), and, where the ablations need them,
the same world model without the hinge and the same energy without HF, with the same data, optimizer
and steps. Quality (k-step accuracy, energy vs BFS) is measured on the evaluation layouts.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from common.fields import identity
from common.runs import _stream_int, load_checkpoint_if_matches, numpy_rng, save_checkpoint, torch_generator
from common.training import diverged, finite_weights, fit
from exp3_planning_efficiency.energy import WALK_STARTS, GoalEnergy, replay_distances
from exp3_planning_efficiency.local_energy import LocalEnergy
from exp3_planning_efficiency.quality import energy_quality, k_step_accuracy
from exp3_planning_efficiency.env_minigrid import Replay
from exp3_planning_efficiency.losses import energy_loss, world_model_loss
from exp3_planning_efficiency.world_models import WorldModel, one_hot_codes


def train_world_model(model: WorldModel, replay: Replay, cfg, rng: np.random.Generator, quiet: bool = False):
    """`common.training.fit` (Adam, cosine-decayed lr) on `world_model_loss` over random windows of the
    replay. Returns the loss curve (ending at the first non-finite loss if the model diverged)."""
    device = next(model.parameters()).device
    length = cfg.model_rollout_steps

    def tensor(a):
        return torch.as_tensor(a, device=device)

    def step_loss(_step: int) -> torch.Tensor:
        layout, poses, actions = replay.windows(length, cfg.model_batch_size, rng)
        codes = replay.codes(np.repeat(layout[:, None], length + 1, 1), poses)
        coarse_layout, coarse_poses, coarse_actions = replay.windows(cfg.coarse_stride, cfg.coarse_batch_size, rng)
        coarse_codes = replay.codes(np.repeat(coarse_layout[:, None], cfg.coarse_stride + 1, 1), coarse_poses)
        return world_model_loss(model, tensor(codes), tensor(actions), tensor(coarse_codes), tensor(coarse_actions),
                                cfg.lambda_spectral)

    return fit(model.parameters(), cfg.model_lr, cfg.model_train_steps, step_loss, quiet, "world model",
               stop_at_nonfinite=True).numpy()


def train_energy(energy: GoalEnergy, replay: Replay, cfg, rng: np.random.Generator, generator: torch.Generator,
                 quiet: bool = False) -> np.ndarray:
    """Fit the energy to the replay. Each step takes `energy_batch_size` goal observations, each a step of
    a recorded walk, with `energy_starts_per_goal` start observations of its layout: the walk's
    `WALK_STARTS` preceding steps (so every batch holds recorded transitions) and observations the
    replay visited there, drawn uniformly. `common.training.fit`; returns the loss curve (ending at the
    first non-finite loss if the energy diverged)."""
    device = next(energy.parameters()).device
    distances = torch.as_tensor(replay_distances(replay))
    visited = [np.unique(replay.poses[replay.layout == i]) for i in range(len(replay.mazes))]
    counts = np.array([len(v) for v in visited])
    table = np.stack([np.pad(v, (0, counts.max() - len(v))) for v in visited])  # (layouts, max visited)
    G, N = cfg.energy_batch_size, cfg.energy_starts_per_goal
    back = min(WALK_STARTS, N)

    def step_loss(_step: int) -> torch.Tensor:
        walk = rng.integers(len(replay.poses), size=G)
        step = rng.integers(1, replay.poses.shape[1], size=G)
        layout, goal = replay.layout[walk], replay.poses[walk, step]
        preceding = replay.poses[walk[:, None], np.maximum(step[:, None] - np.arange(1, back + 1), 0)]
        uniform = table[layout[:, None], rng.integers(counts[layout][:, None], size=(G, N - back))]
        starts = np.concatenate([preceding, uniform], axis=1)
        x_goal = one_hot_codes(torch.as_tensor(replay.codes(layout, goal), device=device))
        start_codes = torch.as_tensor(replay.codes(np.repeat(layout[:, None], N, 1), starts), device=device)
        V = energy.values(x_goal[:, None], energy.train_iterations, cfg.hf_noise_sigma, generator)
        target = distances[layout[:, None], starts, goal[:, None]].to(device=device, dtype=torch.float32)
        return energy_loss(GoalEnergy.read_codes(V, start_codes), target, cfg.energy_push_weight)

    return fit(energy.parameters(), cfg.energy_lr, cfg.energy_train_steps, step_loss, quiet, "goal energy",
               stop_at_nonfinite=True).numpy()


WORLD_MODELS = {"spectral": lambda cfg: cfg.lambda_spectral, "no_spectral": lambda cfg: 0.0}
ENERGIES = {"hf": lambda cfg: cfg.hf_noise_sigma, "no_hf": lambda cfg: 0.0}


def build_world_model(cfg, device) -> WorldModel:
    """The world model, its convolutions channels-last in memory (faster here, same function)."""
    return WorldModel(cfg.latent_channels, cfg.hidden_channels, cfg.coarse_hidden_channels, cfg.coarse_stride,
                      cfg.coarse_heads).to(
        device, memory_format=torch.channels_last)


def build_energy(cfg, device) -> GoalEnergy | LocalEnergy:
    """The goal energy of the config's family: `propagated` (Bellman-Ford over the map the goal
    observation shows) or `local` (an embedding distance that sees a few cells around each node)."""
    energy = GoalEnergy(cfg.energy_hidden, cfg.energy_iterations) if cfg.energy_family == "propagated" \
        else LocalEnergy(cfg.energy_hidden)
    return energy.to(device, memory_format=torch.channels_last)


def train_networks(cfg, seed: int, source: str, replay: Replay, eval_mazes, eval_dists, variants: tuple[str, ...],
               device) -> dict:
    """Train the world-model and energy `variants` ("spectral", "no_spectral", "hf", "no_hf") of one seed
    on `replay`; returns their state dicts, loss curves and quality on the evaluation layouts."""
    out = {"state": {}, "loss_curves": {}, "quality": {}, "diverged": [], "seconds": {}}
    eval_replay = Replay(eval_mazes, 8, 32, numpy_rng(seed, "exp3-quality-walks"))
    for name in variants:
        start = time.perf_counter()
        torch.manual_seed(_stream_int(seed, "exp3-init", list(WORLD_MODELS | ENERGIES).index(name)))
        if name in WORLD_MODELS:
            net = build_world_model(cfg, device)
            losses = train_world_model(net, replay, dataclasses.replace(cfg, lambda_spectral=WORLD_MODELS[name](cfg)),
                                       numpy_rng(seed, "exp3-model-batches"), cfg.quiet)
            def quality():
                return {"k_step_accuracy": k_step_accuracy(net, eval_replay, [1, 2, 4, 8, 16],
                                                           numpy_rng(seed, "exp3-model-quality"))}
        else:
            net = build_energy(cfg, device)
            push = cfg.local_push_weight if cfg.energy_family == "local" else cfg.energy_push_weight
            losses = train_energy(net, replay, dataclasses.replace(cfg, hf_noise_sigma=ENERGIES[name](cfg),
                                                                   energy_push_weight=push),
                                  numpy_rng(seed, "exp3-energy-batches"),
                                  torch_generator(seed, "exp3-energy-noise", device=device), cfg.quiet)
            def quality():
                return energy_quality(net, eval_mazes, eval_dists, numpy_rng(seed, "exp3-energy-quality"))
        out["state"][name], out["loss_curves"][name] = net.state_dict(), losses
        out["seconds"][name] = time.perf_counter() - start
        if not diverged(torch.from_numpy(losses), finite_weights(net.parameters(), members=False)):
            out["quality"][name] = quality()
        else:
            out["diverged"].append(name)
    return out


# model fields a data source does not read (the walk counts of the limited-data track are in its name)
UNUSED_BY_SOURCE = {"layouts": ("limited_data_walks",),
                    "fixed": ("limited_data_walks", "layout_split_seed", "num_train_layouts", "walks_per_layout")}


def unit_config(cfg, seed: int, source: str, variants, quality_layouts: str) -> dict:
    """A training unit's identity: seed, data source, variants, the layouts its quality is measured on
    (e.g. "test/50") and every config field of role "model" that the source reads."""
    unused = UNUSED_BY_SOURCE[source.split("-")[0]]
    return {"seed": seed, "source": source, "variants": list(variants), "quality_layouts": quality_layouts,
            **{k: v for k, v in identity(cfg, "model").items() if k not in unused}}


def load_or_train_unit(cfg, seed: int, source: str, replay_fn, eval_mazes, eval_dists, quality_layouts: str,
                       variants, device, checkpoint_dir: Path) -> dict:
    """The unit's checkpoint if it matches `unit_config`, else train it (and save it)."""
    unit = unit_config(cfg, seed, source, variants, quality_layouts)
    path = checkpoint_dir / f"models_{source}_seed{seed}.pt"
    payload = load_checkpoint_if_matches(path, unit)
    if payload is None:
        payload = {"unit_config": unit, **train_networks(cfg, seed, source, replay_fn(), eval_mazes, eval_dists,
                                                     variants, device)}
        save_checkpoint(path, payload)
    return payload


def load_networks(cfg, payload: dict, device) -> dict:
    """The unit's trained networks by variant name, frozen (planners differentiate actions only)."""
    nets = {}
    for name, state in payload["state"].items():
        net = build_world_model(cfg, device) if name in WORLD_MODELS else build_energy(cfg, device)
        net.load_state_dict(state)
        nets[name] = net.requires_grad_(False).eval()
    return nets
