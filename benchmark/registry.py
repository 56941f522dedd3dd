"""One small registry per kind of plug-in (models, evaluators, degradations, datasets,
tasks, metrics, trainers).

A plug-in registers itself with a decorator in its own module. The modules are found
through package entry points, one group per kind (``fhbench.models``,
``fhbench.evaluators``, ...): fhbench declares its built-in ones in ``setup.cfg``, and a
third-party package adds a model or an evaluator by declaring its own, as pytest and timm
plug-ins do. An entry point names a package (each public module in it is
imported, so a new built-in plug-in is one new file), a module (imported, so its decorators
run) or an object (registered under the entry point's name). Each registry also imports its
built-in packages itself (the same ones ``setup.cfg`` declares, ``BUILTIN_PLUGINS``), so that
a checkout on ``PYTHONPATH`` that was never pip-installed (a GPU image with its own Python, a
cluster node) has them too. Nothing is imported until a registry is used.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import pkgutil
import threading
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, Optional

from benchmark.errors import ConfigError, UnknownNameError


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
    def __init__(self, kind: str, group: Optional[str] = None, plugin_packages: tuple = ()):
        """``group``: the entry-point group its plug-ins are declared in; ``plugin_packages``:
        packages whose every public module is a plug-in (for plug-ins not installed as a
        distribution, e.g. a test's)."""
        self.kind = kind
        self.group = group
        self._entries: Dict[str, Entry] = {}
        self._plugin_packages = plugin_packages
        self._loaded = not (group or plugin_packages)
        self._loading = False
        self._lock = threading.RLock()

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

    def load(self) -> None:
        """Import every declared plug-in of this kind (once). Thread-safe: a thread that asks
        while another loads waits for the whole registry (sweep cells and a cluster worker's
        runs start in threads); a plug-in module using the registry while it loads sees it
        as it is so far, as before."""
        if self._loaded:
            return
        with self._lock:
            if self._loaded or self._loading:
                return
            self._loading = True
            try:
                if self.group:
                    load_entry_points(self)
                for pkg in self._plugin_packages:
                    import_submodules(pkg)
            finally:  # a plug-in that failed to load is not retried (its error was raised once)
                self._loaded, self._loading = True, False

    _load = load

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
    """Import ``package`` and every plug-in module in it so their ``@register`` decorators run."""
    pkg = importlib.import_module(package)
    for mod in pkgutil.iter_modules(getattr(pkg, "__path__", [])):  # a plain module has none
        if not mod.name.startswith("_"):  # plug-in folders hold only plug-ins (contracts/)
            importlib.import_module(f"{package}.{mod.name}")


def load_entry_points(registry: Registry) -> None:
    """Import (or register) every entry point of ``registry.group``; a plug-in that fails to
    load is one line naming it, not a traceback from deep inside the registry."""
    for ep in importlib.metadata.entry_points(group=registry.group):
        try:
            obj = ep.load()
        except Exception as e:  # a broken third-party plug-in: name it
            raise ConfigError(f"{registry.group} plug-in {ep.name!r} ({ep.value}) failed to load: "
                              f"{type(e).__name__}: {e}") from e
        if isinstance(obj, types.ModuleType):
            if hasattr(obj, "__path__"):  # a package of plug-in modules
                import_submodules(obj.__name__)
        elif ep.name not in registry._entries:
            registry.add(ep.name, obj)


# entry-point group -> the built-in plug-in packages (setup.cfg declares the same; tested)
BUILTIN_PLUGINS = {
    "fhbench.models": ("benchmark.models", "baselines"),
    "fhbench.trainers": ("baselines",),
    "fhbench.evaluators": ("benchmark.evaluators",),
    "fhbench.degradations": ("benchmark.degradations",),
    "fhbench.datasets": ("benchmark.datasets",),
    "fhbench.tasks": ("benchmark.tasks",),
    "fhbench.metrics": ("benchmark.metrics",),
}


def builtin_registry(kind: str, group: str) -> Registry:
    return Registry(kind, group, plugin_packages=BUILTIN_PLUGINS[group])


MODELS = builtin_registry("model", "fhbench.models")
# name -> train(config_path, data_root, out_dir, device=, max_steps=, scale=): `fhbench train`
# finds the reference trainers here, so the engine never imports the papers' models.
TRAINERS = builtin_registry("trainable model", "fhbench.trainers")
EVALUATORS = builtin_registry("evaluator", "fhbench.evaluators")
DEGRADATIONS = builtin_registry("degradation", "fhbench.degradations")
DATASETS = builtin_registry("dataset", "fhbench.datasets")
TASKS = builtin_registry("task", "fhbench.tasks")
