"""Tuning-seed sweep of the HF loss: coverage and fit error vs hf_noise_sigma (both HF forms) and
lambda_hf (consistency form). Only cfg.tuning_seed is used; the reported seeds never are.

    python sweep.py     # writes results/sweep.json and plots/exp2_sweep.png
                        # (run_experiment.py --plots-only redraws that figure too)
"""

from __future__ import annotations

import sys

import torch

from common import viz_utils
from common.cli import command
from common.cli_parse import parse
from common.config import Exp2Config
from common.runs import StagedOutputs, Timer, setup_torch, write_json
from exp2_funnel_heatmap.energy_functions import Landscape, energy, energy_grad, grid
from exp2_funnel_heatmap.training import ModelSpec, helm_spec, train_or_load
from exp2_funnel_heatmap.visualize_heatmap import basin_coverage, spurious_minima


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


def plot_sweep(sweep: dict, path):
    """Coverage (left) and fit error to E* (right) vs sigma, per HF form and lambda."""
    fig, axes = viz_utils.new_figure(ncols=2, width=5.2, height=4.0)
    ax_cov, ax_fit = axes[0]
    rows = sweep["rows"]
    flat = [r for r in rows if r["form"] == "flat"][0]
    series = [("mollified_target", None, "helm", "HELM mollified_target", "-")]
    lams = sorted({r["lambda_hf"] for r in rows if r["form"] == "consistency"})
    series += [("consistency", lam, "helm_consistency", f"HELM consistency, lambda={lam:g}", ls)
               for lam, ls in zip(lams, ["--", "-.", ":", (0, (1, 3))] * 3)]
    for form, lam, color_name, label, ls in series:
        sel = sorted((r for r in rows if r["form"] == form and (lam is None or r["lambda_hf"] == lam)),
                     key=lambda r: r["sigma"])
        sig = [r["sigma"] for r in sel]
        cov = [100 * r["coverage"] if r["coverage"] is not None else float("nan") for r in sel]
        ax_cov.plot(sig, cov, marker="o", ms=3.5, ls=ls, color=viz_utils.color(color_name), label=label)
        ax_fit.plot(sig, [r["rmse_to_true_over_A"] for r in sel], marker="o", ms=3.5, ls=ls,
                    color=viz_utils.color(color_name), label=label)
    ex = sweep["exact_mollified"]
    ax_cov.plot([e["sigma"] for e in ex], [100 * e["coverage"] for e in ex], marker="s", ms=3.5,
                color=viz_utils.color("mollified"), label="exact mollified E*_sigma")
    for ax, value, unit in ((ax_cov, 100 * (flat["coverage"] or float("nan")), "coverage"),
                            (ax_fit, flat["rmse_to_true_over_A"], "fit")):
        ax.axhline(value, color=viz_utils.color("flat"), lw=1, label="Flat")
    ax_cov.axhline(100 * sweep["true_coverage"], color=viz_utils.color("true"), lw=1, ls=":", label="true E*")
    ax_fit.axhline(1.0, color="grey", lw=0.8, ls=":", label="RMSE = A")
    for ax in (ax_cov, ax_fit):
        ax.set_xscale("log"), ax.set_xlabel("hf_noise_sigma")
    ax_cov.set_ylabel("basin coverage (% of starts)"), ax_fit.set_ylabel("RMSE to E* / A")
    ax_fit.set_yscale("log")
    ax_cov.set_title(f"coverage (tuning seed {sweep['tuning_seed']})"), ax_fit.set_title("fit error to E*")
    ax_cov.legend(fontsize=6.5), ax_fit.legend(fontsize=6.5)
    return viz_utils.save(fig, path)


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
