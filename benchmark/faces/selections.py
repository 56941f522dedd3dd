"""Which methods of a dataset reader a protocol may name: its selections.

A protocol names a reader method in an option (``selection: people``, ``pairs: pairs``) and
its keyword arguments in ``<option>_args``. Only methods marked ``@selection`` can be named
that way, so a protocol cannot reach any other public method (``inventory``, a helper),
and ``call_selection`` checks the arguments against the method's signature before calling
it: an unknown or missing argument, or a value of another type than the argument's
default, is a ConfigError naming the protocol, the option and the accepted arguments.
"""
from __future__ import annotations

import inspect
from typing import Callable, List

from benchmark.errors import ConfigError

_MARK = "__fhbench_selection__"


def selection(method: Callable) -> Callable:
    """Mark a reader method as a selection a protocol may name."""
    setattr(method, _MARK, True)
    return method


def selection_names(reader) -> List[str]:
    """The selections of a reader (class or instance), sorted."""
    cls = reader if isinstance(reader, type) else type(reader)
    return sorted(name for name in dir(cls) if getattr(inspect.getattr_static(cls, name), _MARK, False))


def _kind(default):
    """(types a value may have, their name) for an argument whose default is ``default``;
    None when any value goes (no default, or None)."""
    if isinstance(default, bool):
        return (bool,), "true or false"
    if isinstance(default, int):
        return (int,), "an integer"
    if isinstance(default, float):
        return (int, float), "a number"
    if isinstance(default, str):
        return (str,), "a string"
    if isinstance(default, (list, tuple)):
        return (list, tuple), "a list"
    if isinstance(default, dict):
        return (dict,), "a mapping"
    return None


def call_selection(reader, name, args, where: str, option: str):
    """``reader.<name>(**args)`` when ``name`` is one of its selections and ``args`` fit its
    signature; else a ConfigError starting with ``where`` (e.g. "protocol lfw-10fold") and
    naming ``option``."""
    known = selection_names(reader)
    if not isinstance(name, str) or name not in known:
        raise ConfigError(f"{where}: option {option} names {name!r}, which is not a selection of dataset "
                          f"{type(reader).__name__} (known: {', '.join(known) or 'none'})")
    if args is None:
        args = {}
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise ConfigError(f"{where}: option {option}_args must be a mapping of argument names to values, "
                          f"got {args!r}")
    method = getattr(reader, name)
    params = inspect.signature(method).parameters
    accepted = ", ".join(params) or "none"
    try:
        inspect.signature(method).bind(**args)
    except TypeError as err:
        raise ConfigError(f"{where}: option {option}_args does not fit {name}(): {err} "
                          f"(accepted arguments: {accepted})") from None
    for key, value in args.items():
        kind = _kind(params[key].default) if params[key].default is not inspect.Parameter.empty else None
        if kind is not None and (not isinstance(value, kind[0])
                                 or (isinstance(value, bool) and bool not in kind[0])):
            raise ConfigError(f"{where}: option {option}_args.{key} must be {kind[1]} (its default is "
                              f"{params[key].default!r}), got {value!r}")
    return method(**args)
