"""Training of the world models: the loop (`train_ensemble`: E independent members at once, seeds or
the lambda values of a sweep, on `losses.rollout_loss` plus the penalties of `losses.make_penalty`),
the ablation variants and resumable training units.

Variants: flat (no regularizer), flat_multistep (no regularizer, on `multistep_rollout_steps`-step
rollouts in the short protocol: the usual fix for compounding error, same optimizer and budget; not
in the default variants), spectral (the stability penalties of `losses.py`: per-step hinge, FTLE,
k-step hinge, at weights lambda_spectral, lambda_ftle, lambda_kstep), hf (HF invariance at
lambda_hf), helm (both).
A training unit is one (variant, seed[, T]) model; its checkpoint stores the unit config, and a
rerun skips units whose checkpoint matches. The seeds of a variant are trained together as one
ensemble (see models.py) and resume as one batch (`common.runs.load_or_train_batch`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from common.fields import identity
from common.launch import Unit, launch
from common.runs import Timer, load_or_train_batch, to_jsonable, torch_generator
from common.training import diverged, final_loss, finite_weights, fit
from exp1_spectral_cliff.dataset import make_dataset
from exp1_spectral_cliff.models import EnsembleStepModel
from exp1_spectral_cliff.losses import PENALTIES, make_penalty, rollout_loss

# penalty(model, s_ExNx3, a_ExNx3) -> (E,): a regularizer at the visited (state, action) inputs
Penalty = Callable[[EnsembleStepModel, torch.Tensor, torch.Tensor], torch.Tensor]


def sample_windows(states: torch.Tensor, actions: torch.Tensor, rollout_steps: int, batch_size: int,
                   generators: list[torch.Generator]):
    """Random training windows, drawn per member from its own generator.

    states (E, N, L+1, 3), actions (E, N, L, 3) (may be expanded views) ->
    s (E, B, K+1, 3), a (E, B, K, 3) with K = rollout_steps.
    """
    E, N, L = actions.shape[:3]
    traj = torch.stack([torch.randint(N, (batch_size,), generator=g) for g in generators]).to(states.device)
    start = torch.stack([torch.randint(L - rollout_steps + 1, (batch_size,), generator=g) for g in generators])
    start = start.to(states.device)
    member = torch.arange(E, device=states.device)[:, None, None]
    t = start[..., None] + torch.arange(rollout_steps + 1, device=states.device)
    return states[member, traj[..., None], t], actions[member, traj[..., None], t[..., :-1]]


def train_ensemble(model: EnsembleStepModel, states: torch.Tensor, actions: torch.Tensor, cfg,
                   rollout_steps: int, sample_seeds: list[int], penalty: Penalty | None = None,
                   desc: str = "train") -> dict:
    """`common.training.fit` (Adam, cosine-decayed lr) on sum_e (mse_e + penalty_e); members are independent.

    states/actions: (E, N, L+1, 3) / (E, N, L, 3) normalized training trajectories.
    Returns {"final_loss": (E,) mean training loss of the last 50 steps, "diverged": (E,) bool,
    "loss_curve": (E, train_steps) the loss of every step} (on the CPU).
    Divergence is `common.training.diverged` with threshold cfg.divergence_threshold; training
    continues for the other members (members never interact).
    """
    generators = [torch_generator(s, "exp1-batches") for s in sample_seeds]

    def step_loss(_step: int) -> torch.Tensor:
        s, a = sample_windows(states, actions, rollout_steps, cfg.batch_size, generators)
        mse, s_in, a_in = rollout_loss(model, s, a)
        return mse + penalty(model, s_in, a_in) if penalty is not None else mse

    curve = fit(model.parameters(), cfg.lr, cfg.train_steps, step_loss, cfg.quiet, desc)
    return {"final_loss": final_loss(curve), "loss_curve": curve,
            "diverged": diverged(curve, finite_weights(model.parameters()), cfg.divergence_threshold)}


# variant -> (stability penalties, HF invariance)
VARIANTS = {"flat": (False, False), "flat_multistep": (False, False), "spectral": (True, False), "hf": (False, True),
            "helm": (True, True)}


def rollout_steps_of(cfg, variant: str, horizon: int | None) -> int:
    """The rollout length of a unit's loss: T in the per-horizon protocol; else train_rollout_steps, or
    multistep_rollout_steps for flat_multistep."""
    if horizon is not None:
        return horizon
    return cfg.multistep_rollout_steps if variant == "flat_multistep" else cfg.train_rollout_steps


def variant_lambdas(cfg, variant: str) -> dict:
    """Penalty name (losses.PENALTIES) -> weight, of an ablation variant."""
    use_stability, use_hf = VARIANTS[variant]
    return {"spectral": cfg.lambda_spectral if use_stability else 0.0,
            "ftle": cfg.lambda_ftle if use_stability else 0.0,
            "kstep": cfg.lambda_kstep if use_stability else 0.0, "hf": cfg.lambda_hf if use_hf else 0.0}


def train_members(cfg, datasets: list, seeds: list[int], weights: list[dict], rollout_steps: int, desc: str,
                  device: torch.device) -> tuple[EnsembleStepModel, dict]:
    """Train one member per (dataset, seed, penalty weights) as one ensemble on `device`; weights[e]
    maps penalty names to member e's weights (missing = 0). Returns model, diagnostics."""
    model = EnsembleStepModel(seeds, cfg.hidden_dim, cfg.num_layers).to(device)
    states = torch.stack([d.train_states for d in datasets]).to(device)
    actions = torch.stack([d.train_actions for d in datasets]).to(device)
    stacked = {k: torch.tensor([float(w.get(k, 0.0)) for w in weights]) for k in PENALTIES}
    penalty = None
    if any(bool((w > 0).any()) for w in stacked.values()):
        penalty = make_penalty(cfg, stacked, seeds, device)
    info = train_ensemble(model, states, actions, cfg, rollout_steps, seeds, penalty, desc)
    return model, info


def unit_config(cfg, variant: str, seed: int, rollout_steps: int) -> dict:
    """Everything that determines one trained model (the resume key): every config field declared
    with role "model", and the unit's variant, seed, rollout length and effective lambdas."""
    effective = {f"effective_lambda_{k}": w for k, w in variant_lambdas(cfg, variant).items()}
    return to_jsonable({**identity(cfg, "model"), "variant": variant, "seed": seed, "rollout_steps": rollout_steps,
                        **effective})


def checkpoint_path(ckpt_dir: Path, variant: str, seed: int, horizon: int | None) -> Path:
    """short protocol: {variant}_seed{s}.pt; per_horizon: {variant}_model_T{T}_seed{s}.pt (seed's names)."""
    name = f"{variant}_seed{seed}.pt" if horizon is None else f"{variant}_model_T{horizon}_seed{seed}.pt"
    return ckpt_dir / name


def train_variant(cfg, variant: str, datasets: dict, ckpt_dir: Path, device: torch.device,
                  horizon: int | None = None) -> dict:
    """Train (or resume) one variant for every seed; return {seed: checkpoint payload}.

    horizon=None: the short protocol (`rollout_steps_of`-step loss); horizon=T: the seed's
    per-horizon protocol (T-step rollout loss; MSE and penalties averaged over the T steps).
    Payload: {"unit_config", "state" (1-member state dict), "final_loss", "diverged", "train_seconds",
    "loss_curve" (train_steps,)}.
    """
    rollout_steps = rollout_steps_of(cfg, variant, horizon)
    seeds = list(cfg.seeds)

    def train() -> list[dict]:
        label = variant if horizon is None else f"{variant} T={horizon}"
        timer = Timer()
        model, info = train_members(cfg, [datasets[s] for s in seeds], seeds,
                                    [variant_lambdas(cfg, variant)] * len(seeds), rollout_steps,
                                    desc=f"train {label}", device=device)
        seconds = timer.seconds() / len(seeds)
        return [{"state": model.member_state(e), "final_loss": float(info["final_loss"][e]),
                 "diverged": bool(info["diverged"][e]), "train_seconds": seconds,
                 "loss_curve": info["loss_curve"][e]} for e in range(len(seeds))]

    payloads = load_or_train_batch([checkpoint_path(ckpt_dir, variant, s, horizon) for s in seeds],
                                   [unit_config(cfg, variant, s, rollout_steps) for s in seeds], train)
    return dict(zip(seeds, payloads))


def train_unit(cfg, variant: str, horizon: int | None, ckpt_dir: Path, device: torch.device) -> None:
    """A launcher unit: one variant's batch of seeds (one horizon's under per_horizon), trained into
    its checkpoints. The unit rebuilds the datasets from their named streams (identical data)."""
    train_variant(cfg, variant, {s: make_dataset(cfg, s) for s in cfg.seeds}, ckpt_dir, device, horizon)


def launch_variant_units(cfg, ckpt_dir: Path, device: torch.device) -> None:
    """Train every (variant[, T]) batch through `cfg.launcher` (`common.launch`); `train_and_load`
    then finds them in their checkpoints. The units are today's batches, so the numbers are the
    inline run's bit for bit."""
    horizons = [None] if cfg.train_protocol == "short" else list(cfg.horizons)
    launch(cfg, [Unit(variant if T is None else f"{variant} T={T}", train_unit, (cfg, variant, T, ckpt_dir, device))
                 for variant in cfg.variants for T in horizons], ckpt_dir / "launcher")


def load_ensemble(cfg, payloads: dict, device: torch.device) -> EnsembleStepModel:
    """Stack the given seeds' saved models (seed -> payload) into one frozen ensemble on `device`."""
    states = [payloads[s]["state"] for s in payloads]
    model = EnsembleStepModel.from_member_states(states, cfg.hidden_dim, cfg.num_layers)
    return model.to(device).requires_grad_(False)


def train_and_load(cfg, variant: str, datasets: dict, ckpt_dir: Path, device: torch.device
                   ) -> tuple[dict, list[int], dict, np.ndarray]:
    """Train/resume a variant under cfg.train_protocol; returns (T -> ensemble, usable seeds, info,
    loss curves (S, models per seed, train_steps)).

    short: one model per seed serves every horizon. per_horizon: one model per (T, seed); a seed
    is usable when none of its T-models diverged. info[seed] (per T for per_horizon) holds
    final_loss, diverged, train_seconds.
    """
    horizons = [None] if cfg.train_protocol == "short" else list(cfg.horizons)
    runs = {T: train_variant(cfg, variant, datasets, ckpt_dir, device, T) for T in horizons}
    curves = np.stack([[np.asarray(runs[T][s]["loss_curve"]) for T in horizons] for s in cfg.seeds])
    seeds = [s for s in cfg.seeds if not any(runs[T][s]["diverged"] for T in horizons)]
    keys = ("final_loss", "diverged", "train_seconds")
    info = {f"seed{s}" if T is None else f"T{T}_seed{s}": {k: runs[T][s][k] for k in keys}
            for T in horizons for s in cfg.seeds}
    if not seeds:
        return {}, [], info, curves
    models = {T: load_ensemble(cfg, {s: runs[T][s] for s in seeds}, device) for T in horizons}
    if horizons == [None]:  # one model serves every analysed horizon
        models = {T: models[None] for T in list(cfg.horizons) + list(cfg.planning_horizons)}
    return models, seeds, info, curves
