"""Tuning-seed sweep of the HF loss: coverage and fit error vs hf_noise_sigma (both HF forms) and
lambda_hf (consistency form). Only cfg.tuning_seed is used; the reported seeds never are.

    python sweep.py     # writes results/sweep.json and plots/exp2_sweep.png
                        # (run_experiment.py --plots-only redraws that figure too)
"""

from __future__ import annotations

import sys

import torch

from common.cli import command
from common.cli_parse import parse
from common.config import Exp2Config
from common.runs import StagedOutputs, Timer, setup_torch, write_json
from exp2_funnel_heatmap.energy_functions import Landscape, energy, energy_grad, grid
from exp2_funnel_heatmap.training import ModelSpec, helm_spec, train_or_load
from exp2_funnel_heatmap.analyze_heatmap import basin_coverage, spurious_minima
from exp2_funnel_heatmap.plots import plot_sweep


PROG = "exp2_funnel_heatmap/sweep.py"


def sweep_specs(cfg) -> list[ModelSpec]:
    seed = cfg.tuning_seed
    specs = [ModelSpec("sweep_flat", seed, "flat")]
    for sigma in cfg.sweep_sigmas:
        specs.append(helm_spec(cfg, f"sweep_mollified_target_s{sigma:g}", seed, "mollified_target", sigma))
        for lam in cfg.sweep_lambdas:
            specs.append(helm_spec(cfg, f"sweep_consistency_s{sigma:g}_l{lam:g}", seed, "consistency", sigma, lam))
    return specs


def run_sweep(cfg, device) -> dict:
    p = Landscape.from_config(cfg)
    specs = sweep_specs(cfg)
    model, final_loss, _ = train_or_load(specs, cfg, device, cfg.output_dir() / "checkpoints" / "sweep", "sweep")
    learned = basin_coverage(model.grad, p, cfg, len(specs), device)
    points = grid(p, cfg.grid_resolution)[1]
    with torch.no_grad():
        E = model(points.reshape(1, -1, 2).expand(len(specs), -1, -1).contiguous().to(device)).cpu()
    E = E.reshape(len(specs), *points.shape[:2])
    spurious = spurious_minima(E, points, p)
    rows = []
    for m, s in enumerate(specs):
        E_moll = energy(points, p, s.sigma if s.form != "flat" else 0.0)
        rows.append({"form": s.form, "sigma": s.sigma, "lambda_hf": s.lam,
                     "coverage": float(learned["coverage"][m]) if torch.isfinite(final_loss[m]) else None,
                     "spurious_minima": int(spurious[m]),
                     "rmse_to_true_over_A": float(((E[m] - energy(points, p)) ** 2).mean().sqrt() / p.A),
                     "rmse_to_own_mollified_over_A": float(((E[m] - E_moll) ** 2).mean().sqrt() / p.A),
                     "final_train_loss": float(final_loss[m])})
    sig = cfg.sweep_sigmas
    exact = basin_coverage(lambda z: torch.stack([energy_grad(z[i], p, s) for i, s in enumerate(sig)]), p, cfg,
                           len(sig))
    true = basin_coverage(lambda z: energy_grad(z, p), p, cfg, 1)
    return {"tuning_seed": cfg.tuning_seed, "rows": rows,
            "exact_mollified": [{"sigma": s, "coverage": float(c)} for s, c in zip(sig, exact["coverage"])],
            "true_coverage": float(true["coverage"][0])}


@command(PROG)
def main(argv=None) -> int:
    cfg = parse(Exp2Config, argv, prog=PROG, redraws=False)
    device = setup_torch(cfg)
    timer, staged = Timer(), StagedOutputs(cfg.output_dir())
    sweep = run_sweep(cfg, device)
    sweep["runtime_seconds"] = timer.seconds()
    sweep["config"] = {k: getattr(cfg, k) for k in ("sweep_sigmas", "sweep_lambdas", "train_steps", "hidden_dim",
                                                   "num_layers", "tuning_seed", "quick")}
    write_json(staged.results / "sweep.json", sweep)
    plot_sweep(sweep, staged.plots / "exp2_sweep.png")
    print(f"sweep: {len(sweep['rows'])} models in {sweep['runtime_seconds']:.1f} s")
    for r in sweep["rows"]:
        cov = "n/a" if r["coverage"] is None else f"{100 * r['coverage']:.1f}"
        print(f"{r['form']:<17} sigma={r['sigma']:<6g} lambda={r['lambda_hf']:<5g} coverage={cov:>6} %  "
              f"spurious={r['spurious_minima']:<3} rmse/A={r['rmse_to_true_over_A']:.3f}")
    for path in staged.publish():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
