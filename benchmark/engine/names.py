"""Run names: which names a leaderboard run may have, and any name as a safe file-name part.

``check_run_name`` is the rule for a run's name (``--name``, a model's own name): one line of
printable text that is not a path (no '/' or '\\', not '.' or '..'), 1..200 characters.

``slug`` turns any name (run, protocol, evaluator) into one file-name component for
``leaderboard --write``: the characters ``A-Z a-z 0-9 . _ + - @`` are kept, every other one
becomes '_', a leading '.' becomes '_' (no hidden files, no '..'), and the result is at most
``SLUG_MAX`` characters. Whenever that changed the name, or the name already looks like a
changed one (ends in '-' and ``HASH_DIGITS`` hex digits), '-' and the first ``HASH_DIGITS``
hex digits of the SHA-256 of the original (UTF-8) are appended. So a name comes through
unchanged exactly when it was already safe, and two different names share a slug only if
their hashes collide (48 bits).
"""
from __future__ import annotations

import hashlib
import re
import unicodedata

from benchmark.errors import ConfigError

MAX_RUN_NAME = 200
SLUG_MAX = 80        # three slugs and a level stay well inside a file name's 255 bytes
HASH_DIGITS = 12
_UNSAFE = re.compile(r"[^A-Za-z0-9._+@-]")
_HASHED = re.compile(rf"-[0-9a-f]{{{HASH_DIGITS}}}$")
_SHOWN = 60  # characters of a bad name an error message shows


def _shown(name: str) -> str:
    """The name as an error shows it: repr (control characters escaped, so one line), cut."""
    return repr(name if len(name) <= _SHOWN else name[:_SHOWN] + "...")


def check_run_name(name: str) -> str:
    """``name`` when it may name a leaderboard run; else a ConfigError (one line) saying why."""
    if not isinstance(name, str):
        raise ConfigError(f"run name must be text, got {type(name).__name__} {name!r}")
    if not name:
        raise ConfigError("run name is empty")
    if len(name) > MAX_RUN_NAME:
        raise ConfigError(f"run name {_shown(name)} is {len(name)} characters long; at most {MAX_RUN_NAME}")
    if "/" in name or "\\" in name:
        raise ConfigError(f"run name {_shown(name)} holds a path separator ('/' or '\\'); leaderboard files "
                          "are named after runs")
    control = next((c for c in name if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        raise ConfigError(f"run name {_shown(name)} holds the control character {control!r}")
    if name in (".", ".."):
        raise ConfigError(f"run name {name!r} is not a name")
    return name


def slug(name: str) -> str:
    """``name`` as a safe, bounded file-name component (rules in the module notes)."""
    name = str(name)
    safe = _UNSAFE.sub("_", name)
    if safe.startswith("."):
        safe = "_" + safe[1:]
    if safe == name and name and len(name) <= SLUG_MAX and not _HASHED.search(name):
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_DIGITS]
    return f"{safe[:SLUG_MAX - HASH_DIGITS - 1] or '_'}-{digest}"
