"""Basin analysis of every landscape, then the summary, the criteria and the tables (from the saved
arrays; the figures are `plots.py`'s).

Landscapes: `true` (E*), `mollified` (exact E*_sigma, the ideal HELM approximates), and the learned
models `flat`, `helm` and `helm_<other form>` (one per seed).
- Basin coverage: from each start of a `basin_grid_resolution`^2 grid, `gd_steps_basin` steps of
  plain gradient descent at `gd_lr_basin` on the landscape (clamped to the domain), then
  `polish_steps` of the same descent on the TRUE energy; success = the end point lies in the global
  basin of E*.
- Local minima on the `grid_resolution`^2 grid (8-neighbour, interior points, plateau ties broken by
  grid order); "spurious" = all of them except one in the global basin.
- Fit error: RMSE of each model to E* and to E*_sigma on the same grid.
"""

from __future__ import annotations

import numpy as np
import torch

from common.runs import criterion
from exp2_funnel_heatmap.energy_functions import Landscape, energy, energy_grad, grid, in_global_basin

NUM_PATHS = 8  # descent paths drawn on the basin maps
PATH_EVERY = 5  # keep every 5th point of a path


def descend(grad_fn, x0: torch.Tensor, steps: int, lr: float, L: float, path_idx: torch.Tensor):
    """Clamped gradient descent from x0 (M, N, 2); returns the end points (M, N, 2) and the paths
    of the starts `path_idx` (K,), (M, K, steps // PATH_EVERY + 1, 2)."""
    x, path = x0, [x0[:, path_idx]]
    for step in range(steps):
        x = (x - lr * grad_fn(x)).clamp(-L, L)
        if (step + 1) % PATH_EVERY == 0:
            path.append(x[:, path_idx])
    return x, torch.stack(path, 2)


def basin_coverage(grad_fn, p: Landscape, cfg, num_landscapes: int, device="cpu") -> dict:
    """Descent on the landscape(s) then polish on E*, from the start grid (shared by all M landscapes),
    on `device` (where grad_fn computes). Returns, on the CPU, success (M, nb, nb) bool, coverage (M,),
    and the drawn paths (landscape phase and polish)."""
    nb = cfg.basin_grid_resolution
    starts = grid(p, nb)[1].reshape(1, -1, 2).expand(num_landscapes, -1, -1).contiguous().to(device)
    path_idx = torch.linspace(0, nb * nb - 1, NUM_PATHS + 2)[1:-1].round().long().to(device)  # spread over the grid
    with torch.no_grad():
        x, path = descend(grad_fn, starts, cfg.gd_steps_basin, cfg.gd_lr_basin, p.L, path_idx)
        x, polish = descend(lambda z: energy_grad(z, p), x, cfg.polish_steps, cfg.gd_lr_basin, p.L, path_idx)
    success = in_global_basin(x, p) & torch.isfinite(x).all(-1)
    return {"success": success.reshape(-1, nb, nb).cpu(), "coverage": success.float().mean(1).cpu(),
            "path": path.cpu(), "polish_path": polish.cpu()}


def local_minima(E: torch.Tensor) -> torch.Tensor:
    """Bool mask (..., n, n) of interior grid points lower than all 8 neighbours (ties: the first
    point of a plateau in grid order wins, so a tie between two points counts once)."""
    c = E[..., 1:-1, 1:-1]
    n = E.shape[-1]
    mask = torch.ones_like(c, dtype=torch.bool)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di == dj == 0:
                continue
            nb = E[..., 1 + di:n - 1 + di, 1 + dj:n - 1 + dj]
            mask &= (c <= nb) if (di, dj) > (0, 0) else (c < nb)  # later neighbours may tie
    return torch.nn.functional.pad(mask, (1, 1, 1, 1)) & torch.isfinite(E)


def spurious_minima(E: torch.Tensor, points: torch.Tensor, p: Landscape) -> torch.Tensor:
    """Local minima of E (..., n, n) on the grid `points` (n, n, 2), minus one if any lies in the global basin."""
    mask = local_minima(E)
    total = mask.flatten(-2).sum(-1)
    in_basin = (mask & in_global_basin(points, p)).flatten(-2).any(-1)
    return total - in_basin.long()


def analyze(model, names: list[str], seeds: list[int], p: Landscape, cfg, device) -> dict:
    """All measurements as arrays. The model ensemble holds len(seeds) * len(names) models,
    seed-major. Returns a dict of numpy arrays (saved to the npz, read by `summarize` and the plots)."""
    S, V = len(seeds), len(names)
    axis, points = grid(p, cfg.grid_resolution)
    pts = points.reshape(1, -1, 2).to(device)
    with torch.no_grad():
        E_models = model(pts.expand(S * V, -1, -1).contiguous()).cpu().reshape(S, V, *points.shape[:2])
    E_true, E_moll = energy(points, p), energy(points, p, cfg.hf_noise_sigma)
    analytic = basin_coverage(lambda z: torch.stack([energy_grad(z[0], p), energy_grad(z[1], p, cfg.hf_noise_sigma)]),
                              p, cfg, 2)
    learned = basin_coverage(model.grad, p, cfg, S * V, device)
    def rmse(E, ref):
        return ((E - ref) ** 2).flatten(-2).mean(-1).sqrt()
    return {
        "seeds": np.array(seeds), "names": np.array(names), "sigma": np.array(cfg.hf_noise_sigma),
        "ripple_amplitude": np.array(p.A), "axis": axis.numpy(),
        "basin_axis": grid(p, cfg.basin_grid_resolution)[0].numpy(),
        "E_true": E_true.numpy(), "E_mollified": E_moll.numpy(), "E_models": E_models.numpy(),
        "minima_true": local_minima(E_true).numpy(), "minima_mollified": local_minima(E_moll).numpy(),
        "minima_models": local_minima(E_models).numpy(),
        "spurious_analytic": spurious_minima(torch.stack([E_true, E_moll]), points, p).numpy(),
        "spurious_models": spurious_minima(E_models, points, p).numpy(),
        "rmse_to_true": rmse(E_models, E_true).numpy(), "rmse_to_mollified": rmse(E_models, E_moll).numpy(),
        "success_analytic": analytic["success"].numpy(), "coverage_analytic": analytic["coverage"].numpy(),
        "success_models": learned["success"].reshape(S, V, *learned["success"].shape[1:]).numpy(),
        "coverage_models": learned["coverage"].reshape(S, V).numpy(),
        "path_models": learned["path"].reshape(S, V, *learned["path"].shape[1:]).numpy(),
        "polish_models": learned["polish_path"].reshape(S, V, *learned["polish_path"].shape[1:]).numpy(),
        "path_analytic": analytic["path"].numpy(), "polish_analytic": analytic["polish_path"].numpy(),
    }


def _mean_std(values) -> dict:
    values = np.asarray(values, dtype=float)
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "per_seed": values.tolist()}


def summarize(a: dict, final_loss: np.ndarray) -> dict:
    """metrics.json's measurements from the arrays: per landscape coverage (fraction of starts) and
    spurious minima (mean, std, per seed), per model fit RMSE (absolute and in units of A)."""
    S = len(a["seeds"])
    names, A = list(a["names"]), float(a["ripple_amplitude"])
    cov, spur = {}, {}
    for j, name in enumerate(("true", "mollified")):  # seed-independent: repeated per seed
        cov[name] = _mean_std([a["coverage_analytic"][j]] * S)
        spur[name] = _mean_std([a["spurious_analytic"][j]] * S)
    fit, diverged = {}, {}
    for i, name in enumerate(names):
        bad = ~np.isfinite(final_loss[:, i])
        diverged[name] = [int(s) for s, b in zip(a["seeds"], bad) if b]
        cov[name] = _mean_std(np.where(bad, np.nan, a["coverage_models"][:, i]))
        spur[name] = _mean_std(np.where(bad, np.nan, a["spurious_models"][:, i]))
        fit[name] = {"rmse_to_true": _mean_std(a["rmse_to_true"][:, i]),
                     "rmse_to_mollified": _mean_std(a["rmse_to_mollified"][:, i]),
                     "rmse_to_true_over_A": _mean_std(a["rmse_to_true"][:, i] / A),
                     "rmse_to_mollified_over_A": _mean_std(a["rmse_to_mollified"][:, i] / A),
                     "final_train_loss": _mean_std(final_loss[:, i])}
    return {"coverage": cov, "spurious_minima": spur, "fit_error": fit, "diverged_seeds": diverged,
            "num_basin_starts": int(a["success_analytic"][0].size)}


# ----------------------------------------------------------------------------------------------
# criteria and tables (from metrics.json's measurements)


def criteria(m: dict, seed_index: int | None = None) -> list:
    """The criteria over all seeds (means, worst seed), or on one seed alone (`seed_index`)."""
    def per_seed(group: dict, name: str) -> list:
        values = group[name]["per_seed"]
        return values if seed_index is None else [values[seed_index]]

    def mean(name: str):
        values = [v for v in per_seed(m["coverage"], name) if v is not None and np.isfinite(v)]
        return float(np.mean(values)) if values else float("nan")

    helm, flat, moll = mean("helm"), mean("flat"), mean("mollified")
    floor = 1.0 / m["num_basin_starts"]  # a 0 % Flat counts as one start, so the ratio stays finite
    spur_helm, spur_flat = per_seed(m["spurious_minima"], "helm"), per_seed(m["spurious_minima"], "flat")
    return [
        criterion("HELM basin coverage (mean over seeds)", "> 60 %", 100 * helm, lambda v: v > 60),
        criterion("Flat basin coverage (mean over seeds)", "<= 20 %", 100 * flat, lambda v: v <= 20),
        criterion("HELM / Flat coverage", ">= 4x", helm / max(flat, floor), lambda v: v >= 4),
        criterion("HELM spurious minima (worst seed)", "<= 2", max(spur_helm), lambda v: v <= 2),
        criterion("Flat spurious minima (fewest, over seeds)", ">= 8", min(spur_flat), lambda v: v >= 8),
        criterion("|HELM - exact mollified| coverage", "<= 10 points", 100 * abs(helm - moll), lambda v: v <= 10),
        criterion("HELM basin coverage (worst seed)", ">= 90 %", 100 * min(per_seed(m["coverage"], "helm")),
                  lambda v: v >= 90),
    ]


def criteria_spread(m: dict, seeds: list[int]) -> list[dict]:
    """Each criterion evaluated on every seed alone: median and worst measurement, seeds passing
    ("worst" is the lowest value for a ">" target, the highest for a "<" one)."""
    per_seed = [criteria(m, i) for i in range(len(seeds))]
    spread = []
    for j, row in enumerate(per_seed[0]):
        measured = np.array([np.nan if rows[j].measured is None else rows[j].measured for rows in per_seed])
        finite = measured[np.isfinite(measured)]  # a diverged model has no measurement
        worst = (finite.min() if row.target.startswith(">") else finite.max()) if finite.size else None
        spread.append({"name": row.name, "target": row.target,
                       "median": float(np.median(finite)) if finite.size else None,
                       "worst": None if worst is None else float(worst),
                       "seeds_passing": sum(rows[j].passed for rows in per_seed), "seeds": len(seeds),
                       "failing_seeds": [s for s, rows in zip(seeds, per_seed) if not rows[j].passed],
                       "per_seed": measured.tolist()})
    return spread


def format_tables(m: dict) -> str:
    """The tables a run prints: coverage, spurious minima and fit error per landscape, then each
    criterion on each seed alone (`m["criteria_per_seed"]`)."""
    lines = [f"\n{'landscape':<28}{'coverage %':>20}{'spurious minima':>18}{'RMSE to E* / A':>16}"]
    for name, c in m["coverage"].items():
        fit = m["fit_error"].get(name)
        rmse = f"{fit['rmse_to_true_over_A']['mean']:.3f}" if fit else "-"
        s = m["spurious_minima"][name]
        lines.append(f"{name:<28}{100 * c['mean']:>12.1f} +- {100 * c['std']:<4.1f}"
                     f"{s['mean']:>12.1f} +- {s['std']:<4.1f}{rmse:>12}")
    spread = m["criteria_per_seed"]
    lines += [f"\neach criterion on each seed alone ({spread[0]['seeds']} seeds)",
              f"{'criterion':<44}{'target':>14}{'median':>10}{'worst':>10}{'seeds passing':>15}"]
    def show(v):
        return "n/a" if v is None else f"{v:.4g}"
    lines += [f"{row['name']:<44}{row['target']:>14}{show(row['median']):>10}{show(row['worst']):>10}"
              f"{row['seeds_passing']:>9} / {row['seeds']}" for row in spread]
    return "\n".join(lines)
