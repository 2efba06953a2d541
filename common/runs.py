"""Run plumbing shared by the experiments: seeding, devices, atomic I/O, results and criteria."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import io
import json
import math
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from common.cli import naming, read_json


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators from the seed's "global" stream (used by
    module initializers that take no generator; everything else draws from its own named stream,
    `numpy_rng` / `torch_generator`)."""
    state = _stream_int(seed, "global")
    random.seed(state)
    np.random.seed(state % 2**32)
    torch.manual_seed(state)


_PURPOSES: dict[int, str] = {}  # stream key -> purpose name, to refuse two names that hash alike


def seed_stream(seed: int, purpose: str, *keys: int) -> np.random.SeedSequence:
    """The random stream of one purpose ("data", "init", ...) of a seed, optionally sub-keyed by ints
    (a layer, a horizon): `SeedSequence(seed, spawn_key=(purpose, *keys))`. Two different purposes or
    keys never share a stream, whatever the seeds (unlike `offset + seed` arithmetic)."""
    key = zlib.crc32(purpose.encode())
    if _PURPOSES.setdefault(key, purpose) != purpose:
        raise ValueError(f"stream names {purpose!r} and {_PURPOSES[key]!r} collide; rename one")
    return np.random.SeedSequence(seed, spawn_key=(key, *(int(k) for k in keys)))


def _stream_int(seed: int, purpose: str, *keys: int) -> int:
    """One 63-bit integer from the named stream: the seed of a generator that takes an int."""
    return int(seed_stream(seed, purpose, *keys).generate_state(1, np.uint64)[0]) & (2**63 - 1)


def numpy_rng(seed: int, purpose: str, *keys: int) -> np.random.Generator:
    """A numpy Generator on the named stream (see `seed_stream`)."""
    return np.random.default_rng(seed_stream(seed, purpose, *keys))


def torch_generator(seed: int, purpose: str, *keys: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch Generator on the named stream (see `seed_stream`)."""
    return torch.Generator(device).manual_seed(_stream_int(seed, purpose, *keys))


def setup_torch(cfg) -> torch.device:
    """Apply the config's thread count and determinism (`torch_settings`); return the resolved device."""
    device = resolve_device(cfg.device)
    torch_settings(cfg.num_threads, device)
    return device


def torch_settings(num_threads: int, device: torch.device) -> None:
    """The torch set-up of every process of a run (the main one, and each worker of `common.launch`):
    `num_threads` CPU threads and deterministic kernels.

    On CUDA: cuBLAS gets a fixed workspace (`CUBLAS_WORKSPACE_CONFIG`, read when cuBLAS starts, so set
    before the first CUDA call; an existing value is kept), TF32 is off for matmuls and convolutions
    (full float32, as on the CPU), cuDNN autotuning is off, and an op without a deterministic CUDA
    kernel raises instead of warning. On the CPU every op used here is deterministic; the CPU keeps
    `warn_only` so that a future op without a deterministic CPU kernel warns rather than stops a run."""
    torch.set_num_threads(num_threads)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True)
    else:
        torch.use_deterministic_algorithms(True, warn_only=True)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously): call before reading a clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present, else CPU; 'cuda' without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
    return torch.device(name)


def progress(iterable=None, quiet: bool = False, **kwargs):
    """tqdm that stays silent with --quiet or when stderr is not a terminal."""
    return tqdm(iterable, disable=quiet or not sys.stderr.isatty(), dynamic_ncols=True, **kwargs)


# ----------------------------------------------------------------------------------------------
# atomic I/O


_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder and `os.replace`.

    A crash at any point leaves either the old file or the new one, never a truncated mix.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with naming(path):
            os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the mode open() would
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def to_jsonable(obj: Any) -> Any:
    """Convert numpy/torch scalars and arrays, tuples and paths; non-finite floats become None."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: Path, obj: Any) -> None:
    """Atomically write `obj` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(to_jsonable(obj), indent=2) + "\n").encode())


def write_npz(path: Path, arrays: dict) -> None:
    """Atomically write arrays as a compressed .npz (the plots are redrawn from such files)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


CHECKPOINT_MAGIC = b"HELM-CHECKPOINT-1\n"


def save_checkpoint(path: Path, payload: dict) -> None:
    """Atomically write a dict (model state, unit config, metrics...) as `torch.save` bytes behind a
    header holding their SHA-256, so that `read_checkpoint` can refuse a corrupted file."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    body = buffer.getvalue()
    atomic_write_bytes(path, CHECKPOINT_MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body)


def read_checkpoint(path: Path) -> dict | None:
    """The payload saved at `path`, or None when there is none or it fails its checksum (then one
    line on stderr names the file; the caller retrains the unit and overwrites it)."""
    path = Path(path)
    if not path.is_file():
        return None
    raw = path.read_bytes()
    head, digest_end = len(CHECKPOINT_MAGIC), len(CHECKPOINT_MAGIC) + 65
    body = raw[digest_end:]
    if raw[:head] != CHECKPOINT_MAGIC or raw[head:digest_end - 1].decode(errors="replace") != \
            hashlib.sha256(body).hexdigest():
        print(f"checkpoint {path} fails its checksum (corrupted or from older code): not used, retraining",
              file=sys.stderr)
        return None
    return torch.load(io.BytesIO(body), map_location="cpu", weights_only=False)


def load_checkpoint_if_matches(path: Path, unit_config: dict) -> dict | None:
    """The checkpoint at `path` if it exists, is intact and was made with `unit_config`, else None.

    This is how runs resume: a finished unit (variant x seed ...) is skipped when its checkpoint
    exists and its stored identity equals the one the current run would use.
    """
    payload = read_checkpoint(path)
    return payload if payload is not None and payload.get("unit_config") == to_jsonable(unit_config) else None


def load_or_train_batch(paths: list[Path], unit_configs: list[dict], train) -> list[dict]:
    """Checkpoint payloads of models trained together as one batch, one file per model.

    All are loaded when every checkpoint matches its unit config. Otherwise `train()` retrains the
    whole batch (it returns one payload per path) and only the missing files are written: batched
    kernels round differently for another batch size, so training the missing models alone would
    make a resumed run differ from an uninterrupted one in the last bits.
    """
    found = [load_checkpoint_if_matches(path, unit) for path, unit in zip(paths, unit_configs)]
    if all(payload is not None for payload in found):
        return found
    payloads = []
    for path, unit, loaded, trained in zip(paths, unit_configs, found, train()):
        if loaded is None:
            loaded = {"unit_config": to_jsonable(unit), **trained}
            save_checkpoint(path, loaded)
        payloads.append(loaded)
    return payloads


# ----------------------------------------------------------------------------------------------
# outputs


class StagedOutputs:
    """A run's findings (plots/, results/) written to `<out>/.staging/<pid>/` and moved into place
    together.

    `publish()` renames every staged file over its final path at the end of the run, so an
    interrupted run leaves the previous findings as they were, and a finished one replaces every file
    it writes; files it does not write (another script's sweep, say) are left alone. Each process
    stages in its own folder, so a sweep and a run writing into one output folder at the same time
    do not touch each other's staged files; a crashed run's folder is removed by the next run.
    """

    def __init__(self, out: Path):
        self.out = Path(out)
        self.staging = self.out / ".staging" / str(os.getpid())
        for folder in (self.out / ".staging").glob("*"):
            if folder == self.staging or not _process_alive(folder.name):
                shutil.rmtree(folder, ignore_errors=True)

    @property
    def plots(self) -> Path:
        return self.staging / "plots"

    @property
    def results(self) -> Path:
        return self.staging / "results"

    def publish(self) -> list[Path]:
        """Move every staged file to its final place; returns the final paths. Every destination is
        made ready first (its folders exist, no folder in its place), so a path in the way stops the
        run before any file moves: never a half-published folder."""
        moves = {path: self.out / path.relative_to(self.staging)
                 for path in sorted(p for p in self.staging.rglob("*") if p.is_file())}
        for dest in moves.values():
            dest.parent.mkdir(parents=True, exist_ok=True)  # a file in the way raises, naming it
            if dest.is_dir():
                raise IsADirectoryError(errno.EISDIR, "a folder is where a result file goes", str(dest))
        for path, dest in moves.items():
            os.replace(path, dest)
        shutil.rmtree(self.staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.staging.parent.rmdir()  # only if no other run is staging here
        return list(moves.values())


def _process_alive(pid: str) -> bool:
    """Whether `pid` (a staging folder's name) is a running process on this machine."""
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ----------------------------------------------------------------------------------------------
# results


@dataclass
class Criterion:
    """One success criterion: `passed` is computed from `measured`, never set by hand."""

    name: str
    target: str
    measured: float | None
    passed: bool


def criterion(name: str, target: str, measured: float | None, ok) -> Criterion:
    """Build a Criterion; `ok(measured)` decides PASS, and a missing/NaN measurement FAILs."""
    valid = measured is not None and math.isfinite(float(measured))
    return Criterion(name, target, float(measured) if valid else None, bool(valid and ok(float(measured))))


def environment_info(device: torch.device) -> dict:
    """Library versions and hardware facts stored with every result."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
    }


class Timer:
    """Wall-clock seconds since construction."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.start


def write_results(cfg, results_dir: Path, experiment: str, metrics: dict, criteria: list[Criterion],
                  runtime_seconds: float, device: torch.device) -> Path:
    """Write `config.json` and `metrics.json` (the keys every experiment has) into `results_dir`."""
    config = dataclasses.asdict(cfg)
    write_json(results_dir / "config.json", config)
    payload = {
        "experiment": experiment,
        "config": config,
        "seeds": list(cfg.seeds),
        "runtime_seconds": runtime_seconds,
        "environment": environment_info(device),
        "criteria": [dataclasses.asdict(c) for c in criteria],
        **metrics,
    }
    path = results_dir / "metrics.json"
    write_json(path, payload)
    return path


def format_criteria_table(criteria: list[Criterion]) -> str:
    """A fixed-width PASS/FAIL table of the criteria."""
    rows = [(c.name, c.target, "n/a" if c.measured is None else f"{c.measured:.4g}",
             "PASS" if c.passed else "FAIL") for c in criteria]
    header = ("criterion", "target", "measured", "result")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    def line(r):
        return "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip()
    return "\n".join([line(header), line(tuple("-" * w for w in widths))] + [line(r) for r in rows])


def finish(cfg, criteria: list[Criterion], outputs: list[Path], runtime_seconds: float) -> int:
    """Print the criteria table and output paths; return the process exit code."""
    print("\n" + format_criteria_table(criteria))
    print(f"\nruntime: {runtime_seconds:.1f} s")
    for path in outputs:
        print(f"wrote {path}")
    failed = any(not c.passed for c in criteria)
    return 1 if cfg.strict and failed else 0


def run_or_redraw(cfg, experiment: str, measure: Callable, report: Callable, plot: Callable, saved: Callable,
                  sweeps: dict[str, Callable]) -> int:
    """The run of `experiment` (an experiment folder's name) that every run_experiment.py shares;
    returns the process exit code. Every file is staged and published together (`StagedOutputs`).

    - `measure(cfg, device, results_dir) -> (metrics, criteria, arrays)`: trains (or resumes) and
      measures, and writes the run's arrays into the staged `results_dir`; then `write_results`,
      `report(cfg, metrics)` is printed (the tables), `plot(cfg, arrays, metrics_path, plot_dir)` draws
      the run's figures and `finish` prints the criteria.
    - `--plots-only`: `saved(cfg) -> (cfg, arrays)` reads the run saved in the output folder, which
      `plot` redraws (its metrics.json there).
    - Either way, `sweeps` ({"<name>.json": redraw(saved_json, plot_dir)}) redraws the figure of every
      sweep saved in the output folder's results/ by the experiment's sweep scripts."""
    timer, device = Timer(), setup_torch(cfg)
    out = cfg.output_dir()
    staged = StagedOutputs(out)
    if cfg.plots_only:
        plot(*saved(cfg), out / "results" / "metrics.json", staged.plots)
    else:
        metrics, criteria, arrays = measure(cfg, device, staged.results)
        metrics_path = write_results(cfg, staged.results, experiment, metrics, criteria, timer.seconds(), device)
        print(report(cfg, metrics))
        plot(cfg, arrays, metrics_path, staged.plots)
    for name, redraw in sweeps.items():
        if (out / "results" / name).exists():
            redraw(read_json(out / "results" / name), staged.plots)
    outputs = staged.publish()
    if cfg.plots_only:
        print("\n".join(f"wrote {path}" for path in outputs))
        return 0
    return finish(cfg, criteria, outputs, timer.seconds())
