"""The experiment READMEs' tables (`common.readme_tables`, written by `python -m common.report`): up to date
with the committed json, and rewritten only between their markers."""

import json
import shutil

import pytest

from common import readme_tables, report
from common.output_folder import REPO_ROOT


def test_experiment_readme_tables_are_up_to_date():
    stale = readme_tables.stale_readmes(REPO_ROOT)
    assert not stale, (f"{[str(p.relative_to(REPO_ROOT)) for p in stale]}: a table differs from the committed json: "
                       "run `python -m common.report` and commit")


def _copy_repo(tmp_path):
    """The experiment READMEs and every json under their folders, copied into `tmp_path`."""
    for relpath in readme_tables.TABLES:
        folder = (REPO_ROOT / relpath).parent
        for path in [REPO_ROOT / relpath, *folder.glob("**/results/*.json")]:
            target = tmp_path / path.relative_to(REPO_ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    return tmp_path


def _edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_a_changed_json_is_caught_and_rewritten_between_the_markers_only(tmp_path):
    root = _copy_repo(tmp_path)
    exp1 = root / "exp1_spectral_cliff"
    readme = exp1 / "README.md"
    before = readme.read_text()
    _edit_json(exp1 / "results" / "metrics.json", lambda m: m.update(runtime_seconds=1234.4))
    _edit_json(exp1 / "results" / "sweep.json", lambda s: s["members"][0].update(rmse_1step_over_flat=9.87654))
    assert readme_tables.stale_readmes(root) == [readme]
    assert readme_tables.stale_readmes(root, write=True) == [readme]
    assert readme_tables.stale_readmes(root) == []
    after = readme.read_text()
    assert "| `runtime_seconds` | | 1234 | 879 | 889 |" in after
    assert "| Flat | 0 | 22.5 | 2.04e+03 | 1.000 | 0.0092 | 9.88 | 0.103 | no | 55% / 45% / 41% / 50% |" in after
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert len(changed) == 2 and len(before.splitlines()) == len(after.splitlines())


def test_a_hand_edit_inside_the_markers_is_caught(tmp_path):
    root = _copy_repo(tmp_path)
    readme = root / "exp2_funnel_heatmap" / "README.md"
    text = readme.read_text()
    readme.write_text(text.replace("| HELM basin coverage (worst seed) | >= 90 % | 100 | PASS |",
                                   "| HELM basin coverage (worst seed) | >= 90 % | 99 | PASS |"))
    assert readme_tables.stale_readmes(root) == [readme]
    readme_tables.stale_readmes(root, write=True)
    assert readme.read_text() == text


def test_report_writes_and_checks_the_tables(tmp_path, capsys):
    """`python -m common.report` is the one command: it writes the tables, and `--check` fails on a stale one."""
    root = _copy_repo(tmp_path)
    (root / "README.md").write_text(f"# Title\n\n{report.BEGIN}\n{report.END}\n")
    assert report.main(["--root", str(root)]) == 0
    assert report.main(["--root", str(root), "--check"]) == 0
    _edit_json(root / "exp2_funnel_heatmap" / "results" / "metrics.json",
               lambda m: m["criteria"][0].update(measured=61.234))
    capsys.readouterr()
    assert report.main(["--root", str(root), "--check"]) == 1
    assert "the tables of exp2_funnel_heatmap/README.md are out of date" in capsys.readouterr().err
    assert report.main(["--root", str(root)]) == 0
    assert "| HELM basin coverage (mean over seeds) | > 60 % | 61.23 | PASS |" in (
        root / "exp2_funnel_heatmap" / "README.md").read_text()


def test_committed_numbers_the_readmes_show():
    """The numbers an issue found stale: each now read from the json."""
    m1 = json.loads((REPO_ROOT / "exp1_spectral_cliff/results/metrics.json").read_text())
    control = readme_tables.exp1_control(REPO_ROOT)
    seconds = m1["variants"]["flat"]["control"]["50"]["closed_loop"]["plan_seconds_per_episode"]
    assert f"| 50 | flat | 1% | 27% | 1.21 | 0.277 | 1.89, 0.43 | 114 | 174 | {seconds:.2g} |" in control
    assert f"| `runtime_seconds` | | {m1['runtime_seconds']:.0f} |" in readme_tables.exp1_seed_sets(REPO_ROOT)


@pytest.mark.parametrize("text,message", [
    ("no markers at all\n", "missing"),
    (readme_tables.begin_marker("exp2.nonexistent") + "\n" + readme_tables.end_marker("exp2.nonexistent"), "unknown"),
])
def test_missing_or_unknown_markers_are_an_error(text, message):
    renderers = {"exp2.criteria": readme_tables.exp2_criteria}
    with pytest.raises(ValueError, match=message):
        readme_tables.updated_text(text, renderers, REPO_ROOT)


def test_unpaired_markers_are_an_error():
    renderers = {"exp2.criteria": readme_tables.exp2_criteria}
    text = readme_tables.end_marker("exp2.criteria") + "\n" + readme_tables.begin_marker("exp2.criteria") + "\n"
    with pytest.raises(ValueError, match="pairs"):
        readme_tables.updated_text(text, renderers, REPO_ROOT)
