"""HELM regularizers of the transition, the four ablation variants, and resumable training units.

- spectral: lambda_spectral * relu(sigma_max(ds'/ds) - 1)^2 at the visited states (exact 3x3
  Jacobians from one batched forward + 3 batched backward rows, differentiable);
- hf: lambda_hf * E_delta ||F(s + d_s, a + d_a) - F(s, a)||^2, delta ~ N(0, sigma^2 I) on the model's
  whole input (HF invariance / mollification of the transition);
- variants: flat (neither), spectral, hf, helm (both).
A training unit is one (variant, seed[, T]) model; its checkpoint stores the unit config, and a
rerun skips units whose checkpoint matches. The seeds of a variant are trained together as one
ensemble (see models.py) and resume as one batch (`common.runs.load_or_train_batch`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from common.jacobian_utils import batch_jacobian
from common.config import identity
from common.runs import Timer, load_or_train_batch, to_jsonable, torch_generator
from exp1_spectral_cliff.models import EnsembleStepModel
from exp1_spectral_cliff.train_flat import train_ensemble

VARIANTS = {"flat": (False, False), "spectral": (True, False), "hf": (False, True), "helm": (True, True)}


def spectral_norm_3x3(J: torch.Tensor) -> torch.Tensor:
    """Exact largest singular value of (N, 3, 3) matrices: sqrt of the top eigenvalue of J^T J.

    eigvalsh of the 3x3 Gram matrix was 1.5x faster forward+backward than matrix_norm(ord=2)
    (SVD) here, at equal values; NaN entries (a diverged member) are zeroed so LAPACK never fails.
    """
    J = torch.nan_to_num(J, nan=0.0, posinf=0.0, neginf=0.0)
    return torch.linalg.eigvalsh(J.transpose(-1, -2) @ J)[..., -1].clamp_min(0).sqrt()


def spectral_hinge(model: EnsembleStepModel, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Mean over inputs of relu(sigma_max(ds'/ds) - 1)^2, per member. s, a (E, N, 3) -> (E,)."""
    E = s.shape[0]
    J = batch_jacobian(model.flat_step, s.reshape(-1, 3), a.reshape(-1, 3), argnums=0, create_graph=True)
    return torch.relu(spectral_norm_3x3(J) - 1.0).pow(2).reshape(E, -1).mean(dim=1)


def hf_invariance(model: EnsembleStepModel, s: torch.Tensor, a: torch.Tensor, sigma: float,
                  generators: list[torch.Generator]) -> torch.Tensor:
    """E_delta ||F(x + delta) - F(x)||^2 with one delta per input, per member. s, a (E, N, 3) -> (E,)."""
    s, a = s.detach(), a.detach()
    noise = sigma * torch.stack([torch.randn(s.shape[1], 6, generator=g) for g in generators]).to(s.device)
    out = model(s, a)
    noisy = model(s + noise[..., :3], a + noise[..., 3:])
    return (noisy - out).pow(2).sum(dim=-1).mean(dim=1)


def make_penalty(lambda_spectral: torch.Tensor, lambda_hf: torch.Tensor, sigma: float, noise_seeds: list[int],
                 device: torch.device):
    """The HELM penalty with per-member weights (E,); terms whose weights are all 0 are skipped."""
    generators = [torch_generator(s, "exp1-hf-noise") for s in noise_seeds]
    lambda_spectral, lambda_hf = lambda_spectral.to(device), lambda_hf.to(device)

    def penalty(model, s, a):
        total = torch.zeros(s.shape[0], device=s.device)
        if bool((lambda_spectral > 0).any()):
            total = total + lambda_spectral * spectral_hinge(model, s, a)
        if bool((lambda_hf > 0).any()):
            total = total + lambda_hf * hf_invariance(model, s, a, sigma, generators)
        return total

    return penalty


def variant_lambdas(cfg, variant: str) -> tuple[float, float]:
    """(lambda_spectral, lambda_hf) of an ablation variant."""
    use_spectral, use_hf = VARIANTS[variant]
    return (cfg.lambda_spectral if use_spectral else 0.0), (cfg.lambda_hf if use_hf else 0.0)


def train_members(cfg, datasets: list, seeds: list[int], lambdas_spectral: list[float], lambdas_hf: list[float],
                  rollout_steps: int, desc: str, device: torch.device) -> tuple[EnsembleStepModel, dict]:
    """Train one member per (dataset, seed, lambda pair) as one ensemble on `device`. Returns model,
    diagnostics."""
    model = EnsembleStepModel(seeds, cfg.hidden_dim, cfg.num_layers).to(device)
    states = torch.stack([d.train_states for d in datasets]).to(device)
    actions = torch.stack([d.train_actions for d in datasets]).to(device)
    lam_s, lam_h = torch.tensor(lambdas_spectral), torch.tensor(lambdas_hf)
    penalty = None
    if bool((lam_s > 0).any() or (lam_h > 0).any()):
        penalty = make_penalty(lam_s, lam_h, cfg.hf_noise_sigma, seeds, device)
    info = train_ensemble(model, states, actions, cfg, rollout_steps, seeds, penalty, desc)
    return model, info


def unit_config(cfg, variant: str, seed: int, rollout_steps: int) -> dict:
    """Everything that determines one trained model (the resume key): every config field declared
    with role "model", and the unit's variant, seed, rollout length and effective lambdas."""
    lam_s, lam_h = variant_lambdas(cfg, variant)
    return to_jsonable({**identity(cfg, "model"), "variant": variant, "seed": seed, "rollout_steps": rollout_steps,
                        "effective_lambda_spectral": lam_s, "effective_lambda_hf": lam_h})


def checkpoint_path(ckpt_dir: Path, variant: str, seed: int, horizon: int | None) -> Path:
    """short protocol: {variant}_seed{s}.pt; per_horizon: {variant}_model_T{T}_seed{s}.pt (seed's names)."""
    name = f"{variant}_seed{seed}.pt" if horizon is None else f"{variant}_model_T{horizon}_seed{seed}.pt"
    return ckpt_dir / name


def train_variant(cfg, variant: str, datasets: dict, ckpt_dir: Path, device: torch.device,
                  horizon: int | None = None) -> dict:
    """Train (or resume) one variant for every seed; return {seed: checkpoint payload}.

    horizon=None: the short protocol (cfg.train_rollout_steps-step loss); horizon=T: the seed's
    per-horizon protocol (T-step rollout loss; MSE and penalties averaged over the T steps).
    Payload: {"unit_config", "state" (1-member state dict), "final_loss", "diverged", "train_seconds",
    "loss_curve" (train_steps,)}.
    """
    rollout_steps = cfg.train_rollout_steps if horizon is None else horizon
    seeds = list(cfg.seeds)

    def train() -> list[dict]:
        lam_s, lam_h = variant_lambdas(cfg, variant)
        label = variant if horizon is None else f"{variant} T={horizon}"
        timer = Timer()
        model, info = train_members(cfg, [datasets[s] for s in seeds], seeds, [lam_s] * len(seeds),
                                    [lam_h] * len(seeds), rollout_steps, desc=f"train {label}", device=device)
        seconds = timer.seconds() / len(seeds)
        return [{"state": model.member_state(e), "final_loss": float(info["final_loss"][e]),
                 "diverged": bool(info["diverged"][e]), "train_seconds": seconds,
                 "loss_curve": info["loss_curve"][e]} for e in range(len(seeds))]

    payloads = load_or_train_batch([checkpoint_path(ckpt_dir, variant, s, horizon) for s in seeds],
                                   [unit_config(cfg, variant, s, rollout_steps) for s in seeds], train)
    return dict(zip(seeds, payloads))


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
