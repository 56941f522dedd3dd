"""One small registry per kind of plug-in (models, protocols, evaluators, degradations,
datasets, tasks).

A plug-in registers itself with a decorator in its own module; the package that holds
the plug-ins imports all of its modules (see ``import_submodules``) so adding one file
is enough to make a new plug-in appear in ``fhbench models`` & co.
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, Optional

from .errors import UnknownNameError


@dataclass
class Entry:
    name: str
    obj: Any
    summary: str = ""
    # Returns None when the plug-in can run here, else a one-line reason why not.
    unavailable_reason: Optional[Callable[[], Optional[str]]] = None
    info: Dict[str, Any] = field(default_factory=dict)

    def why_unavailable(self) -> Optional[str]:
        return self.unavailable_reason() if self.unavailable_reason else None


class Registry:
    def __init__(self, kind: str, plugin_packages: tuple = ()):
        self.kind = kind
        self._entries: Dict[str, Entry] = {}
        self._plugin_packages = plugin_packages
        self._loaded = not plugin_packages

    def register(self, name: str, summary: str = "", unavailable_reason=None, **info):
        """Decorator: ``@MODELS.register("bicubic", summary=...)``."""

        def deco(obj):
            self.add(name, obj, summary=summary, unavailable_reason=unavailable_reason, **info)
            return obj

        return deco

    def add(self, name, obj, summary="", unavailable_reason=None, **info):
        if name in self._entries and self._entries[name].obj is not obj:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
        self._entries[name] = Entry(name, obj, summary or (doc[0] if doc else ""),
                                    unavailable_reason, dict(info))

    def _load(self):
        if not self._loaded:
            self._loaded = True
            for pkg in self._plugin_packages:
                import_submodules(pkg)

    def entry(self, name: str) -> Entry:
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            known = ", ".join(sorted(self._entries)) or "none"
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{hint} (known: {known})") from None

    def get(self, name: str):
        return self.entry(name).obj

    def __contains__(self, name) -> bool:
        self._load()
        return name in self._entries

    def names(self):
        self._load()
        return sorted(self._entries)

    def entries(self) -> Iterator[Entry]:
        self._load()
        for name in sorted(self._entries):
            yield self._entries[name]

    def in_registration_order(self) -> Iterator[Entry]:
        """Entries in the order they were registered (a module's declared order)."""
        self._load()
        yield from list(self._entries.values())


def import_submodules(package: str) -> None:
    """Import ``package`` and every module in it so their ``@register`` decorators run."""
    pkg = importlib.import_module(package)
    for mod in pkgutil.iter_modules(getattr(pkg, "__path__", [])):  # a plain module has none
        if not mod.name.startswith("_"):
            importlib.import_module(f"{package}.{mod.name}")


MODELS = Registry("model", ("benchmark.adapters", "baselines"))
# name -> train(config_path, data_root, out_dir, device=, max_steps=, scale=): `fhbench train`
# finds the reference trainers here, so the engine never imports the papers' models.
TRAINERS = Registry("trainable model", ("baselines",))
EVALUATORS = Registry("evaluator", ("benchmark.evaluators",))
DEGRADATIONS = Registry("degradation", ("benchmark.degrade",))
DATASETS = Registry("dataset", ("benchmark.data",))
TASKS = Registry("task", ("benchmark.tasks",))
