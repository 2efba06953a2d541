"""Every command the READMEs show works from the folder the blocks before it leave the reader in.

Each README's ```bash blocks are read from the repository root in order, following `cd`. Every
`python <script>` / `python -m common.*` line is run with `--dry-run` (parse + validate, then exit 0
with nothing written; `--check` for the report, `--help` for scripts without a config), so a flag a
script does not have, a value it refuses or a wrong folder fails here. Installs and the test runner
itself are only checked for the files they name.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from common.output_folder import REPO_ROOT

READMES = ["README.md", "exp1_spectral_cliff/README.md", "exp2_funnel_heatmap/README.md",
           "exp3_planning_efficiency/README.md"]
pytestmark = pytest.mark.slow


def shell_commands(markdown: str) -> list[str]:
    """The commands of every ```bash block, continuation lines joined, comments and prompts dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, flags=re.S):
        block = block.replace("\\\n", " ")
        for line in block.splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("$ "):
                line = line[2:]
            if line and not line.startswith("#"):
                commands += [part.strip() for part in line.split("&&")]
    return commands


def planned_runs(readme: str) -> list[tuple[Path, list[str]]]:
    """(folder, argv) of every command to run, following `cd` from the repository root."""
    cwd, runs = REPO_ROOT, []
    for command in shell_commands((REPO_ROOT / readme).read_text()):
        words = shlex.split(command)
        if words[0] == "cd":
            cwd = (cwd / words[1]).resolve()
            assert cwd.is_dir(), f"{readme}: `{command}` leaves for a folder that does not exist"
        elif words[0] in ("pip", "source") or words[:3] == ["python", "-m", "venv"]:
            named = [w for w in words if w.endswith(".txt")]
            assert all((cwd / w).is_file() for w in named), f"{readme}: `{command}` names a missing file"
        elif words[:3] == ["python", "-m", "pytest"]:
            args = words[3:]
            targets = [w for i, w in enumerate(args)
                       if not w.startswith("-") and (i == 0 or args[i - 1] not in ("-m", "-k", "-n"))]
            assert all((cwd / w.split("::")[0]).exists() for w in targets), f"{readme}: `{command}`"
        elif words[0] == "python":
            runs.append((cwd, words))
        else:
            raise AssertionError(f"{readme}: the test does not know how to check `{command}`")
    return runs


def checked_argv(words: list[str]) -> list[str]:
    if words[1:3] == ["-m", "common.report"]:
        return [*words, "--check"]
    if words[1].startswith("tests/") or "--help" in words:
        return words if "--help" in words else [*words, "--help"]
    return words if "--dry-run" in words else [*words, "--dry-run"]


@pytest.mark.parametrize("readme", READMES)
def test_every_documented_command_runs_from_where_the_reader_is(readme, repo_files):
    runs = planned_runs(readme)
    assert runs, f"{readme} shows no python command"
    before = repo_files()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}

    def check(run):  # independent: a dry run writes nothing, so they run side by side (one per CPU)
        cwd, words = run
        return subprocess.run([sys.executable, *checked_argv(words)[1:]], cwd=cwd, capture_output=True, text=True,
                              env=env, timeout=120)
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        results = list(pool.map(check, runs))
    for (cwd, words), result in zip(runs, results):
        assert result.returncode == 0, f"{readme}: `{' '.join(words)}` in {cwd}: {result.stderr[-1500:]}"
    assert repo_files() == before, f"{readme}: checking its commands wrote into the repository"
