"""Batched training of many energy models at once (seeds x variants, or a whole sweep).

Every model has its own init and its own data stream (uniform x, Gaussian delta), both drawn
from named streams of the model's seed only, so Flat and HELM of one seed see the same points.
Adam acts element-wise, so summing the per-model losses trains each model as if it were alone, up
to float rounding: batched matmul kernels depend on the batch size at the last bit, which is why a
run resumes its models as one batch (`train_or_load`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from exp2_funnel_heatmap.energy_functions import Landscape, energy, grid
from exp2_funnel_heatmap.models import EnergyEnsemble
from exp2_funnel_heatmap.losses import consistency_loss, flat_loss, mollified_target_loss
from common.fields import identity
from common.launch import Unit, launch
from common.runs import load_or_train_batch, to_jsonable, torch_generator
from common.training import diverged, final_loss, finite_weights, fit

FORMS = ("flat", "mollified_target", "consistency")
DATA_CHUNK_STEPS = 100  # steps of data drawn at once per model


@dataclass(frozen=True)
class ModelSpec:
    """One model to train: `form` in FORMS, HF noise `sigma`, consistency weight `lam`."""

    name: str
    seed: int
    form: str
    sigma: float = 0.0
    lam: float = 0.0


def energy_normalisation(p: Landscape) -> tuple[float, float]:
    """(mean, std) of E* on the domain: fixed output offset/scale of the MLP."""
    values = energy(grid(p, 101)[1], p)
    return float(values.mean()), float(values.std())


def build_ensemble(specs: list[ModelSpec], cfg) -> EnergyEnsemble:
    p = Landscape.from_config(cfg)
    offset, scale = energy_normalisation(p)
    return EnergyEnsemble([s.seed for s in specs], cfg.num_fourier_features, cfg.fourier_scale,
                          cfg.hidden_dim, cfg.num_layers, offset, scale)


def _data_chunk(gens, specs, steps, batch, L, draws):
    """x (steps, M, B, 2) uniform on the domain and unit-variance noise (steps, M, B, draws, 2)."""
    xs, ds = [], []
    for g in gens:
        xs.append((torch.rand(steps, batch, 2, generator=g) * 2 - 1) * L)
        ds.append(torch.randn(steps, batch, draws, 2, generator=g))
    return torch.stack(xs, 1), torch.stack(ds, 1)


def per_model_loss(model, x, noise, specs, p) -> torch.Tensor:
    """The loss of every model on its batch: x (M, B, 2), noise (M, B, K, 2) -> (M,). The
    mollified target averages its K draws; the consistency form uses the first."""
    sigma = torch.tensor([s.sigma for s in specs], device=x.device).view(-1, 1, 1, 1)
    delta = noise * sigma
    E_x = model(x)
    assert all(s.form in FORMS for s in specs), f"unknown form in {specs}"
    # the forms are read off the specs on the host: no device-to-host sync per training step
    is_moll = torch.tensor([s.form == FORMS[1] for s in specs], device=x.device)
    # masked sums: each model gets exactly its own form (0 * finite = 0 for the other forms)
    loss = torch.where(is_moll, mollified_target_loss(E_x, x, delta, p), flat_loss(E_x, x, p))
    consistency = [i for i, s in enumerate(specs) if s.form == FORMS[2]]
    if consistency:  # the second forward pass only for the consistency models
        idx = torch.tensor(consistency, device=x.device)
        lam = torch.tensor([specs[i].lam for i in consistency], device=x.device)
        hf = lam * consistency_loss(E_x[idx], model(x[idx] + delta[idx, :, 0], models=idx))
        loss = loss.index_add(0, idx, hf)
    return loss


def train_models(specs: list[ModelSpec], cfg, device=torch.device("cpu"), desc: str = "train"
                 ) -> tuple[EnergyEnsemble, torch.Tensor, torch.Tensor]:
    """Train all `specs` in one batched loop (`common.training.fit`). Returns the ensemble, each model's
    final loss (M,) (mean of the last 50 steps' loss / energy_scale^2, NaN when the model diverged by
    `common.training.diverged`) and the per-step loss curves (M, train_steps)."""
    p = Landscape.from_config(cfg)
    model = build_ensemble(specs, cfg).to(device)
    gens = [torch_generator(s.seed, "exp2-data") for s in specs]
    scale2 = model.energy_scale ** 2
    data = {}

    def step_loss(step: int) -> torch.Tensor:
        if step % DATA_CHUNK_STEPS == 0:
            xs, ns = _data_chunk(gens, specs, min(DATA_CHUNK_STEPS, cfg.train_steps - step), cfg.batch_size,
                                 p.L * (1 + cfg.train_margin), cfg.hf_target_draws)
            data["x"], data["noise"] = xs.to(device), ns.to(device)
        i = step % DATA_CHUNK_STEPS
        return per_model_loss(model, data["x"][i], data["noise"][i], specs, p) / scale2

    curves = fit(model.parameters(), cfg.lr, cfg.train_steps, step_loss, cfg.quiet, desc)
    bad = diverged(curves, finite_weights(model.parameters()))
    return model, torch.where(bad, torch.nan, final_loss(curves)), curves


def train_or_load(specs: list[ModelSpec], cfg, device, ckpt_dir: Path, desc: str = "train"
                  ) -> tuple[EnergyEnsemble, torch.Tensor, torch.Tensor]:
    """The trained ensemble for `specs`, each model's final loss (NaN when diverged) and loss curves
    (M, train_steps); one checkpoint file per model. Models train in units of `models_per_unit`
    consecutive specs (0: all in one), each unit one batch resumed as a whole
    (`common.runs.load_or_train_batch`); several units, or any launcher but inline, go through
    `common.launch` first, and this process then loads what they saved."""
    units = [specs[i:i + cfg.models_per_unit] for i in range(0, len(specs), cfg.models_per_unit)] \
        if cfg.models_per_unit else [specs]
    if len(units) > 1 or cfg.launcher != "inline":
        launch(cfg, [Unit(f"{desc}: {u[0].name} seed {u[0].seed} .. {u[-1].name} seed {u[-1].seed}", train_unit,
                          (u, cfg, device, ckpt_dir, desc)) for u in units], ckpt_dir / "launcher")
    payloads = [p for u in units for p in load_or_train_unit(u, cfg, device, ckpt_dir, desc)]
    model = build_ensemble(specs, cfg).to(device)
    for m, payload in enumerate(payloads):
        model.load_slice(m, payload["state"])
    final_loss = torch.tensor([torch.nan if p["final_loss"] is None else p["final_loss"] for p in payloads])
    return model, final_loss, torch.stack([p["loss_curve"] for p in payloads])


def load_or_train_unit(specs: list[ModelSpec], cfg, device, ckpt_dir: Path, desc: str) -> list[dict]:
    """The checkpoint payloads of one unit of models, trained as one batch if any is missing."""
    def train() -> list[dict]:
        trained, losses, curves = train_models(specs, cfg, device, desc)
        return [{"state": trained.slice_state(m), "final_loss": to_jsonable(losses[m]), "loss_curve": curves[m]}
                for m in range(len(specs))]

    return load_or_train_batch([ckpt_dir / f"{s.name}_seed{s.seed}.pt" for s in specs],
                               [unit_config(s, cfg) for s in specs], train)


def train_unit(specs: list[ModelSpec], cfg, device, ckpt_dir: Path, desc: str) -> None:
    """A launcher unit: train (or find) one unit's models; they land in their checkpoints."""
    load_or_train_unit(specs, cfg, device, ckpt_dir, desc)


def specs_for_run(cfg, seed: int) -> list[ModelSpec]:
    """The three models of one reported seed: Flat, HELM (cfg.hf_form) and the other form (ablation)."""
    other = "consistency" if cfg.hf_form == "mollified_target" else "mollified_target"
    return [ModelSpec("flat", seed, "flat"),
            helm_spec(cfg, "helm", seed, cfg.hf_form), helm_spec(cfg, f"helm_{other}", seed, other)]


def helm_spec(cfg, name: str, seed: int, form: str, sigma: float | None = None, lam: float | None = None) -> ModelSpec:
    """A HELM model; lambda_hf only enters the consistency form (kept 0 otherwise)."""
    sigma = cfg.hf_noise_sigma if sigma is None else sigma
    lam = (cfg.lambda_hf if lam is None else lam) if form == "consistency" else 0.0
    return ModelSpec(name, seed, form, sigma, lam)


def unit_config(spec: ModelSpec, cfg) -> dict:
    """Everything that determines one trained model (its checkpoint's identity): the spec and every
    config field declared with role "model"."""
    return {**dataclasses.asdict(spec), **identity(cfg, "model")}
