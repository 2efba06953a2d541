"""Experiment 1's true-system tasks (`tasks.py`): deterministic per seed, reachable, far from the
zero-action endpoint, the old kind unchanged, and floors that follow the success rule (fast, true system only)."""

import dataclasses

import numpy as np
import pytest
import torch

from common.config import Exp1Config
from exp1_spectral_cliff.analyze_spectrum import summarize
from exp1_spectral_cliff.dataset import make_dataset
from exp1_spectral_cliff.evaluation import floors
from exp1_spectral_cliff.tasks import execute, held_actions, make_tasks, random_actions, solved

CPU = torch.device("cpu")
TINY = dict(num_train_trajectories=8, num_test_trajectories=8, trajectory_steps=10, burn_in_time=5.0, seeds=[0, 1],
            num_eval_states=8, task_kind="far", task_draws=8, task_hold_steps=5, task_min_distance=0.4,
            task_max_distance=1.0)


@pytest.fixture(scope="module")
def setup():
    cfg = Exp1Config(**TINY)
    return cfg, {s: make_dataset(cfg, s) for s in cfg.seeds}


def test_far_tasks_are_deterministic_per_seed_and_prefix_stable(setup):
    cfg, datasets = setup
    a, b = (make_tasks(cfg, datasets, cfg.seeds, 10, CPU) for _ in range(2))
    assert torch.equal(a.target, b.target) and torch.equal(a.actions, b.actions)
    assert not torch.allclose(a.target[0], a.target[1])  # each seed its own stream
    fewer = make_tasks(dataclasses.replace(cfg, num_eval_states=4), datasets, cfg.seeds, 10, CPU)
    assert torch.equal(fewer.target, a.target[:, :4])  # a task does not depend on how many are drawn
    alone = make_tasks(cfg, datasets, [1], 10, CPU)
    torch.testing.assert_close(alone.target[0], a.target[1], rtol=0, atol=1e-12)  # nor on the other seeds


@pytest.mark.parametrize("horizon", [10, 20])
def test_far_tasks_are_reachable_and_the_first_draw_in_the_band(setup, horizon):
    cfg, datasets = setup
    tasks = make_tasks(cfg, datasets, cfg.seeds, horizon, CPU)
    torch.testing.assert_close(execute(tasks.true_step, tasks.s0, tasks.actions), tasks.target, rtol=0, atol=1e-12)
    assert tasks.actions.abs().max() <= 1 and torch.equal(tasks.actions[:, :, 0], tasks.actions[:, :, 4])  # held
    E, B, K = len(cfg.seeds), cfg.num_eval_states, cfg.task_draws
    drawn = held_actions(cfg.seeds, "exp1-task-actions", B, K, horizon, cfg.task_hold_steps, CPU)
    ends = execute(tasks.true_step, tasks.s0.repeat_interleave(K, dim=1), drawn.reshape(E, B * K, horizon, 3))
    d0_all = (ends.reshape(E, B, K, 3) - tasks.zero_end[:, :, None]).norm(dim=-1)
    lo, hi = cfg.task_min_distance, cfg.task_max_distance
    for e in range(E):
        for b in range(B):
            d = d0_all[e, b].tolist()
            inside = [k for k in range(K) if lo <= d[k] <= hi]
            gap = [max(lo - x, 0) + max(x - hi, 0) for x in d]
            k = inside[0] if inside else gap.index(min(gap))  # the first draw in the band, else the nearest
            assert torch.equal(tasks.actions[e, b], drawn[e, b, k])
    stage_two = make_tasks(dataclasses.replace(cfg, task_kind="random"), datasets, cfg.seeds, horizon, CPU)
    assert tasks.d0.median() > 2 * stage_two.d0.median()  # the point: farther from where doing nothing ends


def test_random_kind_is_the_stage_two_task(setup):
    cfg, datasets = setup
    cfg = dataclasses.replace(cfg, task_kind="random")
    tasks = make_tasks(cfg, datasets, cfg.seeds, 10, CPU)
    actions = random_actions(cfg.seeds, "exp1-true-targets", cfg.num_eval_states, 10, CPU)
    assert torch.equal(tasks.target, execute(tasks.true_step, tasks.s0, actions))


@pytest.mark.parametrize("rule", ["absolute", "relative"])
def test_floors_follow_the_success_rule(setup, rule):
    cfg, datasets = setup
    cfg = dataclasses.replace(cfg, success_rule=rule, planning_horizons=[10, 20])
    tasks = {T: make_tasks(cfg, datasets, cfg.seeds, T, CPU) for T in cfg.planning_horizons}
    floor = {T: floors(cfg, datasets, cfg.seeds, T, CPU) for T in cfg.planning_horizons}
    d0 = np.stack([floor[T]["zero"] for T in cfg.planning_horizons], axis=1)  # (S, P, B)
    np.testing.assert_array_equal(d0[:, 0], tasks[10].d0.numpy())  # zero actions leave the task's d0
    rand = np.stack([floor[T]["random"] for T in cfg.planning_horizons], axis=1)
    nan = np.full_like(d0, np.nan)
    arrays = {"true": {"floor_zero_error": d0, "floor_random_error": rand, "log_action": np.zeros((2, 8, 1)),
                       "log_state": np.zeros((2, 8, 1)), "diverged": np.zeros(2, bool),
                       **{f"control_{k}_{m}": nan if k != "seconds" else np.ones(2)
                          for k in ("error", "iters", "seconds") for m in ("open", "closed")}}}
    summary = summarize(dataclasses.replace(cfg, horizons=[5]), arrays)["true"]["floors"]
    for p, T in enumerate(cfg.planning_horizons):
        zero, random = summary[str(T)]["zero_actions"], summary[str(T)]["random_actions"]
        assert zero["solved_fraction"] == solved(cfg, d0[:, p], d0[:, p]).mean()
        assert random["solved_fraction"] == solved(cfg, rand[:, p], d0[:, p]).mean()
        if rule == "relative":
            assert zero["solved_fraction"] == 0  # zero actions leave exactly d0 > success_ratio x d0
        else:
            assert zero["solved_fraction"] == (d0[:, p] < cfg.planning_tolerance).mean()
