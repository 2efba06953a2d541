"""Experiment 1: the true system (Lyapunov exponent, Jacobian, RK4 order), the penalties, the
ensemble training, and smoke runs (in-process, resume, plots-only, CLI, divergence, per-horizon)."""

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from common.config import Exp1Config
from common.jacobian_utils import batch_jacobian, lyapunov_exponents
from common.runs import torch_generator
from exp1_spectral_cliff import run_experiment, training
from exp1_spectral_cliff.dataset import LorenzSystem, integrate, make_dataset, random_initial_states, stacked_true_step
from exp1_spectral_cliff.evaluation import control, floors
from exp1_spectral_cliff.planner import plan_actions
from exp1_spectral_cliff.losses import spectral_hinge, state_tangents
from exp1_spectral_cliff.models import EnsembleStepModel
from exp1_spectral_cliff.training import train_members

REPO = Path(__file__).resolve().parent.parent
ZERO = torch.zeros(3, dtype=torch.float64)
TINY = ["--quick", "--quiet", "--num-train-trajectories", "32", "--train-steps", "20", "--num-eval-states", "4",
        "--horizons", "5", "20", "50", "100", "200"]


def on_attractor(n, seed=0):
    return integrate(random_initial_states(n, torch.Generator().manual_seed(seed)), ZERO, 0.01, 2000)


@pytest.mark.slow
def test_uncontrolled_lorenz_largest_lyapunov_exponent():
    system = LorenzSystem(dt=0.01, substeps=5, forcing=ZERO)
    exps = lyapunov_exponents(lambda s: system.step(s, torch.zeros_like(s)), on_attractor(8), num_steps=1000,
                              step_time=0.05)  # 50 time units per state
    assert exps[:, 0].mean().item() == pytest.approx(0.906, abs=0.05)


@pytest.mark.slow
def test_true_step_jacobian_matches_finite_differences():
    data = make_dataset(Exp1Config(num_train_trajectories=8, num_test_trajectories=4, trajectory_steps=10,
                                   burn_in_time=5.0), seed=0)
    s, a = data.test_states[:, 3].double(), (2 * torch.rand(4, 3, dtype=torch.float64) - 1)
    J_s, J_a = batch_jacobian(data.true_step, s, a, argnums=(0, 1))
    eps = 1e-6
    for J, wrt in ((J_s, 0), (J_a, 1)):
        for i in range(3):
            e = torch.zeros(3, dtype=torch.float64)
            e[i] = eps
            args_p, args_m = [s, a], [s, a]
            args_p[wrt], args_m[wrt] = args_p[wrt] + e, args_m[wrt] - e
            fd = (data.true_step(*args_p) - data.true_step(*args_m)) / (2 * eps)
            torch.testing.assert_close(J[:, :, i], fd, atol=1e-6, rtol=1e-6)
    assert J_s.abs().max() > 0.1 and J_a.abs().max() > 0.01  # the check is not vacuous


@pytest.mark.slow
def test_rk4_converges_at_fourth_order():
    s0, force = on_attractor(4), torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    reference = integrate(s0, force, 1e-4, 5000)  # t = 0.5
    errors = [(integrate(s0, force, dt, round(0.5 / dt)) - reference).norm() for dt in (0.02, 0.01, 0.005)]
    orders = [np.log2(float(errors[k] / errors[k + 1])) for k in range(2)]
    assert all(3.7 < p < 4.3 for p in orders), orders


def test_spectral_hinge_zero_for_contractive_positive_for_expansive():
    s, a = torch.randn(2, 16, 3), torch.randn(2, 16, 3)
    for A, expected in ((0.5 * torch.eye(3), 0.0), (torch.diag(torch.tensor([2.0, 0.5, 0.5])), 1.0)):
        linear = types.SimpleNamespace(flat_step=lambda s, a, A=A: s @ A.T + 0.3 * a)
        torch.testing.assert_close(spectral_hinge(linear, s, a), torch.full((2,), expected))


def test_state_tangents_are_the_exact_step_jacobian():
    model = EnsembleStepModel([0, 1], hidden_dim=16)
    s, a, V = torch.randn(2, 5, 3), torch.rand(2, 5, 3), torch.randn(2, 5, 3, 2)
    nxt, JV = state_tangents(model, s, a, V)
    J = batch_jacobian(model.flat_step, s.reshape(-1, 3), a.reshape(-1, 3)).reshape(2, 5, 3, 3)
    torch.testing.assert_close(nxt, model(s, a))
    torch.testing.assert_close(JV, J @ V, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_ensemble_members_do_not_depend_on_batching():
    cfg = Exp1Config(num_train_trajectories=16, num_test_trajectories=4, trajectory_steps=20, burn_in_time=5.0,
                     train_steps=15, batch_size=32, quiet=True)
    d0, d1 = make_dataset(cfg, 0), make_dataset(cfg, 1)
    cpu = torch.device("cpu")
    w = {"spectral": 0.1, "hf": 1.0, "ftle": 0.1, "kstep": 0.1}
    alone, _ = train_members(cfg, [d0], [0], [w], 1, "t", cpu)
    together, _ = train_members(cfg, [d0, d1], [0, 1], [w, w], 1, "t", cpu)
    for k, v in alone.member_state(0).items():
        torch.testing.assert_close(v, together.member_state(0)[k], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(together.member_state(0)["weights.0"], together.member_state(1)["weights.0"])


def test_resume_with_a_missing_seed_checkpoint_reproduces_the_ensemble_bit_for_bit(tmp_path):
    """Batched matmuls round differently for another batch size: a rerun must not train the missing seed alone."""
    cfg = Exp1Config(num_train_trajectories=16, num_test_trajectories=4, trajectory_steps=20, burn_in_time=5.0,
                     train_steps=15, batch_size=32, quiet=True, seeds=[0, 1, 2])
    datasets = {s: make_dataset(cfg, s) for s in cfg.seeds}
    first = training.train_variant(cfg, "helm", datasets, tmp_path, torch.device("cpu"))
    training.checkpoint_path(tmp_path, "helm", 1, None).unlink()
    resumed = training.train_variant(cfg, "helm", datasets, tmp_path, torch.device("cpu"))
    assert list(resumed) == [0, 1, 2] and training.checkpoint_path(tmp_path, "helm", 1, None).exists()
    for seed in cfg.seeds:
        assert resumed[seed]["final_loss"] == first[seed]["final_loss"]
        assert all(torch.equal(v, first[seed]["state"][k]) for k, v in resumed[seed]["state"].items())


def _metrics(out):
    """metrics.json without wall-clock fields (runtime, planning seconds) and the environment."""
    def strip(obj):
        return {k: strip(v) for k, v in obj.items() if "seconds" not in k} if isinstance(obj, dict) else obj
    m = json.loads((out / "results" / "metrics.json").read_text())
    return strip({k: v for k, v in m.items() if k != "environment"})


def test_planner_solves_a_tiny_linear_system_exactly():
    """s' = A s + B a (2 members x 4 examples, T = 3): targets reached by actions inside [-1, 1]."""
    gen = torch.Generator().manual_seed(0)
    A = 0.9 * torch.eye(3) + 0.05 * torch.randn(3, 3, generator=gen)
    Bm = torch.eye(3) + 0.1 * torch.randn(3, 3, generator=gen)
    def step(s, a):
        return s @ A.T + a @ Bm.T
    s0 = torch.randn(2, 4, 3, generator=gen, dtype=torch.float32)
    true_actions = 0.8 * (2 * torch.rand(2, 4, 3, 3, generator=gen) - 1)
    target = s0
    for t in range(3):
        target = step(target, true_actions[:, :, t])
    plan, iters = plan_actions(step, s0, target, torch.zeros_like(true_actions), 2000, 0.05, 1e-4)
    reached = s0
    for t in range(3):
        reached = step(reached, plan[:, :, t])
    assert (reached - target).norm(dim=-1).max() < 1e-4
    assert bool((iters < 2000).all()) and bool((iters > 0).all()) and plan.abs().max() <= 1.0


@pytest.mark.slow
def test_closed_loop_with_the_true_model_reaches_reachable_targets():
    cfg = Exp1Config(num_train_trajectories=8, num_test_trajectories=16, trajectory_steps=10, seeds=[0, 1],
                     num_eval_states=16, mpc_interval=5)
    datasets = {s: make_dataset(cfg, s) for s in cfg.seeds}
    result = control(cfg, stacked_true_step([datasets[s] for s in cfg.seeds]), torch.float64, datasets, cfg.seeds,
                     20, torch.device("cpu"))
    assert result["error_closed"].shape == (2, 16)
    solved = (result["error_closed"] < cfg.planning_tolerance).mean()
    floor = floors(cfg, datasets, cfg.seeds, 20, torch.device("cpu"))
    assert solved >= 0.9 and solved > (floor["zero"] < cfg.planning_tolerance).mean() + 0.3


@pytest.mark.slow
def test_quick_run_writes_outputs_resumes_and_replots(tmp_path, monkeypatch):
    assert run_experiment.main(TINY + ["--out-dir", str(tmp_path)]) == 0
    plots = [tmp_path / "plots" / f for f in ("exp1_spectral_cliff.png", "exp1_convergence_rate.png",
                                              "exp1_true_system_planning.png", "exp1_training_curves.png")]
    assert all(p.stat().st_size > 10_000 for p in plots)
    first = _metrics(tmp_path)
    assert {c["name"] for c in first["criteria"]} and len(first["criteria"]) == 10
    true_norms = first["variants"]["true"]["norm_action"]
    assert true_norms["200"]["median"] > true_norms["5"]["median"]

    def no_training(*_a, **_k):
        raise AssertionError("a finished unit was retrained")

    monkeypatch.setattr(training, "train_members", no_training)
    assert run_experiment.main(TINY + ["--out-dir", str(tmp_path)]) == 0
    assert _metrics(tmp_path) == first  # resumed from checkpoints: identical numbers

    for p in plots:
        p.unlink()
    assert run_experiment.main(["--plots-only", "--quiet", "--out-dir", str(tmp_path)]) == 0
    assert all(p.exists() for p in plots)
    assert _metrics(tmp_path)["variants"] == first["variants"]


@pytest.mark.slow
def test_diverged_model_is_recorded_and_run_finishes(tmp_path):
    assert run_experiment.main(TINY + ["--variants", "flat", "helm", "--lr", "1e6", "--out-dir", str(tmp_path)]) == 0
    m = _metrics(tmp_path)
    assert m["variants"]["flat"]["diverged_seeds"] == [0] and m["training"]["flat"]["seed0"]["diverged"]
    assert m["variants"]["flat"]["norm_action"]["100"]["median"] is None
    assert not all(c["passed"] for c in m["criteria"])


@pytest.mark.slow
def test_per_horizon_protocol_writes_one_model_per_T(tmp_path):
    args = TINY[:-6] + ["--train-protocol", "per_horizon", "--horizons", "5", "10", "--growth-fit-min-horizon", "5",
                        "--planning-horizons", "10", "--variants", "flat", "helm", "--trajectory-steps", "30",
                        "--out-dir", str(tmp_path)]
    assert run_experiment.main(args) == 0
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == [f"{v}_model_T{T}_seed0.pt" for v in ("flat", "helm") for T in (10, 5)]
    assert _metrics(tmp_path)["variants"]["helm"]["planning_on_model"]["10"]["median"] is not None


@pytest.mark.slow
def test_command_line_smoke_and_bad_input(tmp_path):
    script = REPO / "exp1_spectral_cliff" / "run_experiment.py"
    run = subprocess.run([sys.executable, str(script), *TINY, "--variants", "flat", "helm", "--out-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "runtime:" in run.stdout and ("FAIL" in run.stdout or "PASS" in run.stdout)
    assert (tmp_path / "plots" / "exp1_spectral_cliff.png").exists()
    assert json.loads((tmp_path / "results" / "metrics.json").read_text())["experiment"] == "exp1_spectral_cliff"
    for bad in (["--horizons", "-5"], ["--variants", "nope"], ["--num-eval-states", "999"], ["--lamda-spectral", "1"]):
        out = tmp_path / "bad"
        run = subprocess.run([sys.executable, str(script), *bad, "--out-dir", str(out)], capture_output=True,
                             text=True, timeout=60)
        assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, (bad, run.stderr)
        assert not out.exists()


def test_default_stability_penalty_is_the_committed_frontier_sweeps_choice():
    saved = REPO / "exp1_spectral_cliff" / "results" / "sweep.json"
    if not saved.exists():
        pytest.skip("no committed frontier sweep")
    chosen = json.loads(saved.read_text())["chosen"]
    cfg = Exp1Config()
    weights = {"spectral": cfg.lambda_spectral, "ftle": cfg.lambda_ftle, "kstep": cfg.lambda_kstep}
    assert chosen is not None, "the committed sweep chose nothing: say so in the README and keep the old default"
    assert weights == {f: (chosen["lambda"] if f == chosen["family"] else 0.0) for f in weights}


def test_flat_multistep_trains_on_the_k_step_rollout_mse(tmp_path):
    """flat_multistep's first training loss is the K-step open-loop MSE of the initial model, computed by hand on
    the windows its batch stream draws; flat keeps the 1-step loss; per_horizon trains every variant on T steps."""
    K = 3
    cfg = Exp1Config(num_train_trajectories=8, num_test_trajectories=4, trajectory_steps=12, burn_in_time=5.0,
                     train_steps=1, batch_size=4, hidden_dim=8, quiet=True, seeds=[0], multistep_rollout_steps=K,
                     variants=["flat", "flat_multistep"])
    assert [training.rollout_steps_of(cfg, v, None) for v in ("flat", "flat_multistep")] == [1, K]
    assert training.rollout_steps_of(cfg, "flat_multistep", 20) == 20
    data = make_dataset(cfg, 0)
    payload = training.train_variant(cfg, "flat_multistep", {0: data}, tmp_path, torch.device("cpu"))[0]
    assert payload["unit_config"]["rollout_steps"] == K and payload["unit_config"]["effective_lambda_ftle"] == 0
    s, a = training.sample_windows(data.train_states[None], data.train_actions[None], K, cfg.batch_size,
                                   [torch_generator(0, "exp1-batches")])  # (1, 4, K+1, 3), (1, 4, K, 3)
    model = EnsembleStepModel([0], cfg.hidden_dim, cfg.num_layers)
    with torch.no_grad():
        pred, total = s[:, :, 0], 0.0
        for k in range(K):
            pred = model(pred, a[:, :, k])
            total += float(((pred - s[:, :, k + 1]) ** 2).mean())
    assert float(payload["loss_curve"][0]) == pytest.approx(total / K, rel=1e-6)
