"""Experiment 1's diagnosis of failed plans (`diagnosis.py`) and the true_clipped row, with the true system
as the planner: zero prediction error, the optimum no worse than the early stop, the MPC sweep's own
interval equal to `evaluation.control`'s closed loop; the arrays, summary and tables only with the flags (fast)."""

import dataclasses

import numpy as np
import pytest
import torch

from common.config import Exp1Config
from exp1_spectral_cliff.analyze_spectrum import accuracy_cost, criteria, format_tables, summarize
from exp1_spectral_cliff.dataset import make_dataset
from exp1_spectral_cliff.diagnosis import diagnose
from exp1_spectral_cliff.evaluation import control
from exp1_spectral_cliff.measurements import measure_true, measure_variant
from exp1_spectral_cliff.models import EnsembleStepModel
from exp1_spectral_cliff.tasks import make_tasks

CPU = torch.device("cpu")
TINY = dict(num_train_trajectories=8, num_test_trajectories=4, trajectory_steps=10, burn_in_time=5.0, seeds=[0, 1],
            num_eval_states=4, planning_horizons=[10], planning_max_iters=10, mpc_interval=5, mpc_iters=3,
            horizons=[5, 10], growth_fit_min_horizon=5, diagnose_mpc_intervals=[1, 5], task_kind="far",
            task_draws=8, success_rule="relative", planning_grad_clip=0.0, diagnose=False)


@pytest.fixture(scope="module")
def setup():
    cfg = Exp1Config(**TINY)
    return cfg, {s: make_dataset(cfg, s) for s in cfg.seeds}


def test_diagnosis_of_the_true_system(setup):
    cfg, datasets = setup
    tasks = make_tasks(cfg, datasets, cfg.seeds, 10, CPU)
    step = tasks.true_step
    diag = diagnose(cfg, step, torch.float64, tasks, cfg.seeds)
    assert diag["diag_mpc_error"].shape == (2, 2, 4) and diag["diag_optimum_error"].shape == (2, 4)
    # the true system predicts itself exactly, along any actions
    assert (diag["diag_pred_error_plan"] == 0).all() and (diag["diag_pred_error_random"] == 0).all()
    np.testing.assert_array_equal(diag["diag_optimum_model_error"], diag["diag_optimum_error"])
    result = control(cfg, step, torch.float64, datasets, cfg.seeds, 10, CPU, tasks)
    # the optimum keeps the lowest error of the same Adam iterations the early stop ran
    assert (diag["diag_optimum_error"] <= result["error_open"] + 1e-12).all()
    # the sweep's interval mpc_interval is the closed loop of `control`
    np.testing.assert_array_equal(diag["diag_mpc_error"][:, cfg.diagnose_mpc_intervals.index(5)],
                                  result["error_closed"])


def test_diagnosis_and_true_clipped_appear_only_with_their_flags(setup):
    """--diagnose adds the diagnosis to the learned models (an untrained ensemble here), never to the true
    system; planning_grad_clip / planning_grad_window add the true_clipped row."""
    cfg, datasets = setup
    model = {T: EnsembleStepModel(cfg.seeds, hidden_dim=8) for T in cfg.horizons}
    plain = {"true": measure_true(cfg, datasets, CPU), "flat": measure_variant(cfg, model, cfg.seeds, datasets)}
    assert not any(k.startswith(("diag_", "clipped_")) for a in plain.values() for k in a)
    on = dataclasses.replace(cfg, diagnose=True, planning_grad_clip=1.0, planning_grad_window=5)
    arrays = {"true": measure_true(on, datasets, CPU), "flat": measure_variant(on, model, cfg.seeds, datasets)}
    for name in arrays:
        for k in ("control_error_open", "control_error_closed"):
            np.testing.assert_array_equal(arrays[name][k], plain[name][k])  # the flags add measurements, change none
    clipped = arrays["true"]["clipped_error_open"]
    assert clipped.shape == (2, 1, 4) and np.isfinite(clipped).all()
    assert arrays["flat"]["diag_mpc_error"].shape == (2, 1, 2, 4)
    assert not any(k.startswith("diag_") for k in arrays["true"])
    summary = summarize(on, arrays)
    assert set(summary["flat"]["diagnosis"]["10"]["mpc"]) == {"1", "5"} and "diagnosis" not in summary["true"]
    assert summary["true"]["control_clipped"]["10"]["open_loop"]["solved_fraction"] is not None
    tables = format_tables(on, {"variants": summary, "accuracy_cost": accuracy_cost(summary)})
    assert "| 10 | true_clipped |" in tables and "diagnosis (--diagnose)" in tables
    plain_summary = summarize(cfg, plain)
    assert "diagnosis" not in plain_summary["flat"] and "control_clipped" not in plain_summary["true"]
    plain_tables = format_tables(cfg, {"variants": plain_summary, "accuracy_cost": accuracy_cost(plain_summary)})
    assert "true_clipped" not in plain_tables and "diagnosis" not in plain_tables


def test_the_task_criteria_read_the_floors_the_ceiling_and_error_over_d0(setup):
    """The three rows of the true-system test: each reads its own cells and can fail."""
    cfg, datasets = setup
    model = {T: EnsembleStepModel(cfg.seeds, hidden_dim=8) for T in cfg.horizons}
    arrays = {"true": measure_true(cfg, datasets, CPU), "flat": measure_variant(cfg, model, cfg.seeds, datasets)}
    cfg = dataclasses.replace(cfg, variants=["flat"])
    d0 = arrays["true"]["floor_zero_error"]

    def rows(arrays):
        return {c.name.split(":")[0]: c for c in criteria(cfg, summarize(cfg, arrays))}
    arrays["true"]["control_error_closed"] = 0.1 * d0  # every task solved by the ceiling
    arrays["true"]["floor_random_error"] = d0  # no floor solves any
    arrays["flat"]["control_error_open"] = arrays["flat"]["control_error_closed"] = 0.5 * d0
    good = rows(arrays)
    assert good["tasks need control"].passed and good["tasks need control"].measured == 0
    assert good["tasks are solvable"].passed and good["tasks are solvable"].measured == 1
    assert good["no learned model worse than zero actions"].measured == pytest.approx(0.5)
    assert good["no learned model worse than zero actions"].passed
    arrays["true"]["floor_random_error"] = np.where(np.arange(4) < 1, 0.1 * d0, d0)  # 1 of 4 tasks solved
    arrays["true"]["control_error_closed"] = np.where(np.arange(4) < 1, d0, 0.1 * d0)  # 3 of 4 solved
    arrays["flat"]["control_error_open"] = 2 * d0  # farther than doing nothing, open loop only
    bad = rows(arrays)
    assert bad["tasks need control"].measured == 0.25 and not bad["tasks need control"].passed
    assert bad["tasks are solvable"].measured == 0.75 and not bad["tasks are solvable"].passed
    assert bad["no learned model worse than zero actions"].measured == pytest.approx(2)
    assert not bad["no learned model worse than zero actions"].passed


def test_every_frontier_member_plans_on_the_same_tuning_seed_tasks(setup):
    """sweep_lambda.plan_members: one row per member; members with equal weights get equal results, since
    every member sees the tuning seed's tasks."""
    from exp1_spectral_cliff.sweep_lambda import plan_members
    cfg, _ = setup
    cfg = dataclasses.replace(cfg, tuning_seed=0)
    data = make_dataset(cfg, 0)
    twins = EnsembleStepModel([5, 5, 6], hidden_dim=8)  # members 0 and 1 share their initialization
    out = plan_members(cfg, twins, data, CPU)
    assert set(out) == {"solved_open", "solved_closed", "error_over_d0_open", "error_over_d0_closed"}
    for value in out.values():
        assert value.shape == (3, len(cfg.planning_horizons)) and np.isfinite(value).all()
        np.testing.assert_array_equal(value[0], value[1])
    assert ((out["solved_closed"] >= 0) & (out["solved_closed"] <= 1)).all()
    assert not np.array_equal(out["error_over_d0_open"][0], out["error_over_d0_open"][2])
