"""Registries: plug-in packages are imported on first use, names are unique, and an
unknown name is an UnknownNameError with suggestions."""
import sys
import textwrap

import pytest

from benchmark.errors import UnknownNameError
from benchmark.registry import Registry


@pytest.fixture
def plugin_package(tmp_path, monkeypatch):
    """A package ``fhb_test_plugins`` whose registry lists the package itself as its plug-ins:
    modules ``sharpen`` and ``blur`` register one thing each; ``_private`` must be skipped."""
    pkg = tmp_path / "fhb_test_plugins"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        from benchmark.registry import Registry
        THINGS = Registry("thing", plugin_packages=("fhb_test_plugins",))
    """))
    (pkg / "sharpen.py").write_text(textwrap.dedent('''
        from . import THINGS

        @THINGS.register("sharpen", strength=2)
        class Sharpen:
            """Make edges crisper.

            More text that is not the summary.
            """
    '''))
    (pkg / "blur.py").write_text(textwrap.dedent("""
        from . import THINGS

        @THINGS.register("gaussian-blur", summary="blur with a Gaussian")
        def blur(x):
            return x
    """))
    (pkg / "_private.py").write_text(textwrap.dedent("""
        from . import THINGS
        THINGS.add("private", object())
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "fhb_test_plugins"
    for name in [m for m in sys.modules if m == "fhb_test_plugins" or m.startswith("fhb_test_plugins.")]:
        del sys.modules[name]


def test_plugin_modules_are_imported_on_first_use(plugin_package):
    import fhb_test_plugins

    things = fhb_test_plugins.THINGS
    assert "fhb_test_plugins.sharpen" not in sys.modules  # nothing imported them yet
    assert things.names() == ["gaussian-blur", "sharpen"]
    assert {"fhb_test_plugins.sharpen", "fhb_test_plugins.blur"} <= set(sys.modules)
    assert "fhb_test_plugins._private" not in sys.modules
    assert things.get("sharpen") is sys.modules["fhb_test_plugins.sharpen"].Sharpen
    sharpen = things.entry("sharpen")
    assert sharpen.summary == "Make edges crisper." and sharpen.info == {"strength": 2}
    assert things.entry("gaussian-blur").summary == "blur with a Gaussian"
    assert [e.name for e in things.entries()] == ["gaussian-blur", "sharpen"]


def test_membership_also_loads_plugins(plugin_package):
    import fhb_test_plugins

    assert "gaussian-blur" in fhb_test_plugins.THINGS and "private" not in fhb_test_plugins.THINGS


def test_threads_asking_while_plug_ins_load_see_the_whole_registry(plugin_package, tmp_path):
    """A thread that asks while another thread imports the plug-ins waits for them (sweep
    cells and a cluster worker's runs start in threads); before, it saw an empty registry."""
    import threading
    import time

    import fhb_test_plugins

    (tmp_path / "fhb_test_plugins" / "slow.py").write_text(textwrap.dedent("""
        import time
        from . import THINGS

        time.sleep(0.5)  # a plug-in slow to import (torch, onnxruntime)
        THINGS.add("slow", object())
    """))
    seen, start = [], threading.Barrier(4)

    def ask():
        start.wait()
        time.sleep(0.05 * len(seen))
        seen.append(fhb_test_plugins.THINGS.names())

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [["gaussian-blur", "sharpen", "slow"]] * 4


def test_duplicate_registration():
    reg = Registry("thing")

    @reg.register("a")
    def first():
        pass

    reg.add("a", first)  # the same object again (a module imported twice) is harmless
    with pytest.raises(ValueError, match="thing 'a' is registered twice"):
        @reg.register("a")
        def second():
            pass
    assert reg.get("a") is first


def test_unknown_name_suggests():
    reg = Registry("degradation")
    for name in ("bicubic", "bilinear", "gaussian-blur"):
        reg.add(name, object())
    with pytest.raises(UnknownNameError) as err:
        reg.get("bicubc")
    msg = str(err.value)
    assert msg == ("unknown degradation 'bicubc'; did you mean bicubic? "
                   "(known: bicubic, bilinear, gaussian-blur)")
    assert isinstance(err.value, KeyError)  # callers may catch it as a KeyError
    with pytest.raises(UnknownNameError, match=r"^unknown degradation 'zzz' \(known: bicubic"):
        reg.get("zzz")  # nothing close: no suggestion


def test_availability():
    reg = Registry("evaluator")
    reg.add("ok", object())
    reg.add("needs-weights", object(), unavailable_reason=lambda: "weights missing")
    assert reg.entry("ok").why_unavailable() is None
    assert reg.entry("needs-weights").why_unavailable() == "weights missing"


def _third_party_distribution(root, entry_points: str, modules: dict):
    """An installed distribution as pip leaves one: modules plus a dist-info with entry points."""
    for name, text in modules.items():
        (root / name).write_text(textwrap.dedent(text))
    info = root / "fhb_third_party-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fhb-third-party\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


def test_a_third_party_package_adds_plug_ins_by_declaring_entry_points(tmp_path, monkeypatch):
    _third_party_distribution(tmp_path, """
        [fhbench.test_things]
        fancy = fhb_tp_models
        plain = fhb_tp_objects:Plain
    """, {"fhb_tp_models.py": """
        from benchmark.registry import Registry
        import fhb_tp_registry
        @fhb_tp_registry.THINGS.register("fancy-sr")
        class Fancy:
            '''A third party's model.'''
    """, "fhb_tp_objects.py": """
        class Plain:
            '''Registered under its entry point's name.'''
    """, "fhb_tp_registry.py": """
        from benchmark.registry import Registry
        THINGS = Registry("thing", "fhbench.test_things")
    """})
    monkeypatch.syspath_prepend(str(tmp_path))
    import fhb_tp_registry

    try:
        things = fhb_tp_registry.THINGS
        assert things.names() == ["fancy-sr", "plain"]
        assert things.entry("plain").summary == "Registered under its entry point's name."
    finally:
        for name in ("fhb_tp_registry", "fhb_tp_models", "fhb_tp_objects"):
            sys.modules.pop(name, None)


def test_a_broken_plug_in_is_one_line_naming_it(tmp_path, monkeypatch):
    from benchmark.errors import ConfigError

    _third_party_distribution(tmp_path, """
        [fhbench.test_broken]
        broken = fhb_tp_broken
    """, {"fhb_tp_broken.py": "import numpy\nraise RuntimeError('needs a GPU driver')\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("thing", "fhbench.test_broken")
    with pytest.raises(ConfigError, match=r"fhbench.test_broken plug-in 'broken' \(fhb_tp_broken\) failed "
                                          r"to load: RuntimeError: needs a GPU driver"):
        reg.names()
    sys.modules.pop("fhb_tp_broken", None)


def test_fhbench_declares_its_built_in_plug_ins_as_entry_points():
    """The installed metadata lists each kind's plug-ins (so a non-editable install finds them),
    and every built-in plug-in module is in a declared package or named itself."""
    from benchmark.registry import DATASETS, DEGRADATIONS, EVALUATORS, MODELS, TASKS, TRAINERS

    assert {"bicubic", "hr", "nearest", "csrip", "srresnet-fr"} <= set(MODELS.names())
    assert {"sface", "arcface-mbf", "dlib"} <= set(EVALUATORS.names())
    assert set(DEGRADATIONS.names()) >= {"bicubic", "blur-decimate", "none"}
    assert {"lfw", "celeba", "ar", "scface"} <= set(DATASETS.names())
    assert {"pairs-10fold", "blufr"} <= set(TASKS.names())
    assert set(TRAINERS.names()) == {"srresnet", "srresnet-fr", "csrip", "ipunet", "cface"}


def test_builtin_plugins_are_the_ones_setup_cfg_declares():
    import configparser
    from pathlib import Path

    from benchmark.registry import BUILTIN_PLUGINS

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[2] / "setup.cfg")
    declared = {group: tuple(line.split("=", 1)[1].strip() for line in value.strip().splitlines())
                for group, value in cfg["options.entry_points"].items() if group.startswith("fhbench.")}
    assert declared == BUILTIN_PLUGINS


def test_a_checkout_that_was_never_installed_has_every_builtin_plugin():
    """With no entry points at all (fhbench not pip-installed, only on PYTHONPATH), each
    registry still lists exactly what the installed distribution gives."""
    import json
    import subprocess
    from pathlib import Path

    listing = ("from benchmark.registry import MODELS, TRAINERS, EVALUATORS, DEGRADATIONS, DATASETS, TASKS\n"
               "from benchmark.contracts.metric import METRICS\n"
               "regs = dict(models=MODELS, trainers=TRAINERS, evaluators=EVALUATORS, "
               "degradations=DEGRADATIONS, datasets=DATASETS, tasks=TASKS, metrics=METRICS)\n"
               "print(json.dumps({k: r.names() for k, r in regs.items()}))\n")
    no_entry_points = "import importlib.metadata as m\nm.entry_points = lambda **kw: []\n"
    root = Path(__file__).resolve().parents[2]

    def names(prefix):
        out = subprocess.run([sys.executable, "-c", "import json\n" + prefix + listing], cwd=root,
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    installed, bare = names(""), names(no_entry_points)
    assert bare == installed
    assert {"bicubic", "csrip"} <= set(bare["models"]) and "sface" in bare["evaluators"]
    assert "psnr" in bare["metrics"] and "csrip" in bare["trainers"]
