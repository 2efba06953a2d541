"""The accuracy/stability frontier on the TUNING seed: regularizer families at several strengths.

    python sweep_lambda.py    # writes results/sweep.json and plots/exp1_tradeoff.png
                              # (run_experiment.py --plots-only redraws that figure too)

One ensemble, trained together on the tuning seed's data with the same initialization and
minibatches: a Flat reference, then HELM (HF invariance at cfg.lambda_hf plus one stability penalty
of `losses.py`) for each family and strength: the per-step spectral hinge at cfg.lambda_sweep,
the FTLE penalty at cfg.ftle_sweep, the k-step hinge at cfg.kstep_sweep. Members differ only in
their penalty. Rule for HELM's default (fixed before looking): among the members that meet the three
norm criteria on the tuning seed (||ds_T/da||_F(T=100) < 20, Flat/member at T=200 >= 20, log-growth
50->200 < 10 % of Flat's), the one with the lowest 1-step test RMSE.
Every member also plans in the true system, on the tuning seed's tasks, with the default run's planner
and schedule (`evaluation.control`): its solved fraction and median error / d0 per planning horizon,
open and closed loop (reported beside the frontier; not part of the rule).
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np

from common.cli import command
from common.cli_parse import parse
from common.config import Exp1Config
from common.launch import Unit, launch
from common.runs import (StagedOutputs, Timer, load_checkpoint_if_matches, save_checkpoint, setup_torch, to_jsonable,
                         write_json)
import torch

from exp1_spectral_cliff.dataset import make_dataset
from exp1_spectral_cliff.evaluation import control
from exp1_spectral_cliff.models import EnsembleStepModel
from exp1_spectral_cliff.plots import plot_tradeoff
from exp1_spectral_cliff.quality import model_rmse
from exp1_spectral_cliff.spectrum import model_log_norms
from exp1_spectral_cliff.tasks import make_tasks, solved
from exp1_spectral_cliff.training import train_members, unit_config

FAMILIES = {"spectral": "lambda_sweep", "ftle": "ftle_sweep", "kstep": "kstep_sweep"}  # family -> its strengths' field
STABILITY_DEFAULTS = ("lambda_spectral", "lambda_ftle", "lambda_kstep")  # what the sweep chooses
PROG = "exp1_spectral_cliff/sweep_lambda.py"
RULE = ("among the members meeting the three norm criteria on the tuning seed, the lowest 1-step RMSE")


def sweep_members(cfg) -> list[dict]:
    """[Flat] + one member per (family, strength): {"family", "lambda", "weights" (penalty -> weight)}."""
    members = [{"family": "flat", "lambda": 0.0, "weights": {}}]
    for family, field in FAMILIES.items():
        members += [{"family": family, "lambda": lam, "weights": {family: lam, "hf": cfg.lambda_hf}}
                    for lam in getattr(cfg, field)]
    return members


def train_sweep(cfg, data, members: list[dict], ckpt_path, device):
    """Train (or resume) the sweep ensemble, one member per entry of `members`."""
    seed, n = cfg.tuning_seed, len(members)
    # the members' weights are explicit: the default stability weights are not part of the sweep's identity
    key = {k: v for k, v in unit_config(cfg, "flat", seed, cfg.train_rollout_steps).items()
           if k not in STABILITY_DEFAULTS and not k.startswith("effective_")}
    key["members"] = members
    found = load_checkpoint_if_matches(ckpt_path, key)
    if found is not None:
        model = EnsembleStepModel([0] * n, cfg.hidden_dim, cfg.num_layers)
        model.load_state_dict(found["state"])
        return model.to(device), found["diverged"]
    model, info = train_members(cfg, [data] * n, [seed] * n, [m["weights"] for m in members], cfg.train_rollout_steps,
                                desc="sweep", device=device)
    diverged = [bool(d) for d in info["diverged"]]
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    save_checkpoint(ckpt_path, {"unit_config": to_jsonable(key), "state": state, "diverged": diverged,
                                "loss_curve": info["loss_curve"]})
    return model, diverged


def sweep_unit(cfg, members: list[dict], ckpt_path, device) -> None:
    """A launcher unit: train (or find) the sweep ensemble into its checkpoint."""
    train_sweep(cfg, make_dataset(cfg, cfg.tuning_seed), members, ckpt_path, device)


def measure_members(cfg, model, data) -> dict:
    """Median norms at every horizon (n, H) and RMSEs (n,) of every member (index 0 = Flat)."""
    n = model.num_members
    log_a, log_s = model_log_norms(cfg, model, {i: data for i in range(n)}, list(range(n)), max(cfg.horizons))
    rmse1, rmse10 = model_rmse(model, {i: data for i in range(n)}, list(range(n)))
    cols = np.asarray(cfg.horizons) - 1
    def med(x):
        return np.median(np.exp(x[:, :, cols]), axis=1)  # (n, H)
    return {"norm_action": med(log_a), "norm_state": med(log_s), "rmse_1step": rmse1, "rmse_10step": rmse10}


def plan_members(cfg, model, data, device) -> dict:
    """Every member plans on the same tasks of the tuning seed (the seed repeated once per member: the
    tasks are drawn from its named streams) -> {"solved_open", "solved_closed", "error_over_d0_open",
    "error_over_d0_closed"}: (n, P) solved fractions and median error / d0."""
    n, P = model.num_members, len(cfg.planning_horizons)
    seeds, datasets = [cfg.tuning_seed] * n, {cfg.tuning_seed: data}
    out = {f"{k}_{mode}": np.full((n, P), np.nan) for k in ("solved", "error_over_d0") for mode in ("open", "closed")}
    for p, T in enumerate(cfg.planning_horizons):
        tasks = make_tasks(cfg, datasets, seeds, T, device)
        result, d0 = control(cfg, model, torch.float32, datasets, seeds, T, device, tasks), tasks.d0.cpu().numpy()
        for mode in ("open", "closed"):
            error = result[f"error_{mode}"]
            out[f"solved_{mode}"][:, p] = solved(cfg, error, d0).mean(axis=1)
            out[f"error_over_d0_{mode}"][:, p] = np.median(error / d0, axis=1)
    return out


def frontier_rows(cfg, members: list[dict], m: dict, diverged: list[bool]) -> list[dict]:
    """Per member: its measurements, the three norm checks and the accuracy relative to Flat (row 0)."""
    h = {T: i for i, T in enumerate(cfg.horizons)}
    flat = m["norm_action"][0]
    rows = []
    for i, member in enumerate(members):
        norms = m["norm_action"][i]
        row = {"family": member["family"], "lambda": member["lambda"], "diverged": diverged[i],
               **{k: v[i] for k, v in m.items()}, "rmse_1step_over_flat": m["rmse_1step"][i] / m["rmse_1step"][0]}
        checks = {}
        if 100 in h:
            row["norm_T100"] = norms[h[100]]
            checks["norm_T100_below_20"] = bool(norms[h[100]] < 20)
        if 200 in h:
            checks["flat_over_member_T200_at_least_20"] = bool(flat[h[200]] / norms[h[200]] >= 20)
        if 50 in h and 200 in h:
            row["growth_ratio"] = np.log(norms[h[200]] / norms[h[50]]) / np.log(flat[h[200]] / flat[h[50]])
            checks["saturation_ratio_below_0.1"] = bool(row["growth_ratio"] < 0.1)
        row["checks"] = checks
        row["meets_rule"] = i > 0 and not diverged[i] and bool(checks) and all(checks.values())
        rows.append(row)
    return rows


def choose(rows: list[dict]) -> int | None:
    """Index of the member the rule picks (see RULE), or None when no member meets the norm criteria."""
    passing = [i for i, r in enumerate(rows) if r["meets_rule"]]
    return min(passing, key=lambda i: rows[i]["rmse_1step"]) if passing else None


@command(PROG)
def main(argv=None) -> int:
    cfg = parse(Exp1Config, argv, prog=PROG, redraws=False)
    staged = StagedOutputs(cfg.output_dir())
    # the tuning seed only, never a reported one; the output folder stays the one of the parsed config
    cfg = dataclasses.replace(cfg, seeds=[cfg.tuning_seed], out_dir=str(cfg.output_dir()))
    timer, device = Timer(), setup_torch(cfg)
    data = make_dataset(cfg, cfg.tuning_seed)
    members = sweep_members(cfg)
    ckpt_path = cfg.output_dir() / "checkpoints" / f"sweep_seed{cfg.tuning_seed}.pt"
    if cfg.launcher != "inline":  # one batched ensemble: one unit, then loaded here from its checkpoint
        launch(cfg, [Unit("frontier", sweep_unit, (cfg, members, ckpt_path, device))], ckpt_path.parent / "launcher")
    model, diverged = train_sweep(cfg, data, members, ckpt_path, device)
    rows = frontier_rows(cfg, members, {**measure_members(cfg, model, data), **plan_members(cfg, model, data, device)},
                         diverged)
    chosen = choose(rows)
    result = {"tuning_seed": cfg.tuning_seed, "lambda_hf": cfg.lambda_hf, "horizons": cfg.horizons,
              "planning_horizons": cfg.planning_horizons, "rule": RULE,
              "members": rows, "chosen": None if chosen is None else {k: rows[chosen][k] for k in ("family", "lambda")},
              "runtime_seconds": timer.seconds(), "config": dataclasses.asdict(cfg)}
    write_json(staged.results / "sweep.json", result)
    plot_tradeoff(to_jsonable(rows), chosen, staged.plots / "exp1_tradeoff.png")
    for r in rows:
        print(f"{r['family']:<9} {r['lambda']:<6g} ||ds/da|| per T {np.array2string(r['norm_action'], precision=3)}  "
              f"growth ratio {r.get('growth_ratio', float('nan')):.3f}  rmse1 {r['rmse_1step']:.4g} "
              f"({r['rmse_1step_over_flat']:.2f}x Flat)  meets rule: {r['meets_rule']}  true system, closed loop "
              f"solved per T {np.array2string(r['solved_closed'], precision=2)}")
    print(f"chosen: {result['chosen']} ({RULE})\nruntime_seconds: {timer.seconds():.1f}")
    for path in staged.publish():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
