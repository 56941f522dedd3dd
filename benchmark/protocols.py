"""Protocol specs: one declarative YAML file per protocol in the top-level ``protocols/``.

A spec names the dataset, the task that scores it (``benchmark/tasks``), the degradation
and its scales, and the metrics the leaderboard shows. Extra protocol folders can be
added with ``FHBENCH_PROTOCOLS=dir1:dir2``. Unknown keys and wrong types are errors that
name the file and the key.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from .errors import ConfigError, UnknownNameError

PROTOCOL_DIRS = [Path(__file__).resolve().parent.parent / "protocols"]

# key: (type, required)
FIELDS = {
    "name": (str, True), "summary": (str, True), "dataset": (str, True), "task": (str, True),
    "degradation": (str, True), "scales": (list, True), "default_scale": (int, True),
    "metrics": (list, True), "primary_metric": (str, True), "options": (dict, False),
    "degradation_options": (dict, False), "crop_border": (int, False), "reference": (str, False),
}


@dataclass
class Protocol:
    name: str
    summary: str
    dataset: str
    task: str
    degradation: str
    scales: List[int]
    default_scale: int
    metrics: List[str]
    primary_metric: str
    options: Dict = field(default_factory=dict)
    degradation_options: Dict = field(default_factory=dict)
    crop_border: int = 0
    reference: str = ""
    source: Optional[Path] = None

    def spec(self) -> dict:
        """JSON-able copy for the manifest."""
        d = {k: getattr(self, k) for k in FIELDS}
        d["source"] = str(self.source)
        return d


def protocol_dirs() -> List[Path]:
    extra = [Path(p) for p in os.environ.get("FHBENCH_PROTOCOLS", "").split(os.pathsep) if p]
    return extra + PROTOCOL_DIRS


def protocol_files() -> Dict[str, Path]:
    found = {}
    for d in reversed(protocol_dirs()):  # earlier dirs override later ones
        for f in sorted(d.glob("*.yaml")):
            found[f.stem] = f
    return found


def list_protocols() -> List[str]:
    return sorted(protocol_files())


def parse_protocol(path: Path) -> Protocol:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"protocol file {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"protocol file {path} must be a mapping of keys")
    for key, value in data.items():
        if key not in FIELDS:
            raise ConfigError(f"protocol file {path}: unknown key {key!r} (known: {', '.join(FIELDS)})")
        typ = FIELDS[key][0]
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise ConfigError(f"protocol file {path}: {key!r} must be {typ.__name__}, got {value!r}")
    missing = [k for k, (_, req) in FIELDS.items() if req and k not in data]
    if missing:
        raise ConfigError(f"protocol file {path}: missing key(s) {', '.join(missing)}")
    if data["name"] != path.stem:
        raise ConfigError(f"protocol file {path}: name {data['name']!r} differs from the file name")
    if not all(isinstance(s, int) and s >= 1 for s in data["scales"]):
        raise ConfigError(f"protocol file {path}: 'scales' must be a list of positive integers")
    if data["default_scale"] not in data["scales"]:
        raise ConfigError(f"protocol file {path}: default_scale {data['default_scale']} is not in scales")
    if data["primary_metric"] not in data["metrics"]:
        raise ConfigError(f"protocol file {path}: primary_metric {data['primary_metric']!r} is not in metrics")
    return Protocol(source=path, **data)


def load_protocol(name: str) -> Protocol:
    files = protocol_files()
    if name not in files:
        import difflib

        close = difflib.get_close_matches(name, list(files), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownNameError(f"unknown protocol {name!r}{hint} (known: {', '.join(sorted(files))})")
    return parse_protocol(files[name])
