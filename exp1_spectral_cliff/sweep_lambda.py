"""lambda_spectral sweep on the TUNING seed: the norm/accuracy trade-off that sets the default.

    python sweep_lambda.py    # writes results/sweep.json and plots/exp1_tradeoff.png
                              # (run_experiment.py --plots-only redraws that figure too)

One ensemble, trained together: a Flat reference plus the HELM variant (spectral hinge + HF
invariance at cfg.lambda_hf) at every lambda in cfg.lambda_sweep; all members share the tuning
seed's data, initialization and minibatches, so they differ only in lambda_spectral. Rule for the
default (fixed before looking): the smallest lambda whose tuning-seed model meets the three norm
criteria (||ds_T/da||_F(T=100) < 20, Flat/HELM at T=200 >= 20, log-growth 50->200 < 10 % of Flat's).
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np

from common import viz_utils
from common.config import Exp1Config, parse
from common.runs import (StagedOutputs, Timer, load_checkpoint_if_matches, save_checkpoint, setup_torch, to_jsonable,
                         write_json)
from exp1_spectral_cliff.dataset import make_dataset
from exp1_spectral_cliff.models import EnsembleStepModel
from exp1_spectral_cliff.quality import model_rmse
from exp1_spectral_cliff.spectrum import model_log_norms
from exp1_spectral_cliff.train_helm import train_members, unit_config


def train_sweep(cfg, data, ckpt_path, device):
    """Train (or resume) the sweep ensemble: member 0 = Flat, member 1+i = HELM at lambda_sweep[i]."""
    seed, n = cfg.tuning_seed, len(cfg.lambda_sweep) + 1
    key = {**unit_config(cfg, "helm", seed, cfg.train_rollout_steps), "lambda_sweep": cfg.lambda_sweep}
    found = load_checkpoint_if_matches(ckpt_path, key)
    if found is not None:
        model = EnsembleStepModel([0] * n, cfg.hidden_dim, cfg.num_layers)
        model.load_state_dict(found["state"])
        return model.to(device), found["diverged"]
    model, info = train_members(cfg, [data] * n, [seed] * n, [0.0] + list(cfg.lambda_sweep),
                                [0.0] + [cfg.lambda_hf] * (n - 1), cfg.train_rollout_steps, desc="sweep", device=device)
    diverged = [bool(d) for d in info["diverged"]]
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    save_checkpoint(ckpt_path, {"unit_config": to_jsonable(key), "state": state, "diverged": diverged,
                                "loss_curve": info["loss_curve"]})
    return model, diverged


def measure(cfg, model, data) -> dict:
    """Median norms at every horizon and RMSEs of every member (index 0 = Flat)."""
    n = model.num_members
    log_a, log_s = model_log_norms(cfg, model, {i: data for i in range(n)}, list(range(n)), max(cfg.horizons))
    rmse1, rmse10 = model_rmse(model, {i: data for i in range(n)}, list(range(n)))
    cols = np.asarray(cfg.horizons) - 1
    med = lambda x: np.median(np.exp(x[:, :, cols]), axis=1)  # (n, H)
    return {"norm_action": med(log_a), "norm_state": med(log_s), "rmse_1step": rmse1, "rmse_10step": rmse10}


def choose_lambda(cfg, m: dict) -> tuple[float | None, list[dict]]:
    """Apply the rule to every HELM member; returns (chosen lambda or None, per-lambda checks)."""
    h = {T: i for i, T in enumerate(cfg.horizons)}
    flat = m["norm_action"][0]
    checks = []
    for i, lam in enumerate(cfg.lambda_sweep, start=1):
        row = m["norm_action"][i]
        ok = {}
        if 100 in h:
            ok["norm_T100_below_20"] = bool(row[h[100]] < 20)
        if 200 in h:
            ok["flat_over_helm_T200_at_least_20"] = bool(flat[h[200]] / row[h[200]] >= 20)
        if 50 in h and 200 in h:
            ratio = np.log(row[h[200]] / row[h[50]]) / np.log(flat[h[200]] / flat[h[50]])
            ok["saturation_ratio_below_0.1"] = bool(ratio < 0.1)
        checks.append({"lambda": lam, **ok, "all": bool(ok) and all(ok.values())})
    passing = [c["lambda"] for c in checks if c["all"]]
    return (min(passing) if passing else None), checks


def plot_tradeoff(cfg, m: dict, chosen: float | None, path):
    """||J||(T=100) (both Jacobians) and 1-step / 10-step RMSE vs lambda, Flat as a reference line."""
    lams = np.asarray(cfg.lambda_sweep, dtype=float)
    T = 100 if 100 in cfg.horizons else max(cfg.horizons)
    h = cfg.horizons.index(T)
    fig, axes = viz_utils.new_figure(ncols=2, width=5.0, height=4.0)
    ax = axes[0, 0]
    for key, ls, label in (("norm_action", "-", r"$\|\partial s_T/\partial a\|_F$"),
                           ("norm_state", "--", r"$\|\partial s_T/\partial s_0\|_F$")):
        ax.plot(lams, m[key][1:, h], marker="o", ls=ls, color=viz_utils.color("helm"), label=f"HELM {label}")
        ax.axhline(m[key][0, h], ls=ls, color=viz_utils.color("flat"), lw=1, label=f"Flat {label}")
    ax.axhline(20, color="grey", ls=":", lw=1, label="target 20")
    ax.set_yscale("log")
    ax.set_title(f"rollout Jacobian norm at T={T} (median, tuning seed)")
    ax = axes[0, 1]
    for key, ls in (("rmse_1step", "-"), ("rmse_10step", "--")):
        ax.plot(lams, m[key][1:], marker="o", ls=ls, color=viz_utils.color("helm"), label=f"HELM {key}")
        ax.axhline(m[key][0], ls=ls, color=viz_utils.color("flat"), lw=1, label=f"Flat {key}")
    ax.set_yscale("log")
    ax.set_title("test RMSE (normalized units)")
    linthresh = min([l for l in lams if l > 0], default=1e-3)
    for ax in axes[0]:
        ax.set_xscale("symlog", linthresh=linthresh)
        ax.set_xlim(-0.2 * linthresh, 1.5 * lams.max())
        if chosen is not None:
            ax.axvline(chosen, color="grey", lw=1, ls="-.", label=f"default {chosen:g}")
        ax.set_xlabel("lambda_spectral (HELM, lambda_hf = %g)" % cfg.lambda_hf)
        ax.legend(fontsize=7)
    return viz_utils.save(fig, path)


def main(argv=None) -> int:
    cfg = parse(Exp1Config, argv, prog="exp1_spectral_cliff/sweep_lambda.py")
    staged = StagedOutputs(cfg.output_dir())
    # the tuning seed only, never a reported one; the output folder stays the one of the parsed config
    cfg = dataclasses.replace(cfg, seeds=[cfg.tuning_seed], out_dir=str(cfg.output_dir()))
    timer, device = Timer(), setup_torch(cfg)
    data = make_dataset(cfg, cfg.tuning_seed)
    model, diverged = train_sweep(cfg, data, cfg.output_dir() / "checkpoints" / f"sweep_seed{cfg.tuning_seed}.pt",
                                  device)
    m = measure(cfg, model, data)
    chosen, checks = choose_lambda(cfg, m)
    result = {"tuning_seed": cfg.tuning_seed, "lambda_hf": cfg.lambda_hf, "horizons": cfg.horizons,
              "lambdas": cfg.lambda_sweep, "flat": {k: v[0] for k, v in m.items()},
              "helm": {k: v[1:] for k, v in m.items()}, "diverged": {"flat": diverged[0], "helm": diverged[1:]},
              "checks": checks, "chosen_lambda_spectral": chosen, "runtime_seconds": timer.seconds(),
              "config": dataclasses.asdict(cfg)}
    write_json(staged.results / "sweep.json", result)
    plot_tradeoff(cfg, m, chosen, staged.plots / "exp1_tradeoff.png")
    for lam, c, a, r in zip(cfg.lambda_sweep, checks, m["norm_action"][1:], m["rmse_1step"][1:]):
        print(f"lambda {lam:<8g} ||ds/da||_F per T {np.array2string(a, precision=3)}  rmse1 {r:.4g}  meets rule: {c['all']}")
    print(f"flat            ||ds/da||_F per T {np.array2string(m['norm_action'][0], precision=3)}  rmse1 {m['rmse_1step'][0]:.4g}")
    print(f"chosen lambda_spectral: {chosen}\nruntime_seconds: {timer.seconds():.1f}")
    for path in staged.publish():
        print(f"wrote {path}")
    return 0


def plot_saved_sweep(saved: dict, plot_dir) -> None:
    """Redraw the trade-off figure from a saved sweep.json (used by run_experiment.py --plots-only)."""
    cfg = Exp1Config(**{k: v for k, v in saved["config"].items() if k in Exp1Config.__dataclass_fields__})
    plot_tradeoff(cfg, _as_arrays(saved), saved["chosen_lambda_spectral"], plot_dir / "exp1_tradeoff.png")


def _as_arrays(saved: dict) -> dict:
    """sweep.json -> the measure() layout (row 0 = Flat)."""
    return {k: np.concatenate([np.atleast_1d(np.asarray(saved["flat"][k], dtype=float)),
                               np.asarray(saved["helm"][k], dtype=float)]) if k.startswith("rmse")
            else np.vstack([np.asarray(saved["flat"][k], dtype=float)[None], np.asarray(saved["helm"][k], dtype=float)])
            for k in saved["flat"]}


if __name__ == "__main__":
    sys.exit(main())
