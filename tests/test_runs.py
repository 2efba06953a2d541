"""Run plumbing: atomic writes, JSON conversion, criteria, resumable checkpoints, seeding."""

import errno
import io
import json
import os
from unittest import mock

import numpy as np
import pytest
import torch

from common.cli import UnreadableFile, read_npz
from common.runs import (StagedOutputs, atomic_write_bytes, criterion, format_criteria_table,
                         load_checkpoint_if_matches, load_or_train_batch, numpy_rng, read_checkpoint, read_json,
                         save_checkpoint, seed_everything, to_jsonable, torch_generator, write_json)


def test_interrupted_write_leaves_previous_file_intact(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"value": 1})

    def crash(*_args):
        raise KeyboardInterrupt  # the process is interrupted between writing and renaming

    with mock.patch("common.runs.os.replace", side_effect=crash), pytest.raises(KeyboardInterrupt):
        write_json(path, {"value": 2})
    assert json.loads(path.read_text()) == {"value": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left behind


def test_atomic_write_creates_folders(tmp_path):
    atomic_write_bytes(tmp_path / "a" / "b.bin", b"xyz")
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"xyz"


def test_to_jsonable_handles_numpy_torch_and_nan():
    obj = {"a": np.float32(1.5), "b": torch.tensor([1.0, float("nan")]), "c": (np.int64(2), np.bool_(True))}
    assert to_jsonable(obj) == {"a": 1.5, "b": [1.0, None], "c": [2, True]}


def test_criterion_fails_on_missing_or_nan():
    assert criterion("x", "> 1", 2.0, lambda m: m > 1).passed
    assert not criterion("x", "> 1", 0.5, lambda m: m > 1).passed
    assert not criterion("x", "< 1", float("nan"), lambda m: m < 1).passed
    assert not criterion("x", "< 1", None, lambda m: m < 1).passed
    table = format_criteria_table([criterion("x", "> 1", 2.0, lambda m: m > 1),
                                   criterion("y", "< 1", None, lambda m: m < 1)])
    assert "PASS" in table and "FAIL" in table and "n/a" in table


def test_checkpoint_resume_requires_matching_config(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"unit_config": to_jsonable({"lr": 0.1, "seed": 0}), "state": torch.ones(2)})
    assert load_checkpoint_if_matches(path, {"lr": 0.1, "seed": 0})["state"].sum() == 2
    assert load_checkpoint_if_matches(path, {"lr": 0.2, "seed": 0}) is None
    assert load_checkpoint_if_matches(tmp_path / "missing.pt", {"lr": 0.1}) is None


def test_batch_resume_loads_all_or_retrains_all_and_writes_only_missing_files(tmp_path):
    paths, units = [tmp_path / "a.pt", tmp_path / "b.pt"], [{"m": 0}, {"m": 1}]
    calls = []

    def train():
        calls.append(1)
        return [{"value": 10 * len(calls)}, {"value": 10 * len(calls) + 1}]

    assert [p["value"] for p in load_or_train_batch(paths, units, train)] == [10, 11]
    assert [p["value"] for p in load_or_train_batch(paths, units, train)] == [10, 11] and len(calls) == 1
    paths[1].unlink()
    mtime = paths[0].stat().st_mtime_ns
    assert [p["value"] for p in load_or_train_batch(paths, units, train)] == [10, 21] and len(calls) == 2
    assert paths[0].stat().st_mtime_ns == mtime and load_checkpoint_if_matches(paths[1], units[1])["value"] == 21


def test_seed_everything_is_deterministic():
    seed_everything(3)
    a = (torch.rand(3), np.random.rand(2))
    seed_everything(3)
    b = (torch.rand(3), np.random.rand(2))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


# ----------------------------------------------------------------------------------------------
# checkpoints carry a checksum; seed streams; staged outputs


def test_corrupted_checkpoint_is_reported_by_name_and_not_used(tmp_path, capsys):
    path = tmp_path / "unit.pt"
    save_checkpoint(path, {"unit_config": {"seed": 0}, "state": torch.arange(1000.0)})
    raw = bytearray(path.read_bytes())
    raw[-200] ^= 0xFF  # one flipped byte inside the tensor data
    path.write_bytes(bytes(raw))
    assert load_checkpoint_if_matches(path, {"seed": 0}) is None
    err = capsys.readouterr().err
    assert str(path) in err and "checksum" in err and len(err.strip().splitlines()) == 1


def test_truncated_or_foreign_checkpoint_is_not_used(tmp_path, capsys):
    path = tmp_path / "unit.pt"
    save_checkpoint(path, {"unit_config": {}})
    path.write_bytes(path.read_bytes()[:-10])
    assert read_checkpoint(path) is None
    buffer = io.BytesIO()
    torch.save({"unit_config": {}}, buffer)  # a plain torch.save file: no checksum to verify
    path.write_bytes(buffer.getvalue())
    assert read_checkpoint(path) is None
    assert capsys.readouterr().err.count(str(path)) == 2


def test_batch_resume_retrains_when_one_checkpoint_is_corrupted(tmp_path):
    paths, units = [tmp_path / "a.pt", tmp_path / "b.pt"], [{"m": 0}, {"m": 1}]
    calls = []

    def train():
        calls.append(1)
        return [{"value": 1}, {"value": 2}]

    load_or_train_batch(paths, units, train)
    paths[0].write_bytes(paths[0].read_bytes()[:-1] + b"?")
    assert [p["value"] for p in load_or_train_batch(paths, units, train)] == [1, 2] and len(calls) == 2
    assert read_checkpoint(paths[0])["value"] == 1  # rewritten intact


def test_named_seed_streams_never_coincide():
    """`--seeds 0 10` used to let `10 + offset` meet `0 + offset'`; named streams cannot collide."""
    draws = {(seed, purpose, key): numpy_rng(seed, purpose, key).integers(2**62)
             for seed in (0, 1, 10, 1000) for purpose in ("data", "init", "noise") for key in (0, 1, 1000)}
    assert len(set(draws.values())) == len(draws)
    assert torch.equal(torch.rand(4, generator=torch_generator(3, "data")),
                       torch.rand(4, generator=torch_generator(3, "data")))
    assert not torch.equal(torch.rand(4, generator=torch_generator(3, "data")),
                           torch.rand(4, generator=torch_generator(3, "init")))


def test_staged_outputs_replace_all_files_at_once_and_keep_the_others(tmp_path):
    write_json(tmp_path / "results" / "metrics.json", {"old": 1})
    write_json(tmp_path / "results" / "sweep.json", {"sweep": 1})  # another script's file
    staged = StagedOutputs(tmp_path)
    write_json(staged.results / "metrics.json", {"new": 1})
    (staged.plots).mkdir(parents=True)
    (staged.plots / "a.png").write_bytes(b"png")
    assert read_json(tmp_path / "results" / "metrics.json") == {"old": 1}  # nothing moves before publish()
    published = staged.publish()
    assert sorted(p.relative_to(tmp_path).as_posix() for p in published) == ["plots/a.png", "results/metrics.json"]
    assert read_json(tmp_path / "results" / "metrics.json") == {"new": 1}
    assert read_json(tmp_path / "results" / "sweep.json") == {"sweep": 1}
    assert not staged.staging.exists()


def test_staged_outputs_of_two_live_runs_in_one_folder_do_not_touch_each_other(tmp_path):
    """A sweep and a run staging in one output folder at once: each publishes only its own files;
    the staging folder of a process that is gone (a crashed run) is cleaned up."""
    other = tmp_path / ".staging" / str(os.getppid())  # a live process: stands for the other run
    write_json(other / "results" / "sweep.json", {"sweep": 1})
    crashed = tmp_path / ".staging" / "999999999"  # no such process
    write_json(crashed / "results" / "metrics.json", {"stale": 1})
    staged = StagedOutputs(tmp_path)
    assert not crashed.exists() and (other / "results" / "sweep.json").exists()
    write_json(staged.results / "metrics.json", {"new": 1})
    assert [p.relative_to(tmp_path).as_posix() for p in staged.publish()] == ["results/metrics.json"]
    assert (other / "results" / "sweep.json").exists() and not (tmp_path / "results" / "sweep.json").exists()


@pytest.mark.parametrize("in_the_way", ["plots/a.png", "results"], ids=["a folder at a file", "a file at a folder"])
def test_publish_moves_nothing_when_a_destination_is_blocked(tmp_path, in_the_way):
    """A path in the way of one staged file (made after validation) stops publish() before any file
    moves, naming that path: never a half-published folder."""
    staged = StagedOutputs(tmp_path)
    write_json(staged.results / "metrics.json", {"new": 1})
    write_json(staged.plots / "a.png", {"png": 1})
    blocker = tmp_path / in_the_way
    if blocker.suffix:
        blocker.mkdir(parents=True)
    else:
        blocker.write_text("in the way\n")
    with pytest.raises(OSError) as err:
        staged.publish()
    assert err.value.filename == str(tmp_path / in_the_way)
    assert not (tmp_path / "results" / "metrics.json").exists() and not (tmp_path / "plots" / "a.png").is_file()
    assert (staged.results / "metrics.json").exists() and (staged.plots / "a.png").exists()  # still staged


def test_a_full_disk_names_the_file_being_written(tmp_path):
    def full(_fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as write() / fsync() raise it: no file name

    with mock.patch("common.runs.os.fsync", side_effect=full), pytest.raises(OSError) as err:
        write_json(tmp_path / "metrics.json", {"value": 1})
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(tmp_path / "metrics.json")
    assert list(tmp_path.iterdir()) == []  # no temporary file left


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated"], ids=["empty", "truncated"])
def test_unreadable_saved_files_are_named(tmp_path, content):
    for name in ("arrays.npz", "metrics.json"):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(UnreadableFile, match=f"{tmp_path / name} is unreadable"):
            (read_npz if name.endswith(".npz") else read_json)(tmp_path / name)
