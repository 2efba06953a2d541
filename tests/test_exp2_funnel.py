"""Experiment 2 (funnel heatmap): energies, losses, basin analysis, and smoke runs."""

import json
import math
import subprocess
import sys

import pytest
import torch

from common.config import Exp2Config
from exp2_funnel_heatmap import run_experiment, sweep
from exp2_funnel_heatmap.analyze_heatmap import basin_coverage, criteria, criteria_spread, local_minima, spurious_minima
from exp2_funnel_heatmap.energy_functions import (Landscape, energy, energy_grad, global_minimum, grid,
                                                  in_global_basin)
from exp2_funnel_heatmap.losses import consistency_loss, mollified_target_loss
from exp2_funnel_heatmap.training import ModelSpec, build_ensemble, train_models, train_or_load

P = Landscape(L=0.3, k=1.0, A=0.012, w=45.0)
PLOTS = ["exp2_true_energy.png", "exp2_flat_energy.png", "exp2_helm_energy.png", "exp2_flat_basin.png",
         "exp2_helm_basin.png"]


@pytest.mark.parametrize("sigma", [0.0, 0.03, 0.05])
def test_analytic_gradient_matches_autograd(sigma):
    x = (torch.rand(256, 2, dtype=torch.float64) * 2 - 1) * P.L
    x.requires_grad_(True)
    (auto,) = torch.autograd.grad(energy(x, P, sigma).sum(), x)
    assert torch.allclose(energy_grad(x, P, sigma), auto, atol=1e-12)


@pytest.mark.parametrize("sigma", [0.02, 0.05, 0.1])
def test_mollified_energy_matches_monte_carlo_average(sigma):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(16, 2, generator=g, dtype=torch.float64) * 2 - 1) * P.L
    delta = torch.randn(200_000, 1, 2, generator=g, dtype=torch.float64) * sigma
    mc = energy(x + delta, P).mean(0)
    assert torch.allclose(mc, energy(x, P, sigma), atol=2e-4)  # MC std ~ A / sqrt(2e5) * few
    assert not torch.allclose(energy(x, P), energy(x, P, sigma), atol=2e-4)  # smoothing changes E


def test_global_minimum_is_where_the_code_says():
    _, points = grid(P, 601)  # odd: contains x* = 0
    E = energy(points, P)
    flat_idx = int(E.argmin())
    assert torch.allclose(points.reshape(-1, 2)[flat_idx], global_minimum(P), atol=1e-7)
    assert float(energy(global_minimum(P), P)) == 0.0
    assert in_global_basin(global_minimum(P), P)
    assert not in_global_basin(torch.tensor([2 * math.pi / P.w, 0.0]), P)  # the next ripple's minimum


def test_local_minima_counts_with_and_without_grid_ties():
    for n in (200, 201):  # even grids have two tied points around 0: counted once
        _, points = grid(P, n)
        E = energy(points, P)
        assert int(local_minima(E).sum()) == 25  # 5 ripple minima per coordinate on [-0.3, 0.3]
        assert int(spurious_minima(E, points, P)) == 24
        assert int(spurious_minima(energy(points, P, 0.05), points, P)) == 0


def test_gd_on_convex_quadratic_reaches_full_coverage():
    cfg = Exp2Config(basin_grid_resolution=20)
    def convex(x):
        return P.k * x  # gradient of 0.5 k ||x||^2, no ripples
    assert float(basin_coverage(convex, P, cfg, 1)["coverage"][0]) == 1.0
    rugged = float(basin_coverage(lambda x: energy_grad(x, P), P, cfg, 1)["coverage"][0])
    assert rugged < 0.15  # plain descent on E* is trapped by the ripples


def test_hf_consistency_loss_zero_for_constant_positive_for_ripples():
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(1, 512, 2, generator=g) * 2 - 1) * P.L
    delta = torch.randn(1, 512, 2, generator=g) * 0.05
    const = torch.full((1, 512), 0.3)
    assert float(consistency_loss(const, const)) == 0.0
    assert float(consistency_loss(energy(x, P), energy(x + delta, P))) > 1e-5
    # the constant model of the ensemble (zero output weights) has zero consistency loss too
    model = build_ensemble([ModelSpec("c", 0, "consistency", 0.05, 1.0)], Exp2Config(hidden_dim=16))
    with torch.no_grad():
        model.weights[-1].zero_()
        assert float(consistency_loss(model(x), model(x + delta))) == 0.0


def test_mollified_target_loss_prefers_the_mollified_energy():
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(1, 20000, 2, generator=g, dtype=torch.float64) * 2 - 1) * P.L
    delta = torch.randn(1, 20000, 1, 2, generator=g, dtype=torch.float64) * 0.05
    loss_moll = mollified_target_loss(energy(x, P, 0.05), x, delta, P)
    loss_true = mollified_target_loss(energy(x, P), x, delta, P)
    assert float(loss_moll) < 0.8 * float(loss_true)


def test_more_target_draws_only_lower_the_noise_around_the_mollified_energy():
    """The loss at E*_sigma itself is the target estimator's variance: it falls like 1/K."""
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(1, 20000, 2, generator=g, dtype=torch.float64) * 2 - 1) * P.L
    losses = {K: float(mollified_target_loss(energy(x, P, 0.05), x,
                                             torch.randn(1, 20000, K, 2, generator=g, dtype=torch.float64) * 0.05, P))
              for K in (1, 4, 16)}
    assert 3.0 < losses[1] / losses[4] < 5.0 and 3.0 < losses[4] / losses[16] < 5.0


def test_batched_training_equals_training_alone():
    cfg = Exp2Config(hidden_dim=16, train_steps=20, batch_size=32, quiet=True)
    helm = ModelSpec("helm", 3, "mollified_target", 0.05)
    together, _, _ = train_models([ModelSpec("flat", 5, "flat"), helm, ModelSpec("c", 4, "consistency", 0.05, 1.0)],
                                  cfg)
    alone, _, _ = train_models([helm], cfg)
    for a, b in zip(together.parameters(), alone.parameters()):
        assert torch.allclose(a[1], b[0], atol=1e-5)


def test_resume_with_a_missing_checkpoint_reproduces_the_batch_bit_for_bit(tmp_path):
    """Batched matmuls round differently for another batch size: a rerun must not train the missing model alone."""
    cfg = Exp2Config(hidden_dim=16, train_steps=20, batch_size=32, quiet=True)
    specs = [ModelSpec("flat", 5, "flat"), ModelSpec("helm", 3, "mollified_target", 0.05),
             ModelSpec("c", 4, "consistency", 0.05, 1.0)]
    first, first_loss, first_curves = train_or_load(specs, cfg, torch.device("cpu"), tmp_path)
    (tmp_path / "helm_seed3.pt").unlink()
    resumed, resumed_loss, resumed_curves = train_or_load(specs, cfg, torch.device("cpu"), tmp_path)
    assert torch.equal(first_curves, resumed_curves) and first_curves.shape == (len(specs), cfg.train_steps)
    assert (tmp_path / "helm_seed3.pt").exists()
    assert torch.equal(first_loss, resumed_loss)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), resumed.parameters()))


def _metrics(path):
    return json.loads((path / "results" / "metrics.json").read_text())


@pytest.mark.slow
def test_quick_run_writes_plots_and_metrics_is_deterministic_and_resumes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_experiment.main(["--quick", "--quiet", "--out-dir", str(a)]) == 0
    for name in PLOTS:
        assert (a / "plots" / name).stat().st_size > 10_000
    m = _metrics(a)
    assert {"experiment", "config", "seeds", "runtime_seconds", "environment", "criteria"} <= set(m)
    assert set(m["coverage"]) == {"true", "mollified", "flat", "helm", "helm_consistency"}
    assert len(m["criteria"]) == 7 and len(m["criteria_per_seed"]) == 7
    assert all(c["measured"] is not None for c in m["criteria"])
    assert run_experiment.main(["--quick", "--quiet", "--out-dir", str(b)]) == 0  # fresh: retrains
    assert run_experiment.main(["--quick", "--quiet", "--out-dir", str(a)]) == 0  # resumes from checkpoints
    for other in (_metrics(b), _metrics(a)):
        for key in ("coverage", "spurious_minima", "fit_error"):
            assert other[key] == m[key]


@pytest.mark.slow
def test_quick_sweep_runs(tmp_path):
    assert sweep.main(["--quick", "--quiet", "--out-dir", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "results" / "sweep.json").read_text())
    assert {r["form"] for r in data["rows"]} == {"flat", "mollified_target", "consistency"}
    assert (tmp_path / "plots" / "exp2_sweep.png").exists()


@pytest.mark.slow
def test_command_line_quick_run(tmp_path):
    script = run_experiment.__file__
    proc = subprocess.run([sys.executable, script, "--quick", "--quiet", "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HELM basin coverage" in proc.stdout
    json.loads((tmp_path / "results" / "metrics.json").read_text())
    assert all((tmp_path / "plots" / n).exists() for n in PLOTS)


@pytest.mark.parametrize("flags", [["--hf-noise-sigma", "0"], ["--hf-noise-sigma", "-0.1"],
                                   ["--basin-grid-resolution", "0"], ["--grid-resolution", "-3"],
                                   ["--gd-steps-basin", "0"], ["--train-steps", "0"], ["--hf-form", "bogus"]])
@pytest.mark.slow
def test_bad_input_exits_2_with_one_line(tmp_path, flags):
    proc = subprocess.run([sys.executable, run_experiment.__file__, *flags, "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing written


def test_criteria_on_each_seed_alone_and_their_spread():
    """Seed 8 fails the coverage rows (70 %, 30 points from the exact funnel) and seed 9 the minima row."""
    def stats(values):
        return {"mean": sum(values) / len(values), "per_seed": values}
    m = {"coverage": {"helm": stats([1.0, 0.7, 0.95]), "flat": stats([0.05, 0.05, 0.06]),
                      "mollified": stats([1.0, 1.0, 1.0])},
         "spurious_minima": {"helm": stats([0, 1, 3]), "flat": stats([24, 24, 20])}, "num_basin_starts": 2500}
    assert [c.passed for c in criteria(m, seed_index=0)] == [True] * 7
    one = {c.name: c for c in criteria(m, seed_index=1)}
    assert one["HELM basin coverage (worst seed)"].measured == pytest.approx(70.0)
    assert not one["|HELM - exact mollified| coverage"].passed
    spread = {row["name"]: row for row in criteria_spread(m, [7, 8, 9])}
    assert spread["HELM basin coverage (worst seed)"]["seeds_passing"] == 2
    assert spread["HELM basin coverage (worst seed)"]["failing_seeds"] == [8]
    assert spread["HELM basin coverage (worst seed)"]["worst"] == pytest.approx(70.0)
    assert spread["HELM spurious minima (worst seed)"]["failing_seeds"] == [9]
    assert spread["HELM spurious minima (worst seed)"]["worst"] == 3
    assert spread["Flat spurious minima (fewest, over seeds)"]["worst"] == 20
    pooled = {c.name: c for c in criteria(m)}
    assert pooled["HELM spurious minima (worst seed)"].measured == 3
    assert not pooled["HELM basin coverage (worst seed)"].passed
