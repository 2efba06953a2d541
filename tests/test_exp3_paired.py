"""Paired statistics of Experiment 3: known cases of the bootstrap interval and McNemar's test."""

from __future__ import annotations

import numpy as np
import pytest

from exp3_planning_efficiency.paired import paired_difference


def test_identical_planners_differ_by_exactly_zero():
    a = np.random.default_rng(0).random((3, 20)) < 0.5
    out = paired_difference(a, a)
    assert out["difference"] == 0 and out["ci95"] == [0.0, 0.0] and out["mcnemar_p"] == 1.0


def test_a_planner_that_solves_every_task_the_other_misses_is_significant():
    a, b = np.ones((5, 20), dtype=bool), np.zeros((5, 20), dtype=bool)
    b[:, :10] = True  # b solves half, a all: 50 discordant tasks, all for a
    out = paired_difference(a, b)
    assert out["difference"] == 0.5 and out["a_only"] == 50 and out["b_only"] == 0
    assert out["mcnemar_p"] == pytest.approx(2 * 0.5 ** 50)
    assert 0 < out["ci95"][0] <= 0.5 <= out["ci95"][1]


def test_the_interval_widens_when_seeds_disagree():
    """The same pooled difference, but carried by one seed: the cluster bootstrap is wider."""
    a, b = np.zeros((4, 20), dtype=bool), np.zeros((4, 20), dtype=bool)
    spread = a.copy()
    spread[:, :5] = True  # every seed: +0.25
    clustered = a.copy()
    clustered[0, :] = True  # one seed: +1, the others 0 (pooled: +0.25)
    even, lumpy = paired_difference(spread, b), paired_difference(clustered, b)
    assert even["difference"] == lumpy["difference"] == 0.25
    assert lumpy["ci95"][1] - lumpy["ci95"][0] > 2 * (even["ci95"][1] - even["ci95"][0])


def test_recomputing_gives_the_same_interval_and_mismatched_tasks_are_refused():
    rng = np.random.default_rng(1)
    a, b = rng.random((3, 10)) < 0.6, rng.random((3, 10)) < 0.4
    assert paired_difference(a, b) == paired_difference(a, b)
    with pytest.raises(ValueError, match="shapes"):
        paired_difference(a, b[:, :5])


def test_the_committed_paired_differences_recompute_from_the_committed_outcomes():
    """Anyone can redo the committed comparison: the per-episode outcomes in exp3_arrays.npz give the
    pooled success and every paired difference of metrics.json exactly."""
    import json

    from common.output_folder import REPO_ROOT
    results = REPO_ROOT / "exp3_planning_efficiency" / "results"
    metrics = json.loads((results / "metrics.json").read_text())
    arrays = np.load(results / "exp3_arrays.npz")
    checked = 0
    for track, entry in metrics["tracks"].items():
        for planner, per_T in entry["success"].items():
            for T, row in per_T.items():
                assert arrays[f"success_{track}_{planner}_T{T}"].mean() == pytest.approx(row["success"], abs=1e-12)
        for T, rows in entry["paired"].items():
            helm = arrays[f"success_{track}_helm_T{T}"]
            for planner, row in rows.items():
                assert paired_difference(helm, arrays[f"success_{track}_{planner}_T{T}"]) == row
                checked += 1
    assert checked >= 3 * 2  # three flat planners at T = 50 and 80 at least
