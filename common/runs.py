"""Run plumbing shared by the experiments: seeding, devices, atomic I/O, results and criteria."""

from __future__ import annotations

import dataclasses
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
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a fresh torch.Generator seeded with `seed`."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def setup_torch(cfg) -> torch.device:
    """Apply the config's thread count and determinism; return the resolved device."""
    torch.set_num_threads(cfg.num_threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return resolve_device(cfg.device)


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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder and `os.replace`.

    A crash at any point leaves either the old file or the new one, never a truncated mix.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
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


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def save_checkpoint(path: Path, payload: dict) -> None:
    """Atomically `torch.save` a dict (model state, config, metrics...)."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint_if_matches(path: Path, unit_config: dict) -> dict | None:
    """The checkpoint at `path` if it exists and was made with `unit_config`, else None.

    This is how runs resume: a finished unit (variant x seed ...) is skipped when its checkpoint
    exists and its stored config equals the one the current run would use.
    """
    path = Path(path)
    if not path.exists():
        return None
    payload = torch.load(path, map_location="cpu", weights_only=False)
    return payload if payload.get("unit_config") == to_jsonable(unit_config) else None


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
# output policy

# Fields that change how a run is shown or where it runs, never what it computes: a saved run that
# differs from the new one only in these is the same run (resume, nothing is moved aside).
PRESENTATION_FIELDS = ("quiet", "strict", "num_threads", "device", "out_dir", "jobs")


def config_differences(saved: dict, new: dict, ignore=PRESENTATION_FIELDS) -> list[str]:
    """Names of the fields (sorted) whose values differ between two configs as dicts, `ignore`d
    fields left out; a field present in only one of them counts as different."""
    saved, new = to_jsonable(saved), to_jsonable(new)
    names = (set(saved) | set(new)) - set(ignore)
    return sorted(n for n in names if n not in saved or n not in new or saved[n] != new[n])


def prepare_output_dir(cfg) -> Path | None:
    """Call before any work: never let this run silently overwrite the results of another config.

    When `<out_dir>/results/config.json` exists and differs from `cfg` in a field other than
    PRESENTATION_FIELDS, the old `plots/` and `results/` are moved to
    `<out_dir>/previous/<UTC timestamp>/` (one printed line says so) and their new location is
    returned. Same config (or no saved config): nothing moves and None is returned, so checkpoints
    and outputs are resumed/overwritten by an identical run. Checkpoints never move: each carries
    its own unit config and is only reused when that matches.
    """
    out = cfg.output_dir()
    saved_path = out / "results" / "config.json"
    if not saved_path.is_file():
        return None
    try:
        saved = read_json(saved_path)
    except (json.JSONDecodeError, UnicodeDecodeError):
        saved = {}  # unreadable: it cannot be shown to match, so keep it (moved aside)
    if not isinstance(saved, dict):
        saved = {}
    changed = config_differences(saved, dataclasses.asdict(cfg))
    if not changed:
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    dest = out / "previous" / stamp
    suffix = 1
    while dest.exists():  # two moves within one second
        dest, suffix = out / "previous" / f"{stamp}-{suffix}", suffix + 1
    dest.mkdir(parents=True)
    # plots first, results (holding config.json, the marker) last: a crash in between leaves the
    # old config.json in place, so the next run moves the rest too and nothing is overwritten
    moved = [name for name in ("plots", "results") if (out / name).exists()]
    for name in moved:
        shutil.move(str(out / name), str(dest / name))
    shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    print(f"output policy: {out} held results of a different config ({shown} differ); "
          f"moved its {' and '.join(moved)} to {dest}")
    return dest


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


def write_results(cfg, experiment: str, metrics: dict, criteria: list[Criterion],
                  runtime_seconds: float, device: torch.device) -> Path:
    """Write `results/config.json` and `results/metrics.json` with the keys every experiment has."""
    results_dir = cfg.output_dir() / "results"
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
    line = lambda r: "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip()
    return "\n".join([line(header), line(tuple("-" * w for w in widths))] + [line(r) for r in rows])


def finish(cfg, criteria: list[Criterion], outputs: list[Path], runtime_seconds: float) -> int:
    """Print the criteria table and output paths; return the process exit code."""
    print("\n" + format_criteria_table(criteria))
    print(f"\nruntime: {runtime_seconds:.1f} s")
    for path in outputs:
        print(f"wrote {path}")
    failed = any(not c.passed for c in criteria)
    return 1 if cfg.strict and failed else 0
