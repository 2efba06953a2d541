"""Every command the READMEs show works from the folder the blocks before it leave the reader in.

Each README's ```bash blocks are read from the repository root in order, following `cd`. Every
`python <script>` / `python -m common.*` line is run with `--dry-run` (parse + validate, then exit 0
with nothing written; `--check` for the report, `--help` for scripts without a config), so a flag a
script does not have, a value it refuses or a wrong folder fails here. Installs and the test runner
itself are only checked for the files they name. The commands of one README run one after another in
one fresh Python process (this file run as a script): each is executed as `__main__` from its folder,
so torch and the experiment packages are imported once per README, not once per command.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import runpy
import shlex
import subprocess
import sys
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


def run_in_this_process(cwd: str, argv: list[str]) -> tuple[int, str]:
    """(exit code, stderr) of `python *argv` run from `cwd` as `__main__` inside this process."""
    os.chdir(cwd)
    stderr, code = io.StringIO(), 0
    module = argv[2] if argv[1] == "-m" else None
    sys.argv = argv[2:] if module else argv[1:]
    sys.path[0] = cwd if module else str(Path(argv[1]).resolve().parent)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
        try:
            if module:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(argv[1], run_name="__main__")
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        except Exception as error:  # noqa: BLE001 - reported like a crashed command
            code, _ = 1, print(f"{type(error).__name__}: {error}", file=stderr)
    return code, stderr.getvalue()


@pytest.mark.parametrize("readme", READMES)
def test_every_documented_command_runs_from_where_the_reader_is(readme, repo_files):
    runs = planned_runs(readme)
    assert runs, f"{readme} shows no python command"
    before = repo_files()
    commands = [(str(cwd), ["python", *checked_argv(words)[1:]]) for cwd, words in runs]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    batch = subprocess.run([sys.executable, __file__], input=json.dumps(commands), capture_output=True, text=True,
                           env=env, timeout=300)
    assert batch.returncode == 0, f"{readme}: the command runner crashed: {batch.stderr[-1500:]}"
    results = json.loads(batch.stdout.splitlines()[-1])
    for (cwd, words), (code, stderr) in zip(runs, results):
        assert code == 0, f"{readme}: `{' '.join(words)}` in {cwd}: {stderr[-1500:]}"
    assert len(results) == len(runs)
    assert repo_files() == before, f"{readme}: checking its commands wrote into the repository"


if __name__ == "__main__":  # the runner: [(folder, argv), ...] as json on stdin -> [(code, stderr), ...] on stdout
    results = [run_in_this_process(cwd, argv) for cwd, argv in json.loads(sys.stdin.read())]
    print(json.dumps(results))
