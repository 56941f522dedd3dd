"""One typed YAML-to-dataclass loader for every file a user writes (protocols, training
configs) and the option blocks inside them: a mapping is checked against a dataclass's
type hints, recursively, and any unknown key or wrong type is one ``ConfigError`` naming the
file, the dotted key (``stages[1].loss_weights.fr``) and the type expected.

YAML 1.1 reads ``1e-4`` as a string: the error says to write ``1.0e-4``.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple, Union

import yaml

from benchmark.errors import ConfigError


def read_yaml_mapping(path: Path) -> dict:
    """The top-level mapping of a YAML file, or a one-line ConfigError naming the file (and
    the line of a syntax error)."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}")
    return raw


def convert(value, tp, key: str, path: Path, fixed: Optional[dict] = None):
    """Check ``value`` against the type ``tp`` and build it; ``key`` is the dotted name."""
    where = key or "top level"

    def fail(msg):
        return ConfigError(f"{path}: {where}: {msg}")

    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise fail(f"must be a mapping, got {_describe(value)}")
        hints = typing.get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp)}
        fixed = fixed or {}
        for k in value:
            if k not in fields or k in fixed:
                known = ", ".join(n for n in fields if n not in fixed)
                raise ConfigError(f"{path}: {_join(key, k)}: unknown key (known: {known})")
        kwargs = dict(fixed)
        for name, f in fields.items():
            if name in fixed:
                continue
            if name in value:
                kwargs[name] = convert(value[name], hints[name], _join(key, name), path)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{path}: {_join(key, name)}: missing (required)")
        return tp(**kwargs)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin is Union:
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1 and dataclasses.is_dataclass(options[0]) and isinstance(value, dict):
            return convert(value, options[0], key, path)  # an optional block: its own key's error
        for option in (a for a in args if a is not type(None)):
            try:
                return convert(value, option, key, path)
            except ConfigError:
                pass
        raise fail(f"must be {_type_name(tp)}, got {_describe(value)}")
    if origin is Literal:
        if value not in args:
            raise fail(f"must be one of {', '.join(map(str, args))}, got {_describe(value)}")
        return value
    if origin in (list, List):
        if not isinstance(value, list):
            raise fail(f"must be a list, got {_describe(value)}")
        return [convert(v, args[0], f"{key}[{i}]", path) for i, v in enumerate(value)]
    if origin in (tuple, Tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise fail(f"must be a list of {len(args)}: {_type_name(tp)}, got {_describe(value)}")
        return tuple(convert(v, a, f"{key}[{i}]", path) for i, (v, a) in enumerate(zip(value, args)))
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise fail(f"must be a mapping, got {_describe(value)}")
        return {str(k): convert(v, args[1], _join(key, str(k)), path) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise fail(f"must be true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(f"must be an integer, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            hint = ""
            if isinstance(value, str) and _parses_as_float(value):
                hint = f" (YAML reads {value} as text: write it with a decimal point, e.g. 1.0e-4)"
            raise fail(f"must be a number, got {_describe(value)}{hint}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise fail(f"must be a string, got {_describe(value)}")
        return value
    raise TypeError(f"config type {tp!r} of {key} is not supported")  # a bug in a dataclass


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _describe(value) -> str:
    return f"{type(value).__name__} {value!r}" if value is not None else "null"


def _type_name(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Union:
        return " or ".join(_type_name(a) for a in args)
    if origin is Literal:
        return " or ".join(repr(a) for a in args)
    if origin in (tuple, Tuple):
        return "[" + ", ".join(_type_name(a) for a in args) + "]"
    if origin in (list, List):
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if origin in (dict, Dict):
        return "a mapping"
    return {int: "integer", float: "number", str: "string", bool: "true/false",
            type(None): "null"}.get(tp, getattr(tp, "__name__", str(tp)))


def _parses_as_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
