"""Experiment 3's scripts: run_experiment.py (smoke runs per track, parallel units, bad input) and
sweep_layouts.py."""

import json
import subprocess
import sys

import numpy as np
import pytest

from exp3_planning_efficiency import plots, run_experiment

PLOTS = ["exp3_pareto.png", "exp3_success_vs_horizon.png", "exp3_training_curves.png", "exp3_world_model.png"]
ALL_PLANNERS = ["helm", "helm_no_coarse", "helm_no_spectral", "helm_no_hf", "cem", "flat", "random", "bfs"]
SHRINK = ["--num-train-layouts", "4", "--walks-per-layout", "5", "--model-train-steps", "5",
          "--energy-train-steps", "5", "--planning-horizons", "10", "--num-eval-episodes", "2",
          "--num-test-layouts", "2", "--num-fourrooms-layouts", "2", "--limited-data-walks", "20",
          "--budget-scales", "2"]


# ----------------------------------------------------------------------------------------------
# smoke runs


def _metrics(out):
    return json.loads((out / "results" / "metrics.json").read_text())


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp3_quick")
    assert run_experiment.main(["--quick", "--out-dir", str(out), "--quiet"]) == 0
    return out


@pytest.mark.slow
def test_quick_run_writes_plots_and_metrics_for_every_track(quick_run):
    for name in PLOTS:
        assert (quick_run / "plots" / name).stat().st_size > 10_000
    m = _metrics(quick_run)
    assert {"experiment", "config", "seeds", "runtime_seconds", "environment", "criteria", "tracks", "models"} <= set(m)
    assert set(m["tracks"]) == {"unseen-layouts", "fourrooms", "limited-data-100"}
    assert len(m["criteria"]) == 9
    for c in m["criteria"]:
        assert {"name", "target", "measured", "passed"} <= set(c) and isinstance(c["passed"], bool)
    for track, entry in m["tracks"].items():
        expected = ALL_PLANNERS if track == "unseen-layouts" else ["helm", "helm_no_coarse", "cem", "random", "bfs"]
        assert set(entry["success"]) == set(expected), track
        for planner, rows in entry["success"].items():
            assert set(rows) == {str(T) for T in entry["horizons"]} == {"10", "50"}
            for row in rows.values():
                assert 0.0 <= row["success"] <= 1.0 and row["episodes"] == 2 * len(m["seeds"])
                assert row["ci95"][0] <= row["success"] <= row["ci95"][1]
        assert entry["success"]["bfs"]["50"]["success"] == 1.0
        assert entry["success"]["bfs"]["50"]["path_length_over_optimal"] == 1.0
        for planner, per_T in entry["pareto"].items():  # the default budget plus each --budget-scales
            assert set(per_T) == {"50"} and len(per_T["50"]) == 2
    arrays = dict(np.load(quick_run / "results" / "exp3_arrays.npz"))
    assert arrays["spectral_loss_layouts_seed0"].shape == (m["config"]["model_train_steps"],)
    rebuilt = plots.make_plots(quick_run / "results" / "metrics.json", arrays, quick_run / "replot")
    assert [p.name for p in rebuilt] == sorted(PLOTS, key=[p.name for p in rebuilt].index)
    assert all(p.exists() for p in rebuilt)


@pytest.mark.slow
@pytest.mark.parametrize("track", ["unseen-layouts", "limited-data", "fourrooms"])
def test_each_track_runs_alone_from_the_command_line(track, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, run_experiment.__file__, "--quick", "--quiet", *SHRINK, "--tracks", track,
                           "--out-dir", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    tracks = _metrics(out)["tracks"]
    assert set(tracks) == {"limited-data-20" if track == "limited-data" else track}
    assert "success rate" in proc.stdout


@pytest.mark.slow
def test_parallel_units_give_the_same_results(tmp_path):
    """--jobs 2 runs the units in worker processes, --launcher local in submitit subprocesses; every
    measured number equals the serial run's."""
    runs = {}
    for name, flags in {"serial": [], "jobs": ["--jobs", "2"], "local": ["--launcher", "local", "--jobs", "2"]}.items():
        out = tmp_path / name
        assert run_experiment.main(["--quick", "--quiet", *SHRINK, "--tracks", "unseen-layouts", "--seeds", "0", "1",
                                    "--planners", "helm", "cem", *flags, "--out-dir", str(out)]) == 0
        runs[name] = _metrics(out)
    def without_seconds(d):
        return {k: without_seconds(v) if isinstance(v, dict) else v for k, v in d.items() if "seconds" not in k}
    for name in ("jobs", "local"):
        assert without_seconds(runs[name]["models"]) == without_seconds(runs["serial"]["models"]), name
        assert without_seconds(runs[name]["tracks"]) == without_seconds(runs["serial"]["tracks"]), name


@pytest.mark.slow
def test_worker_processes_end_when_the_main_process_is_killed(tmp_path):
    """--jobs 2: SIGKILL of the main process must not leave its workers training as orphans."""
    import os
    import signal
    import time
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, run_experiment.__file__, "--quick", "--quiet", "--jobs", "2",
                             "--model-train-steps", "5000", "--out-dir", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    children = []
    while len(children) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
        children = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                                    text=True).stdout.split()]
    assert len(children) >= 2, "the workers did not start"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    def alive():
        return [pid for pid in children if os.path.exists(f"/proc/{pid}") and
                open(f"/proc/{pid}/stat").read().split()[2] != "Z"]
    deadline = time.monotonic() + 30  # a worker still importing torch exits once its initializer has run
    while alive() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not alive(), f"orphaned workers still running: {alive()}"


# ----------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("flags", [["--tracks", "mars"], ["--planning-horizons", "0"],
                                   ["--planning-horizons", "10", "-5"], ["--coarse-stride", "1"],
                                   ["--replan-every", "0"], ["--cem-elite-frac", "0"], ["--hf-noise-sigma", "0"],
                                   ["--walk-length", "2"], ["--planners", "dijkstra"], ["--gumbel-tau", "-1"],
                                   ["--cem-horizon", "0"], ["--num-train-layouts", "ten"], ["--budget-scales", "0"]])
def test_bad_input_exits_2_with_one_line(flags, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        run_experiment.main([*flags, "--quiet", "--out-dir", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "error" in err
    assert not out.exists()


@pytest.mark.slow
def test_layout_sweep_keeps_the_total_walks_and_replots_from_its_json(tmp_path):
    from exp3_planning_efficiency import sweep_layouts
    out = tmp_path / "out"
    flags = ["--quick", "--quiet", *SHRINK, "--layout-sweep", "1", "4", "--out-dir", str(out)]
    assert sweep_layouts.main(flags) == 0
    saved = json.loads((out / "results" / "layout_sweep.json").read_text())
    assert [(p["num_train_layouts"], p["walks_per_layout"]) for p in saved["points"]] == [(1, 20), (4, 5)]
    for point in saved["points"]:
        assert set(point["success"]) == {"helm", "helm_no_coarse", "cem", "bfs"}
        assert point["success"]["bfs"]["10"]["success"] == 1.0
        assert 0 <= point["quality"]["energy_spearman"] <= 1 or np.isnan(point["quality"]["energy_spearman"])
    plot = out / "plots" / "exp3_layout_sweep.png"
    assert plot.stat().st_size > 10_000
    replot = plots.plot_layout_sweep(saved, tmp_path / "replot.png")  # from the json alone
    assert replot.stat().st_size > 10_000
