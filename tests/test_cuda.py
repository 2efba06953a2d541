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
