"""Strict JSON for values that may be inf or nan (the hr row's PSNR is inf by definition).

``json.dumps`` writes ``Infinity`` and ``NaN``, which are not JSON: strict parsers (browsers,
``jq``, most languages) refuse the whole file. The convention here:

- every non-finite float (a Python float or a NumPy floating scalar; arrays are lists) is
  written as ``null``, and its place is recorded in a top-level object
  ``"non_finite": {"<path>": "inf" | "-inf" | "nan"}``;
- ``<path>`` is the dict keys and list indices from the top, joined by ``.``; a ``.`` or
  ``\\`` inside a key is escaped with a backslash (``\\.``, ``\\\\``). Example:
  ``{"metrics": {"psnr": inf}, "seq": [1.0, nan]}`` is written as
  ``{"metrics": {"psnr": null}, "seq": [1.0, null],
  "non_finite": {"metrics.psnr": "inf", "seq.1": "nan"}}``;
- the ``non_finite`` map is written whenever the top-level value is a dict (empty when
  every number is finite), so a reader can tell a real ``null`` from a replaced number.
  A top-level dict that already has a ``non_finite`` key is refused (ValueError), and so
  is a non-finite number in a top-level value that is not a dict (nowhere to record it);
- ``loads`` reads strictly (``Infinity``/``NaN`` are refused) and restores the numbers,
  removing the map: ``loads(dumps(x)) == x`` for JSON-able x (tuples come back as lists,
  and nan compares unequal as always).
"""
from __future__ import annotations

import json
import math
from typing import Any, Dict, List

import numpy as np

NON_FINITE = "non_finite"
_WORDS = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _word(x: float) -> str:
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _escape(key: str) -> str:
    return key.replace("\\", "\\\\").replace(".", "\\.")


def _key(k) -> str:
    """A dict key as json.dumps writes it (so the recorded path names the written key)."""
    if isinstance(k, str):
        return k
    if isinstance(k, bool) or k is None:
        return json.dumps(k)
    if isinstance(k, (int, float, np.integer, np.floating)):
        return json.dumps(k.item() if isinstance(k, np.generic) else k)
    raise TypeError(f"JSON keys must be str, int, float, bool or None, not {type(k).__name__}")


def _clean(value, path: List[str], found: Dict[str, str]):
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        found[".".join(path)] = _word(value)
        return None
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            key = _key(k)
            out[key] = _clean(v, path + [_escape(key)], found)
        return out
    if isinstance(value, (list, tuple)):
        return [_clean(v, path + [str(i)], found) for i, v in enumerate(value)]
    return value


def dumps(obj: Any, **kw) -> str:
    """``json.dumps(obj, **kw)`` with non-finite numbers replaced as the module notes say."""
    found: Dict[str, str] = {}
    if isinstance(obj, dict) and NON_FINITE in obj:
        raise ValueError(f"strict_json: the top-level key {NON_FINITE!r} is reserved for the non-finite map")
    clean = _clean(obj, [], found)
    if isinstance(clean, dict):
        clean[NON_FINITE] = found
    elif found:
        raise ValueError(f"strict_json: {next(iter(found))!r} is {next(iter(found.values()))} but the top-level "
                         "value is not an object, so there is no place to record it")
    kw["allow_nan"] = False
    return json.dumps(clean, **kw)


def _split(path: str) -> List[str]:
    parts, current, escaped = [], [], False
    for ch in path:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if escaped:
        raise ValueError(f"strict_json: non_finite path {path!r} ends in a lone backslash")
    parts.append("".join(current))
    return parts


def _refuse_constant(name):
    raise ValueError(f"strict_json: {name} is not JSON")


def loads(text: str) -> Any:
    """Parse strict JSON written by ``dumps`` and put the non-finite numbers back."""
    data = json.loads(text, parse_constant=_refuse_constant)
    if not isinstance(data, dict) or NON_FINITE not in data:
        return data
    marks = data.pop(NON_FINITE)
    if not isinstance(marks, dict):
        raise ValueError(f"strict_json: {NON_FINITE} must be an object, got {marks!r}")
    for path, word in marks.items():
        if word not in _WORDS:
            raise ValueError(f"strict_json: {NON_FINITE}[{path!r}] must be inf, -inf or nan, got {word!r}")
        parts = _split(path)
        node = data
        for part in parts[:-1]:
            node = _child(node, part, path)
        last = parts[-1]
        if isinstance(node, list):
            last = _index(node, last, path)
        elif not isinstance(node, dict) or last not in node:
            raise ValueError(f"strict_json: {NON_FINITE} path {path!r} names nothing in the document")
        if node[last] is not None:
            raise ValueError(f"strict_json: {NON_FINITE} path {path!r} holds {node[last]!r}, not null")
        node[last] = _WORDS[word]
    return data


def _index(node: list, part: str, path: str) -> int:
    if not part.isdecimal() or int(part) >= len(node):
        raise ValueError(f"strict_json: {NON_FINITE} path {path!r} names nothing in the document")
    return int(part)


def _child(node, part: str, path: str):
    if isinstance(node, list):
        return node[_index(node, part, path)]
    if isinstance(node, dict) and part in node:
        return node[part]
    raise ValueError(f"strict_json: {NON_FINITE} path {path!r} names nothing in the document")
