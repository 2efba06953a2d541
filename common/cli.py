"""What a command prints when it cannot finish: one line per fault, never a traceback.

Every entry script's `main` is wrapped by `command(prog)`, the one place where faults after
validation are turned into a line and an exit code: failed launcher units (the finished ones are
checkpointed), a saved file that cannot be read (named, with what to do), a disk that is full or a
path in the way (nothing published: outputs are staged and moved at the very end), and Ctrl-C.
Bad input never gets here: `common.cli_parse.parse` refuses it before any work (exit 2).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

RESUMES = "nothing was published; the same command again resumes from the checkpoints"


class UnreadableFile(Exception):
    """A saved file (results, arrays) is truncated or corrupted; the message names it and the remedy."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path} is unreadable ({reason}): restore it (git checkout) or delete it and rerun the "
                         "command that wrote it")


class UnitsFailed(RuntimeError):
    """Some units raised or died; `failures` holds (unit name, error, log path) per failed unit."""

    def __init__(self, failures: list[tuple[str, str, str]]):
        self.failures = failures
        super().__init__("\n".join(f"unit {name} failed: {error} (log: {log})" for name, error, log in failures))


def read_json(path: Path) -> Any:
    """The parsed JSON file at `path`; UnreadableFile when it does not parse."""
    try:
        return json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise UnreadableFile(path, f"{type(err).__name__}: {err}") from None


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of the .npz at `path`, read now (np.load is lazy, so a truncated member would
    fail later, mid-plot); UnreadableFile when the archive is broken."""
    try:
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    except (ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise UnreadableFile(path, f"{type(err).__name__}: {err}" if str(err) else type(err).__name__) from None


@contextlib.contextmanager
def naming(path: Path):
    """Re-raise an OSError of the block with `path` as its file: a full disk fails in write() or
    fsync(), which name no file, and the user needs to know where."""
    try:
        yield
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(err.filename or path)) from err


def _fault_line(err: OSError) -> str:
    """One line for an I/O fault after validation: what happened, to which file, what to do."""
    where = f" ({err.filename})" if err.filename else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on device{where}; {RESUMES} once space is freed"
    return f"{err.strerror or err}{where}; {RESUMES} once that path is fixed"


def command(prog: str) -> Callable:
    """Decorator for an entry script's `main(argv) -> exit code`: faults become one line on stderr."""
    def wrap(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
        @functools.wraps(main)
        def run(argv: list[str] | None = None) -> int:
            try:
                return main(argv)
            except UnitsFailed as failed:
                print(f"{prog}: {failed}\nthe finished units are checkpointed: the same command again redoes only "
                      "the failed ones", file=sys.stderr)
                return 1
            except UnreadableFile as err:
                print(f"{prog}: error: {err}", file=sys.stderr)
                return 1
            except OSError as err:
                print(f"{prog}: error: {_fault_line(err)}", file=sys.stderr)
                return 1
            except KeyboardInterrupt:
                print(f"{prog}: interrupted; {RESUMES}", file=sys.stderr)
                return 130
        return run
    return wrap
