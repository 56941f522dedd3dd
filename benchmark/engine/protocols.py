"""Protocol specs: one declarative YAML file per protocol in the top-level ``protocols/``.

A spec names the dataset, the task that scores it (``benchmark/tasks``), the degradation
and its levels, and the metrics the leaderboard shows. Levels are either ``scales`` (one run
per scale, ``--scale``) or ``lr_sizes`` (every size in one run, stored at level ``sizes``;
its metrics are named ``<metric>@<h>x<w>``). ``hr_size`` renders the
dataset's aligned frame at another size (pad to its aspect, then resize: ``benchmark/faces/frames.py``);
``image_metrics: false`` drops PSNR, SSIM and FR loss where no true HR exists (natural LR).
Extra protocol folders can be added with ``FHBENCH_PROTOCOLS=dir1:dir2``. Unknown keys and
wrong types are errors that name the file and the key.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import yaml

from benchmark.errors import ConfigError, UnknownNameError

# ``protocols/`` sits beside ``benchmark/`` in a checkout and in an installed package alike.
PROTOCOL_DIRS = [Path(__file__).resolve().parents[2] / "protocols"]

# key: (type, required)
FIELDS = {
    "name": (str, True), "summary": (str, True), "dataset": (str, True), "task": (str, True),
    "degradation": (str, True), "scales": (list, False), "default_scale": (int, False),
    "lr_sizes": (list, False), "hr_size": (list, False), "image_metrics": (bool, False),
    "metrics": (list, True), "primary_metric": (str, True), "options": (dict, False),
    "degradation_options": (dict, False), "crop_border": (int, False), "reference": (str, False),
}
# The store's scale sentinels (issue 12 replaces them by explicit level fields):


@dataclass
class Protocol:
    name: str
    summary: str
    dataset: str
    task: str
    degradation: str
    metrics: List[str]
    primary_metric: str
    scales: List[int] = field(default_factory=list)
    default_scale: Optional[int] = None
    lr_sizes: List[Tuple[int, int]] = field(default_factory=list)
    hr_size: Optional[Tuple[int, int]] = None
    image_metrics: bool = True
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

    @property
    def level_names(self) -> List[str]:
        """What ``--scale`` may be, for messages."""
        if self.lr_sizes:
            return [f"{h}x{w}" for h, w in self.lr_sizes]
        return [str(s) for s in self.scales]


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
    scales, lr_sizes = data.get("scales", []), data.get("lr_sizes", [])
    if bool(scales) == bool(lr_sizes):
        raise ConfigError(f"protocol file {path}: give exactly one of 'scales' (one run per scale) "
                          "and 'lr_sizes' (every size in one run)")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 2 for s in scales):
        raise ConfigError(f"protocol file {path}: 'scales' must be a list of integers >= 2 "
                          "(scale 1 is the hr reference)")
    if scales and data.get("default_scale") not in scales:
        raise ConfigError(f"protocol file {path}: default_scale {data.get('default_scale')} is not in scales")
    if lr_sizes and "default_scale" in data:
        raise ConfigError(f"protocol file {path}: 'default_scale' makes no sense with 'lr_sizes'")
    for key in ("lr_sizes", "hr_size"):
        sizes = lr_sizes if key == "lr_sizes" else ([data["hr_size"]] if "hr_size" in data else [])
        if not all(_is_size(s) for s in sizes):
            raise ConfigError(f"protocol file {path}: {key!r} must hold [height, width] pairs of positive "
                              f"integers, got {data[key]!r}")
    data["lr_sizes"] = [tuple(s) for s in lr_sizes]
    if "hr_size" in data:
        data["hr_size"] = tuple(data["hr_size"])
    if data["primary_metric"] not in data["metrics"]:
        raise ConfigError(f"protocol file {path}: primary_metric {data['primary_metric']!r} is not in metrics")
    from benchmark.metrics.registry import METRICS, known_metric

    unknown = [m for m in data["metrics"] if not known_metric(m)]
    if unknown:  # without its direction a metric could be ranked the wrong way round
        raise ConfigError(f"protocol file {path}: metric(s) {', '.join(map(repr, unknown))} are not registered "
                          f"(known: {', '.join(METRICS.names())})")
    return Protocol(source=path, **data)


def _is_size(value) -> bool:
    return (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value))


def load_protocol(name: str) -> Protocol:
    files = protocol_files()
    if name not in files:
        import difflib

        close = difflib.get_close_matches(name, list(files), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownNameError(f"unknown protocol {name!r}{hint} (known: {', '.join(sorted(files))})")
    return parse_protocol(files[name])
