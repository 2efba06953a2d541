"""Experiment 1's diagnosis of failed plans (`diagnosis.py`) and the true_clipped row, with the true system
as the planner: zero prediction error, the optimum no worse than the early stop, the MPC sweep's own
interval equal to `evaluation.control`'s closed loop; the arrays, summary and tables only with the flags (fast)."""

import dataclasses

import numpy as np
import pytest
import torch

from common.config import Exp1Config
from exp1_spectral_cliff.analyze_spectrum import accuracy_cost, format_tables, summarize
from exp1_spectral_cliff.dataset import make_dataset
from exp1_spectral_cliff.diagnosis import diagnose
from exp1_spectral_cliff.evaluation import control
from exp1_spectral_cliff.measurements import measure_true
from exp1_spectral_cliff.tasks import make_tasks

CPU = torch.device("cpu")
TINY = dict(num_train_trajectories=8, num_test_trajectories=4, trajectory_steps=10, burn_in_time=5.0, seeds=[0, 1],
            num_eval_states=4, planning_horizons=[10], planning_max_iters=10, mpc_interval=5, mpc_iters=3,
            horizons=[5, 10], growth_fit_min_horizon=5, diagnose_mpc_intervals=[1, 5], task_kind="far",
            task_draws=8, success_rule="relative")


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
    cfg, datasets = setup
    plain = measure_true(cfg, datasets, CPU)
    assert not any(k.startswith(("diag_", "clipped_")) for k in plain)
    on = dataclasses.replace(cfg, diagnose=True, planning_grad_clip=1.0, planning_grad_window=5)
    arrays = measure_true(on, datasets, CPU)
    for k in ("control_error_open", "control_error_closed", "floor_zero_error"):
        np.testing.assert_array_equal(arrays[k], plain[k])  # the flags add measurements, change none
    assert arrays["clipped_error_open"].shape == (2, 1, 4) and np.isfinite(arrays["clipped_error_open"]).all()
    assert arrays["diag_mpc_error"].shape == (2, 1, 2, 4)
    summary = summarize(on, {"true": arrays})
    assert set(summary["true"]["diagnosis"]["10"]["mpc"]) == {"1", "5"}
    assert summary["true"]["control_clipped"]["10"]["open_loop"]["solved_fraction"] is not None
    tables = format_tables(on, {"variants": summary, "accuracy_cost": accuracy_cost(summary)})
    assert "| 10 | true_clipped |" in tables and "diagnosis (--diagnose)" in tables
    plain_summary = summarize(cfg, {"true": plain})
    assert "diagnosis" not in plain_summary["true"] and "control_clipped" not in plain_summary["true"]
    plain_tables = format_tables(cfg, {"variants": plain_summary, "accuracy_cost": accuracy_cost(plain_summary)})
    assert "true_clipped" not in plain_tables and "diagnosis" not in plain_tables
