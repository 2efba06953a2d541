"""Where a run's independent units execute: `inline` (this process, or `--jobs` worker processes
where the caller asks for them), `local` (submitit's local executor: one subprocess per unit,
`--jobs` at a time) or `slurm` (submitit's SLURM executor: one job per unit, in a job array).

submitit is the standard way to send Python functions to SLURM (it backs Hydra's launcher): no
server, the same function and arguments whatever runs them, and a local executor that exercises the
same pickling code path on one machine. Units write their own checkpoints, so the parent only gathers
return values; a unit that failed (or was preempted) is reported by name with its log, and a rerun
redoes only the units whose checkpoints are missing.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from common.cli import UnitsFailed
from common.runs import progress, resolve_device, torch_settings

POLL_SECONDS = 0.5


@dataclass
class Unit:
    """One independent piece of a run: `fn(*args)`, named for reports and logs."""

    name: str
    fn: Callable[..., Any]
    args: tuple


def _use_parent_torch_settings(num_threads: int, device: str) -> None:
    """The parent's torch settings in a worker (`common.runs.torch_settings`: a fresh process would
    use every core and nondeterministic kernels, and give different numbers)."""
    torch_settings(num_threads, resolve_device(device))


def run_in_worker(num_threads: int, device: str, fn: Callable, *args):
    """`fn(*args)` in a submitit process, with the parent's torch settings."""
    _use_parent_torch_settings(num_threads, device)
    return fn(*args)


def _init_worker(num_threads: int, device: str, parent: int) -> None:
    """A worker process's set-up: the parent's torch settings, and an exit once the parent is gone."""
    _use_parent_torch_settings(num_threads, device)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """End this worker once the main process `parent` is gone (killed by SIGTERM or SIGKILL, say),
    instead of training on as an orphan; finished units are in their checkpoints, so a rerun resumes.
    (`parent` is passed in, not read here: the main process may die before a worker starts.)"""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _run_inline(cfg, units: list[Unit], worker_processes: bool) -> list:
    """The units' return values, run one after another in this process, or (`worker_processes` and
    `cfg.jobs` > 1) in `cfg.jobs` spawned worker processes that end with this one."""
    if not worker_processes or cfg.jobs == 1:
        return [unit.fn(*unit.args) for unit in progress(units, cfg.quiet, desc="units")]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(cfg.jobs, mp_context=context, initializer=_init_worker,
                             initargs=(cfg.num_threads, cfg.device, os.getpid())) as pool:
        futures = [pool.submit(unit.fn, *unit.args) for unit in units]
        return [future.result() for future in futures]


def executor_for(cfg, log_dir: Path):
    """The submitit executor of `cfg.launcher` ("local" or "slurm"), logs under `log_dir`."""
    import submitit
    executor = submitit.AutoExecutor(folder=log_dir / "%j", cluster=cfg.launcher)
    executor.update_parameters(timeout_min=cfg.slurm_time_min, cpus_per_task=cfg.num_threads,
                               name=cfg.experiment_folder)
    if cfg.launcher == "slurm":
        executor.update_parameters(slurm_array_parallelism=cfg.jobs, gpus_per_node=cfg.slurm_gpus_per_task,
                                   **({"slurm_partition": cfg.slurm_partition} if cfg.slurm_partition else {}))
    return executor


def submit(executor, units: list[Unit], cfg) -> list:
    """Submit units (on SLURM as one job array) -> their submitit jobs."""
    calls = [(run_in_worker, cfg.num_threads, cfg.device, unit.fn, *unit.args) for unit in units]
    if cfg.launcher != "slurm":
        return [executor.submit(*call) for call in calls]
    with executor.batch():
        return [executor.submit(*call) for call in calls]


def launch(cfg, units: list[Unit], log_dir: Path, worker_processes: bool = False) -> list:
    """Run `units` with `cfg.launcher`; their return values in order. Inline they run one after
    another, or in `cfg.jobs` worker processes where the caller asks for `worker_processes`
    (`_run_inline`). Raises UnitsFailed after every unit has finished or failed."""
    if cfg.launcher == "inline":
        return _run_inline(cfg, units, worker_processes)
    executor = executor_for(cfg, Path(log_dir))
    window = cfg.jobs if cfg.launcher == "local" else len(units)  # SLURM throttles its own array
    jobs: dict[int, Any] = {}
    pending = list(range(len(units)))
    try:
        with progress(None, cfg.quiet, total=len(units), desc=f"units ({cfg.launcher})") as bar:
            while pending or any(not job.done() for job in jobs.values()):
                running = sum(not job.done() for job in jobs.values())
                batch = pending[:max(0, window - running)]
                if batch:
                    jobs |= dict(zip(batch, submit(executor, [units[i] for i in batch], cfg)))
                    pending = pending[len(batch):]
                time.sleep(POLL_SECONDS)
                bar.n = sum(job.done() for job in jobs.values())
                bar.refresh()
    except KeyboardInterrupt:  # local units die with the run; SLURM jobs go on (a rerun collects them)
        if cfg.launcher == "local":
            for job in jobs.values():
                job.cancel(check=False)
        raise
    results, failures = [], []
    for i, unit in enumerate(units):
        try:
            results.append(jobs[i].result())
        except Exception as error:  # noqa: BLE001 - any failure of a unit is reported, not raised alone
            results.append(None)
            summary = str(error).strip().splitlines()
            failures.append((unit.name, summary[-1] if summary else type(error).__name__, str(jobs[i].paths.stderr)))
    if failures:
        raise UnitsFailed(failures)
    return results
