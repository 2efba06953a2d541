"""Each experiment's `--quick` run on a CUDA GPU: it runs, and metrics.json records the device used.

Skipped on machines without CUDA (CI, the project's CPU machines); run these wherever a GPU is.
"""

from __future__ import annotations

import importlib
import json

import pytest
import torch

pytestmark = [pytest.mark.cuda, pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")]


@pytest.mark.parametrize("module", ["exp1_spectral_cliff.run_experiment", "exp2_funnel_heatmap.run_experiment",
                                    "exp3_planning_efficiency.run_experiment"])
def test_quick_run_on_the_gpu_records_cuda(module, tmp_path):
    main = importlib.import_module(module).main
    assert main(["--quick", "--quiet", "--device", "cuda", "--out-dir", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "results" / "metrics.json").read_text())
    assert metrics["environment"]["device"].startswith("cuda")
    assert all(c["measured"] is None or c["measured"] == c["measured"] for c in metrics["criteria"])


def test_the_same_seed_twice_gives_the_same_numbers_on_the_gpu(tmp_path):
    import numpy as np

    main = importlib.import_module("exp2_funnel_heatmap.run_experiment").main
    for run in ("a", "b"):
        assert main(["--quick", "--quiet", "--device", "cuda", "--out-dir", str(tmp_path / run)]) == 0
    a, b = (np.load(tmp_path / run / "results" / "exp2_arrays.npz") for run in ("a", "b"))
    same = [np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f") for k in a.files if "second" not in k]
    assert all(same)
