"""A non-editable install (a wheel) finds its protocols, training configs and plug-ins as a
checkout does: the YAMLs are package data and the plug-ins are entry points (issue 12)."""
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
import benchmark
from benchmark.engine.protocols import list_protocols, load_protocol
from benchmark.registry import MODELS, TRAINERS
from pathlib import Path
print(json.dumps({"file": benchmark.__file__, "protocols": list_protocols(),
                  "lfw_list": str(load_protocol("celeba-10fold").source),
                  "models": MODELS.names(), "trainers": TRAINERS.names(),
                  "configs": sorted(p.name for p in (Path(benchmark.__file__).parents[1] / "baselines" / "configs").glob("*.yaml"))}))
"""


@pytest.mark.slow
def test_a_wheel_install_finds_protocols_configs_and_plug_ins(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(ROOT)], check=True, capture_output=True)
    (wheel,) = wheels.glob("fhbench-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # Outside the checkout, with the unpacked wheel first on the path.
    out = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(site)!r})\n" + PROBE],
                         cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    found = json.loads(out)
    assert found["file"].startswith(str(site))
    shipped = sorted(p.stem for p in (ROOT / "protocols").glob("*.yaml"))
    assert found["protocols"] == shipped and len(shipped) >= 9
    assert found["lfw_list"].startswith(str(site))
    assert (site / "protocols" / "lists" / "celeba-10fold-pairs.txt").is_file()
    assert found["configs"] == sorted(p.name for p in (ROOT / "baselines" / "configs").glob("*.yaml"))
    assert {"bicubic", "hr", "csrip"} <= set(found["models"]) and "cface" in found["trainers"]
