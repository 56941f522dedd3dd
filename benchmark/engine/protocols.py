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

import dataclasses
import inspect
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from benchmark.errors import ConfigError, UnknownNameError
from benchmark.typed_yaml import convert, read_yaml_mapping

# ``protocols/`` sits beside ``benchmark/`` in a checkout and in an installed package alike.
PROTOCOL_DIRS = [Path(__file__).resolve().parents[2] / "protocols"]


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
    options: Dict[str, Any] = field(default_factory=dict)
    degradation_options: Dict[str, Any] = field(default_factory=dict)
    crop_border: int = 0
    reference: str = ""
    source: Optional[Path] = None

    def spec(self) -> dict:
        """JSON-able copy for the manifest."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "source"}
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
    """Read and check one protocol file: keys and types by the shared typed loader (one line
    naming the file, key and expected type), then what the types cannot say."""
    protocol = convert(read_yaml_mapping(path), Protocol, "", path, fixed={"source": path})
    where = f"{path}:"
    if protocol.name != path.stem:
        raise ConfigError(f"{where} name {protocol.name!r} differs from the file name")
    scales, lr_sizes = protocol.scales, protocol.lr_sizes
    if bool(scales) == bool(lr_sizes):
        raise ConfigError(f"{where} give exactly one of 'scales' (one run per scale) "
                          "and 'lr_sizes' (every size in one run)")
    if not all(s >= 2 for s in scales):
        raise ConfigError(f"{where} 'scales' must be a list of integers >= 2 (no degradation is the hr reference)")
    if scales and protocol.default_scale not in scales:
        raise ConfigError(f"{where} default_scale {protocol.default_scale} is not in scales")
    if lr_sizes and protocol.default_scale is not None:
        raise ConfigError(f"{where} 'default_scale' makes no sense with 'lr_sizes'")
    for key, sizes in (("lr_sizes", lr_sizes), ("hr_size", [protocol.hr_size] if protocol.hr_size else [])):
        if not all(_is_size(s) for s in sizes):
            raise ConfigError(f"{where} {key!r} must hold [height, width] pairs of positive integers, "
                              f"got {getattr(protocol, key)!r}")
    if protocol.primary_metric not in protocol.metrics:
        raise ConfigError(f"{where} primary_metric {protocol.primary_metric!r} is not in metrics")
    from benchmark.contracts.metric import METRICS, known_metric

    unknown = [m for m in protocol.metrics if not known_metric(m)]
    if unknown:  # without its direction a metric could be ranked the wrong way round
        raise ConfigError(f"{where} metric(s) {', '.join(map(repr, unknown))} are not registered "
                          f"(known: {', '.join(METRICS.names())})")
    _check_plugin_options(protocol, path)
    return protocol


def _check_plugin_options(protocol: Protocol, path: Path) -> None:
    """The task's ``options`` and the degradation's ``degradation_options``, by the same typed
    loader: an option the plug-in lacks, or a value of another type than its declared one (a
    degradation's annotation; a task option's default), is one line naming file and key."""
    from benchmark.registry import DEGRADATIONS, TASKS

    task = TASKS.get(protocol.task)
    for key, value in protocol.options.items():
        if key not in task.OPTIONS:
            raise ConfigError(f"{path}: options.{key}: unknown option of task {protocol.task} "
                              f"(known: {', '.join(task.OPTIONS) or 'none'})")
        default = task.OPTIONS[key]
        kind = {bool: bool, int: int, float: float, str: str, list: List[Any], dict: Dict[str, Any]}.get(type(default))
        if kind is not None:
            convert(value, kind, f"options.{key}", path)
    degradation = DEGRADATIONS.get(protocol.degradation)
    params = [n for n in inspect.signature(degradation.__init__).parameters if n != "self"]
    hints = typing.get_type_hints(degradation.__init__)
    for key, value in protocol.degradation_options.items():
        if key not in params:
            raise ConfigError(f"{path}: degradation_options.{key}: unknown parameter of degradation "
                              f"{protocol.degradation} (known: {', '.join(params) or 'none'})")
        convert(value, hints.get(key, Any), f"degradation_options.{key}", path)


def _is_size(value) -> bool:
    return len(value) == 2 and all(v > 0 for v in value)


FOLDER_PREFIX = "folder:"
# What a free-form score can store (those it computed are shown): pixel, identity, landmark, label metrics
FOLDER_METRICS = ["ids", "idd", "fr_loss", "psnr", "ssim", "lmd_dlib68", "nme_dlib68", "lmd_2d106", "nme_2d106",
                  "rank1", "auc", "eer"]


def folder_protocol(name: str) -> Protocol:
    """The protocol of rows stored by ``fhbench score --sr DIR --hr DIR``: ``folder:<set>``, one
    per ground-truth set (every row of it was scored against the same HR files, checked by
    their hash when a row is stored); no dataset, task or degradation of fhbench's own."""
    set_name = name[len(FOLDER_PREFIX):]
    if not set_name:
        raise ConfigError(f"protocol {name!r} names no set: folder:<set>")
    return Protocol(name=name, summary=f"SR images scored against the ground-truth folder set {set_name!r} "
                                        "(fhbench score --sr DIR --hr DIR)",
                    dataset="folder", task="folder", degradation="given", metrics=list(FOLDER_METRICS),
                    primary_metric="ids", image_metrics=True, reference="fhbench score (free-form)")


def is_folder_protocol(name: str) -> bool:
    return str(name).startswith(FOLDER_PREFIX)


def load_protocol(name: str) -> Protocol:
    if is_folder_protocol(name):
        return folder_protocol(name)
    files = protocol_files()
    if name not in files:
        import difflib

        close = difflib.get_close_matches(name, list(files), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownNameError(f"unknown protocol {name!r}{hint} (known: {', '.join(sorted(files))})")
    return parse_protocol(files[name])
