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
        THINGS = Registry("thing", ("fhb_test_plugins",))
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
