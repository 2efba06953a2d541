"""Emulated CUDA tensors on a CPU-only machine: a test guard against device mismatches.

Inside `emulated_cuda()`, `torch.cuda.is_available()` is True and every tensor made for the device
"cuda" (a factory's `device=`, `.to("cuda")`, `.cuda()`, a module's `.to`) is an `EmulatedGpuTensor`:
a wrapper that computes on a CPU tensor it holds but is a *different device* to torch. An op that
mixes it with a CPU tensor of one or more dimensions raises the error CUDA raises ("Expected all
tensors to be on the same device"), `.numpy()` on it fails as on a GPU, and a random draw for the GPU
from a CPU generator (or the reverse) fails as on a GPU. Results are the CPU's numbers, so a whole
`--quick --device cuda` run goes through, data-dependent control flow included; a device mismatch
anywhere in it fails.

Why not `FakeTensorMode`: on a CPU-only build of torch it cannot move a module to "cuda" ("PyTorch is
not linked with support for cuda devices"), and autograd refuses any tensor that reports a CUDA device
(no device guard is linked). The wrapper therefore reports torch's `meta` device (which has a guard)
and the emulation treats "cuda" and "meta" alike: `x.device` reads `meta` inside the guard.
"""

from __future__ import annotations

import contextlib

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

GPU = torch.device("meta")  # what an emulated tensor reports (see the module docstring)
aten = torch.ops.aten
# ops that take CPU tensors beside CUDA ones on a real GPU (copies, CPU index tensors)
_MIXED_DEVICES_OK = {aten.copy_.default, aten._to_copy.default, aten.index.Tensor, aten.index_put_.default,
                     aten.index_put.default, aten._index_put_impl_.default}


class EmulatedGpuTensor(torch.Tensor):
    """A tensor on the emulated GPU; its data is the CPU tensor `elem`."""

    @staticmethod
    def __new__(cls, elem: torch.Tensor):
        wrapper = torch.Tensor._make_wrapper_subclass(
            cls, elem.shape, strides=elem.stride(), storage_offset=elem.storage_offset(), dtype=elem.dtype,
            layout=elem.layout, device=GPU, requires_grad=elem.requires_grad)
        wrapper.elem = elem
        return wrapper

    def __repr__(self):
        return f"EmulatedGpuTensor({self.elem!r})"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return _run_op(func, args, kwargs or {})


class EmulatedGpuGenerator:
    """Stands in for `torch.Generator`: a CPU generator that remembers which device it was made for."""

    def __new__(cls, device="cpu"):
        generator = _REAL_GENERATOR("cpu")
        _GPU_GENERATORS[id(generator)] = (generator, _on_gpu(device))  # held, so that its id stays unique
        return generator


_REAL_GENERATOR = torch.Generator
_GPU_GENERATORS: dict[int, tuple] = {}  # id(generator) -> (generator, made for the GPU)
_GPU_OPS: set[str] | None = None  # the aten ops that ran on the emulated GPU, when asked for


def _on_gpu(device) -> bool:
    return device is not None and torch.device(device).type in ("cuda", "meta")


def _unwrap(t):
    return t.elem if isinstance(t, EmulatedGpuTensor) else t


def _mismatch(what: str):
    return RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                        f"cuda:0 and cpu! (emulated CUDA, in {what})")


def _run_op(func, args, kwargs):
    """Run one aten op on the CPU data; the outputs live where CUDA would put them."""
    tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
    inputs_on_gpu = any(isinstance(t, EmulatedGpuTensor) for t in tensors)
    if (inputs_on_gpu and func not in _MIXED_DEVICES_OK
            and any(not isinstance(t, EmulatedGpuTensor) and t.dim() > 0 for t in tensors)):
        raise _mismatch(str(func))
    device = kwargs.get("device")
    out_on_gpu = _on_gpu(device) if device is not None else inputs_on_gpu
    if out_on_gpu and _GPU_OPS is not None:
        _GPU_OPS.add(func.name())
    if device is not None:
        kwargs = dict(kwargs, device=torch.device("cpu"))
    out = func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
    if func is aten.copy_.default:
        return args[0]
    return tree_map(lambda t: EmulatedGpuTensor(t) if out_on_gpu and isinstance(t, torch.Tensor) else t, out)


class _DispatchMode(TorchDispatchMode):
    """Factories asked for the GPU (plain tensors in, `device="cuda"`) land on the emulated GPU."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if any(issubclass(t, EmulatedGpuTensor) for t in types) or _on_gpu(kwargs.get("device")):
            return _run_op(func, args, kwargs)
        return func(*args, **kwargs)


class _FunctionMode(TorchFunctionMode):
    """Python entry points that a CPU-only build refuses for "cuda" before the dispatcher sees them."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        generator = kwargs.get("generator")
        if generator is not None:  # checked here: the dispatcher sees another Python object
            target = kwargs.get("device") or (args[0].device if args and isinstance(args[0], torch.Tensor) else None)
            if _GPU_GENERATORS.get(id(generator), (None, False))[1] != _on_gpu(target):
                raise _mismatch(f"{func}: a generator made for one device draws for the other")
        if func in (torch.Tensor.to, torch.Tensor.cuda):
            src = args[0]
            if func is torch.Tensor.cuda:
                device, dtype, non_blocking = GPU, None, kwargs.get("non_blocking", False)
            else:
                device, dtype, non_blocking, _ = torch._C._nn._parse_to(*args[1:], **kwargs)
            if _on_gpu(device):
                if isinstance(src, EmulatedGpuTensor):
                    return src if dtype in (None, src.dtype) else src.to(dtype)
                return aten._to_copy(src, dtype=dtype or src.dtype, device=GPU, non_blocking=non_blocking)
        if func in (torch.tensor, torch.as_tensor) and _on_gpu(kwargs.get("device")):
            return aten._to_copy(func(*args, **dict(kwargs, device="cpu")), device=GPU)
        if func is torch.Tensor.numpy and isinstance(args[0], EmulatedGpuTensor):
            raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the "
                            "tensor to host memory first. (emulated CUDA)")
        if func is torch.Tensor.tolist and isinstance(args[0], EmulatedGpuTensor):
            return args[0].elem.tolist()
        return func(*args, **kwargs)


@contextlib.contextmanager
def emulated_cuda(gpu_ops: set[str] | None = None):
    """Within: torch believes a CUDA GPU is present, and tensors for it are `EmulatedGpuTensor`s.
    `gpu_ops`, if given, collects the names of the aten ops that ran on the GPU ("aten::mm", ...)."""
    global _GPU_OPS
    _GPU_OPS = gpu_ops
    patches = {"_lazy_init": lambda: None, "is_available": lambda: True, "synchronize": lambda *a, **k: None,
               "device_count": lambda: 1, "get_device_name": lambda *a, **k: "emulated CUDA (CPU)"}
    saved = {name: getattr(torch.cuda, name) for name in patches}
    for name, value in patches.items():
        setattr(torch.cuda, name, value)
    torch.Generator = EmulatedGpuGenerator
    try:
        with _FunctionMode(), _DispatchMode():
            yield
    finally:
        _GPU_OPS = None
        torch.Generator = _REAL_GENERATOR
        _GPU_GENERATORS.clear()
        for name, value in saved.items():
            setattr(torch.cuda, name, value)
