"""Config fields: `param(default, help, role, ...)` declares one; its role derives a config's identity.

- `help` becomes the field's `--help` text (`common.cli_parse`);
- `role` says what the field changes: "model" (what a trained model depends on: a checkpoint's
  identity), "eval" (what the measurements depend on, given the models) or "run" (only how or
  where a run is shown: never a number). Checkpoint identity, the run folder's hash and "is this
  the full default run" are all derived from these roles, never from hand-kept lists;
- `ge` / `gt` / `le` / `choices` bound the value (each element of a list); `check_bounds` checks them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import field

ROLES = ("model", "eval", "run")
TOO_LARGE = "larger values need hours or more memory than this machine has"


class ConfigError(ValueError):
    """A config value is invalid; the message is one line meant for the user."""


def require(ok: bool, message: str) -> None:
    """Raise ConfigError(message) unless `ok`."""
    if not ok:
        raise ConfigError(message)


def short(path) -> str:
    """A path (or a name) for a one-line message: a text of absurd length is cut."""
    text = str(path)
    return text if len(text) <= 120 else f"{text[:60]}...{text[-20:]} ({len(text)} characters)"


def param(default, help: str, role: str, *, ge=None, gt=None, le=None, choices=None, le_why: str = TOO_LARGE):
    """A dataclass field with a default (lists are copied), help text, role and bounds (`le_why`
    says why values above `le` are refused)."""
    assert role in ROLES, role
    meta = {"help": help, "role": role, "ge": ge, "gt": gt, "le": le, "choices": choices, "le_why": le_why}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def check_bounds(f: dataclasses.Field, value) -> None:
    """ConfigError unless `value` (each element of a list) is within the bounds `param` declared for `f`."""
    m, flag = f.metadata, "--" + f.name.replace("_", "-")
    values = value if isinstance(value, list) else [value]
    require(len(values) > 0, f"{flag} must not be empty")
    # a list field is a set of things to run or measure: a repeated value would be run twice or collapse
    repeated = [v for i, v in enumerate(values) if v in values[:i]]
    require(not repeated, f"{flag} lists {', '.join(map(str, repeated))} more than once (each value is run once)")
    for v in values:
        if isinstance(v, float):
            require(math.isfinite(v), f"{flag} must be a finite number, got {v}")
        if m["choices"] is not None:
            require(v in m["choices"], f"{flag}: unknown value {v!r} (choose from {', '.join(map(str, m['choices']))})")
        if m["ge"] is not None:
            require(v >= m["ge"], f"{flag} must be >= {m['ge']}, got {v}")
        if m["gt"] is not None:
            require(v > m["gt"], f"{flag} must be > {m['gt']}, got {v}")
        if m["le"] is not None:
            require(v <= m["le"], f"{flag} must be <= {m['le']}, got {v} ({m['le_why']})")


def fields_with_role(cfg_or_cls, *roles: str) -> list[str]:
    """Names of the fields whose declared role is one of `roles`, in declaration order."""
    return [f.name for f in dataclasses.fields(cfg_or_cls) if f.metadata["role"] in roles]


def identity(cfg, *roles: str) -> dict:
    """{field: value} of the fields with these roles (JSON-safe): what a saved unit depends on."""
    return json.loads(json.dumps({name: getattr(cfg, name) for name in fields_with_role(cfg, *roles)}))


def identity_hash(identity_dict: dict, length: int = 8) -> str:
    """Short hash of an identity (a JSON-safe dict: a config's, a unit's): the first `length` hex
    digits of the SHA-1 of its JSON with sorted keys. The one hash of run folders and unit names."""
    return hashlib.sha1(json.dumps(identity_dict, sort_keys=True).encode()).hexdigest()[:length]


def config_hash(cfg) -> str:
    """Short hash of every field that changes a number (roles model and eval)."""
    return identity_hash(identity(cfg, "model", "eval"))
