"""Plug-in folders hold only plug-ins (issue 12): every module of a built-in plug-in package
registers something when it is imported; interfaces and helpers live in benchmark/contracts/
and in the layers that use them. Checked by watching the registries in a fresh interpreter."""
import json
import os
import subprocess
import sys

PLUGIN_PACKAGES = ("models", "metrics", "degradations", "datasets", "evaluators", "tasks")

# Records, for every Registry.add, the plug-in modules on the call stack (a decorator's
# registration runs while its module executes), then imports each plug-in module.
WATCH = r"""
import importlib, json, pkgutil, sys
from benchmark.registry import Registry
seen = set()
real_add = Registry.add
def add(self, *args, **kwargs):
    f = sys._getframe(1)
    while f is not None:
        seen.add(f.f_globals.get("__name__", ""))
        f = f.f_back
    return real_add(self, *args, **kwargs)
Registry.add = add
out = {}
for package in sys.argv[1:]:
    pkg = importlib.import_module("benchmark." + package)
    names = [m.name for m in pkgutil.iter_modules(pkg.__path__)]
    for n in names:
        importlib.import_module(f"benchmark.{package}.{n}")
    out[package] = names
print(json.dumps({"modules": out, "registering": sorted(seen)}))
"""


def test_every_module_of_a_plugin_folder_registers_something():
    done = subprocess.run([sys.executable, "-c", WATCH, *PLUGIN_PACKAGES], capture_output=True,
                          text=True, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    registering = set(report["registering"])
    for package, names in report["modules"].items():
        assert names, package
        idle = [n for n in names if f"benchmark.{package}.{n}" not in registering]
        assert not idle, f"benchmark/{package}/ holds modules that register nothing: {idle}"


def test_the_watch_sees_a_module_that_registers_nothing(tmp_path):
    """The check can fail: a helper module dropped into a plug-in package is reported."""
    pkg = tmp_path / "benchmark_probe"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helper.py").write_text("X = 1\n")
    (pkg / "plugin.py").write_text("from benchmark.registry import Registry\nRegistry('p', 'x.p').add('a', 1)\n")
    script = WATCH.replace('"benchmark." + package', 'package').replace('f"benchmark.{package}.{n}"', 'f"{package}.{n}"')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script, "benchmark_probe"], capture_output=True, text=True,
                          check=True, cwd=tmp_path, env=env)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "benchmark_probe.plugin" in report["registering"]
    assert "benchmark_probe.helper" not in report["registering"]
