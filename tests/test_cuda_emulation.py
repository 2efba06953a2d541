"""The CUDA guard that runs without a GPU: every experiment and sweep on emulated CUDA tensors.

`cuda_emulation.emulated_cuda()` makes tensors for "cuda" a device of their own that computes on the
CPU, so a tensor made on the CPU meeting one made for the GPU fails here as it would on a GPU. Each
experiment's `--quick --device cuda` run must complete under it, with the CPU's numbers (the
emulation computes on the CPU), and use no op that deterministic mode refuses on CUDA.
"""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import torch

from cuda_emulation import EmulatedGpuTensor, emulated_cuda

# aten ops that `torch.use_deterministic_algorithms(True)` refuses on CUDA (torch's own list, in its
# docstring, as aten names; conservative where the list names a module: any use of the op)
NONDETERMINISTIC_ON_CUDA = {
    "aten::avg_pool3d_backward", "aten::_adaptive_avg_pool2d_backward", "aten::_adaptive_avg_pool3d_backward",
    "aten::adaptive_max_pool2d_backward", "aten::fractional_max_pool2d_backward",
    "aten::fractional_max_pool3d_backward", "aten::max_unpool2d", "aten::max_unpool3d",
    "aten::upsample_linear1d_backward", "aten::upsample_bilinear2d_backward", "aten::upsample_bicubic2d_backward",
    "aten::upsample_trilinear3d_backward", "aten::reflection_pad1d_backward", "aten::reflection_pad2d_backward",
    "aten::reflection_pad3d_backward", "aten::replication_pad3d_backward", "aten::nll_loss2d_forward",
    "aten::_ctc_loss_backward", "aten::_embedding_bag_backward", "aten::put_", "aten::histc", "aten::bincount",
    "aten::kthvalue", "aten::median.dim", "aten::nanmedian.dim", "aten::grid_sampler_2d_backward",
    "aten::grid_sampler_3d_backward", "aten::cumsum", "aten::scatter_reduce.two", "aten::resize_",
}


# ------------------------------------------------------------------------------------------------
# the emulation itself


def test_a_cpu_tensor_meeting_a_gpu_tensor_fails_as_on_a_gpu():
    with emulated_cuda():
        x = torch.ones(4, 3, device="cuda")
        with pytest.raises(RuntimeError, match="same device"):
            x + torch.ones(4, 3)
        with pytest.raises(RuntimeError, match="same device"):
            torch.bmm(torch.ones(2, 2, 2), torch.ones(2, 2, 2, device="cuda"))
        with pytest.raises(TypeError, match="numpy"):
            x.numpy()
        with pytest.raises(RuntimeError, match="generator"):
            torch.randn(3, device="cuda", generator=torch.Generator())
        with pytest.raises(RuntimeError, match="generator"):
            torch.randn(3, generator=torch.Generator("cuda"))


def test_what_a_gpu_allows_passes_with_the_cpu_values():
    torch.manual_seed(0)
    w, x = torch.randn(2, 3), torch.randn(5, 3)
    expected = torch.tanh(x @ w.T + 2.0)
    with emulated_cuda():
        layer = torch.nn.Linear(3, 2, bias=False)
        layer.weight.data.copy_(w)
        layer = layer.to("cuda")
        y = torch.tanh(layer(x.cuda()) + torch.tensor(2.0))  # a 0-dim CPU tensor may meet a GPU tensor
        assert isinstance(y, EmulatedGpuTensor) and isinstance(layer.weight, EmulatedGpuTensor)
        picked = y[torch.tensor([0, 2])]  # CPU indices into a GPU tensor are allowed
        y.sum().backward()
        assert isinstance(layer.weight.grad, EmulatedGpuTensor)
        assert torch.cuda.is_available() and float(y.detach().sum()) == pytest.approx(float(expected.sum()))
        result = y.cpu()
    assert type(result) is torch.Tensor and torch.equal(result, expected) and picked.shape == (2, 2)


# ------------------------------------------------------------------------------------------------
# the three places where a GPU run used to crash (each failed here before its fix)


def test_exp1_true_system_steps_on_the_gpu():
    from exp1_spectral_cliff.dataset import LorenzSystem

    system = LorenzSystem(0.01, 5, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    s, u = torch.randn(4, 3, dtype=torch.float64), torch.rand(4, 3, dtype=torch.float64)
    expected = system.step(s, u)
    with emulated_cuda():
        out = system.step(s.cuda(), u.cuda()).cpu()
    assert torch.equal(out, expected)


def test_exp1_model_rmse_on_the_gpu():
    from types import SimpleNamespace

    from exp1_spectral_cliff.models import EnsembleStepModel
    from exp1_spectral_cliff.quality import model_rmse

    data = SimpleNamespace(test_states=torch.randn(3, 21, 3), test_actions=torch.rand(3, 20, 3))
    expected = model_rmse(EnsembleStepModel([0], hidden_dim=8), {0: data}, [0])
    with emulated_cuda():
        model = EnsembleStepModel([0], hidden_dim=8).to("cuda")
        out = model_rmse(model, {0: data}, [0])
    assert all(np.array_equal(a, b) for a, b in zip(out, expected))


def test_exp2_basin_coverage_of_a_gpu_model():
    from common.config import Exp2Config
    from exp2_funnel_heatmap.energy_functions import Landscape
    from exp2_funnel_heatmap.analyze_heatmap import basin_coverage

    cfg = Exp2Config(basin_grid_resolution=6, gd_steps_basin=5, polish_steps=5)
    p = Landscape.from_config(cfg)
    expected = basin_coverage(lambda x: x, p, cfg, 2)["coverage"]
    with emulated_cuda():
        out = basin_coverage(lambda x: torch.ones(1, device="cuda") * x, p, cfg, 2, torch.device("cuda"))
    assert type(out["coverage"]) is torch.Tensor and torch.equal(out["coverage"], expected)


# ------------------------------------------------------------------------------------------------
# whole runs: every experiment's --quick, and the sweep scripts, on the emulated GPU

RUNS = {
    "exp1": ("exp1_spectral_cliff.run_experiment", ["--train-steps", "10", "--planning-max-iters", "5",
                                                  "--mpc-iters", "2", "--num-eval-states", "4",
                                                  "--horizons", "5", "20", "50"]),
    "exp1-sweep": ("exp1_spectral_cliff.sweep_lambda", ["--lambda-sweep", "0.1"]),
    "exp2": ("exp2_funnel_heatmap.run_experiment", []),
    "exp2-sweep": ("exp2_funnel_heatmap.sweep", ["--sweep-sigmas", "0.05", "--sweep-lambdas", "1"]),
    # the spectral hinge's forward-mode AD crashes torch on any tensor subclass (a segfault), so the
    # emulated run trains without it; its tensors are all made `*_like` the latents it reads
    "exp3": ("exp3_planning_efficiency.run_experiment", ["--lambda-spectral", "0", "--tracks", "unseen-layouts",
                                                         "--planning-horizons", "10", "20", "--num-train-layouts", "4",
                                                         "--walks-per-layout", "5", "--model-train-steps", "5",
                                                         "--energy-train-steps", "5", "--num-test-layouts", "2"]),
    "exp3-tune": ("exp3_planning_efficiency.tune", ["--lambda-spectral", "0", "--planning-horizons", "10",
                                                    "--num-train-layouts", "4", "--walks-per-layout", "5",
                                                    "--model-train-steps", "5", "--energy-train-steps", "5",
                                                    "--num-tuning-layouts", "2"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", RUNS)
def test_quick_run_on_emulated_cuda(name, tmp_path):
    module, flags = RUNS[name]
    main = importlib.import_module(module).main
    gpu_ops: set[str] = set()
    with emulated_cuda(gpu_ops):
        assert main(["--quick", "--quiet", "--device", "cuda", "--out-dir", str(tmp_path), *flags]) == 0
    assert gpu_ops, "nothing ran on the emulated GPU"
    assert not gpu_ops & NONDETERMINISTIC_ON_CUDA, "ops without a deterministic CUDA kernel"
    metrics_path = tmp_path / "results" / "metrics.json"
    if metrics_path.exists():
        assert json.loads(metrics_path.read_text())["environment"]["device"] == "cuda"
