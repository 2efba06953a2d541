"""Paired comparisons of two planners on the same tasks (every planner runs the seed's same tasks).

A difference of success rates is reported with
- a 95 % interval from a two-level (cluster) bootstrap: resample seeds with replacement, then tasks
  within each drawn seed, so outcomes clustered by seed (one set of networks each) are not treated
  as independent;
- the exact McNemar test: under "no difference" each discordant task (one planner solves it, the
  other does not) is a fair coin, so the two-sided p-value is a binomial test on the discordant counts.
The bootstrap draws from a fixed named stream, so recomputing from the saved outcomes gives the same
interval (`tests/test_exp3_paired.py` does so for the committed run).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest

from common.runs import numpy_rng

RESAMPLES = 10_000


def paired_difference(a: np.ndarray, b: np.ndarray, resamples: int = RESAMPLES) -> dict:
    """Success of planner a minus planner b on the same tasks: a, b (seeds, tasks) bool -> the mean
    difference, its 95 % cluster-bootstrap interval, the discordant counts and McNemar's exact p."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"paired outcomes need equal (seeds, tasks) shapes, got {a.shape} and {b.shape}")
    diff = a.astype(float) - b.astype(float)  # (S, N)
    S, N = diff.shape
    rng = numpy_rng(0, "exp3-paired-bootstrap", S, N)
    seeds = rng.integers(S, size=(resamples, S))
    tasks = rng.integers(N, size=(resamples, S, N))
    means = diff[seeds[:, :, None], tasks].mean(axis=(1, 2))
    a_only, b_only = int((a & ~b).sum()), int((b & ~a).sum())
    p = binomtest(a_only, a_only + b_only, 0.5).pvalue if a_only + b_only else 1.0
    low, high = np.quantile(means, [0.025, 0.975])
    return {"difference": float(diff.mean()), "ci95": [float(low), float(high)], "a_only": a_only, "b_only": b_only,
            "mcnemar_p": float(p), "tasks": int(S * N)}
