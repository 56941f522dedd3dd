"""Issue 11, the run: bad options, edited models, resumes, row names, store faults.

Each case ends in a correct result or a one-line error (exit 2) naming the culprit, and the
store and the cache hold nothing wrong afterwards. Data: the miniature LFW of conftest.
"""
import json
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from benchmark.engine import runner
from benchmark.cli import main
from benchmark.errors import AdapterError, ConfigError, FhbenchError
from benchmark.engine.store import ResultStore


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def run_args(root, store, cache, *extra):
    return ["run", "--protocol", "lfw-10fold", "--scale", "4", "--data-root", root, "--store", store,
            "--cache-dir", cache, "--quiet", *extra]


def rows(store):
    if not store.exists():
        return []
    with sqlite3.connect(store) as con:
        return con.execute("SELECT model, metrics, manifest FROM runs ORDER BY model").fetchall()


def arrays(store, model):
    st = ResultStore(store)
    (rec,) = st.runs(model=model)
    return rec, st.arrays(rec.id)


def one_error_line(res):
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2, res.output
    assert lines and lines[-1].startswith("fhbench: error: "), res.output
    assert "Traceback" not in res.output
    return lines[-1]


def write_module(folder, name, body):
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """A folder of user model modules on sys.path; each test's modules are forgotten after it."""
    folder = tmp_path / "usermodels"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(folder)):
            del sys.modules[name]


# --- options out of range ---------------------------------------------------------------

@pytest.mark.parametrize("batch", ["-1", "0"])
def test_batch_size_below_one_is_refused_before_any_work(tiny_lfw, tmp_path, batch):
    store, cache = tmp_path / "r.sqlite", tmp_path / "cache"
    res = cli(*run_args(tiny_lfw, store, cache, "--model", "bicubic", "--batch-size", batch))
    assert res.exit_code == 2 and "--batch-size" in res.output
    assert not store.exists() and not cache.exists()


def test_run_options_are_checked_when_called_from_python(tiny_lfw, tmp_path):
    for bad in ({"batch_size": -1}, {"batch_size": 0}, {"chunk_size": 0}, {"scale": 0}, {"name": "a/b"}):
        opts = runner.RunOptions(model="bicubic", protocol="lfw-10fold", data_root=str(tiny_lfw),
                                 store=str(tmp_path / "r.sqlite"), cache_dir="", progress=False, **bad)
        with pytest.raises(ConfigError):
            runner.run(opts)
    assert not (tmp_path / "r.sqlite").exists()


def test_sr_loop_refuses_to_score_slots_it_did_not_fill():
    """The guard behind the --batch-size bug: a batch loop that never runs is an error, never
    an uninitialised buffer scored as a result."""
    from benchmark.contracts.degradation import make_degradation
    from benchmark.engine.pipeline import ImagePipeline, Level
    from benchmark.contracts.model_adapters import create_model

    hr = np.random.default_rng(0).random((3, 3, 16, 16)).astype(np.float32)
    pipeline = ImagePipeline(create_model("bicubic", scale=2), batch_size=-1)
    level = Level("x2", make_degradation("bicubic", scale=2))
    with pytest.raises(FhbenchError, match="was not called for image 0"):
        pipeline.super_resolve(pipeline.model_input(level, hr), hr.shape, np.arange(3), ["a", "b", "c"])


# --- edited models and the cache ----------------------------------------------------------

SCALED_MODEL = """
import torch.nn.functional as F

def build(scale=None, weights=None):
    return lambda x: (F.interpolate(x, scale_factor=scale, mode="bilinear") * {factor}).clamp(0, 1)
"""


def test_edited_callable_is_recomputed_not_served_from_the_cache(tiny_lfw, tmp_path, models_dir):
    store, cache = tmp_path / "r.sqlite", tmp_path / "cache"
    write_module(models_dir, "edited_model", SCALED_MODEL.format(factor=1.0))
    args = run_args(tiny_lfw, store, cache, "--model", "edited_model:build", "--replace")
    assert cli(*args).exit_code == 0
    first = json.loads(rows(store)[0][1])
    write_module(models_dir, "edited_model", SCALED_MODEL.format(factor=0.5))
    del sys.modules["edited_model"]  # as a new process would import it
    assert cli(*args).exit_code == 0
    second_metrics, second_manifest = (json.loads(x) for x in rows(store)[0][1:])
    assert second_metrics["psnr"] < first["psnr"] - 1  # darker output: the edit was computed
    assert second_manifest["cache"]["computed"]["x4"] == 24


SELF_LOADING_MODEL = """
import torch
from pathlib import Path

class Gain(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        up = torch.nn.functional.interpolate(x, scale_factor=4, mode="nearest")
        return (up * self.gain).clamp(0, 1)

def build(scale=None, weights=None):
    net = Gain()
    net.load_state_dict(torch.load(Path(__file__).with_name("gain.pt"), weights_only=True))
    return net
"""


def test_model_that_loads_its_own_checkpoint_sees_the_checkpoint_change(tiny_lfw, tmp_path, models_dir):
    store, cache = tmp_path / "r.sqlite", tmp_path / "cache"
    write_module(models_dir, "self_loading", SELF_LOADING_MODEL)
    torch.save({"gain": torch.ones(1)}, models_dir / "gain.pt")
    args = run_args(tiny_lfw, store, cache, "--model", "self_loading:build", "--replace")
    assert cli(*args).exit_code == 0
    first = json.loads(rows(store)[0][1])
    torch.save({"gain": torch.full((1,), 0.6)}, models_dir / "gain.pt")
    del sys.modules["self_loading"]
    assert cli(*args).exit_code == 0
    assert json.loads(rows(store)[0][1])["psnr"] < first["psnr"] - 1


def test_model_without_source_is_never_cached_and_the_manifest_says_so(tiny_lfw, tmp_path, models_dir):
    # A function compiled from a string has no source file: nothing can tell an edit.
    write_module(models_dir, "sourceless", """
        namespace = {}
        exec("import torch.nn.functional as F\\n"
             "def sr(x):\\n    return F.interpolate(x, scale_factor=4, mode='nearest')", namespace)
        sr = namespace["sr"]
    """)
    store, cache = tmp_path / "r.sqlite", tmp_path / "cache"
    for _ in range(2):
        assert cli(*run_args(tiny_lfw, store, cache, "--model", "sourceless:sr")).exit_code == 0
    manifest = json.loads(rows(store)[0][2])
    assert manifest["model"]["fingerprint"] is None
    assert manifest["cache"]["sr_cached"] is False and "fingerprinted" in manifest["cache"]["why_not"]
    assert manifest["cache"]["computed"]["x4"] == 24  # the second run recomputed everything
    assert not list((cache / "sr").glob("*.sqlite")) if (cache / "sr").exists() else True


def test_folder_model_fingerprint_follows_content_not_listing(tmp_path):
    from benchmark.contracts.model_adapters import create_model

    folder = tmp_path / "sr" / "mine"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(b"first")
    before = create_model(str(folder)).fingerprint()
    (folder / "a.png").write_bytes(b"other")  # same size, and the same mtime after utime
    import os
    os.utime(folder / "a.png", ns=(0, 0))
    assert create_model(str(folder)).fingerprint() != before


# --- resuming a conv model is bit-identical ------------------------------------------------

CONV_MODEL = """
import torch

class TinySR(torch.nn.Module):
    calls = []  # (keys of each batch) as the model saw them

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 48, 3, padding=1)
        self.out = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        up = torch.nn.functional.interpolate(x, scale_factor=4, mode="bilinear")
        y = self.conv(up).reshape(len(x), 16, 3, *up.shape[-2:]).mean(1)
        return (up + 0.05 * torch.tanh(self.out(y))).clamp(0, 1)


def build(scale=None, weights=None):
    return TinySR()
"""


def test_resumed_conv_model_sees_the_uninterrupted_batches_and_stores_identical_results(tiny_lfw, tmp_path,
                                                                                          models_dir):
    write_module(models_dir, "tiny_sr", CONV_MODEL)
    from benchmark.contracts import model_adapters as adapters

    seen = []
    real = adapters.TorchModuleAdapter.super_resolve

    def recording(self, lr, keys):
        seen.append(list(keys))
        if interrupt["at"] == len(seen):
            raise KeyboardInterrupt
        return real(self, lr, keys)

    interrupt = {"at": None}
    mp = pytest.MonkeyPatch()
    mp.setattr(adapters.TorchModuleAdapter, "super_resolve", recording)
    try:
        def opts(store, cache):
            return runner.RunOptions(model="tiny_sr:build", protocol="lfw-10fold", scale=4, data_root=str(tiny_lfw),
                                     store=str(store), cache_dir=str(cache), batch_size=5, chunk_size=10,
                                     progress=False)

        runner.run(opts(tmp_path / "a.sqlite", tmp_path / "cache-a"))
        uninterrupted = list(seen)
        assert [len(b) for b in uninterrupted] == [5, 5, 5, 5, 4]  # 24 images, fixed batches
        seen.clear()
        interrupt["at"] = 4  # killed in the second chunk, after the first was cached
        with pytest.raises(KeyboardInterrupt):
            runner.run(opts(tmp_path / "b.sqlite", tmp_path / "cache-b"))
        assert rows(tmp_path / "b.sqlite") == []
        seen.clear()
        interrupt["at"] = None
        result = runner.run(opts(tmp_path / "b.sqlite", tmp_path / "cache-b"))
    finally:
        mp.undo()
    assert seen == uninterrupted[2:]  # the same batches as uninterrupted, from the first missing one
    # chunk 2's HR faces were embedded before the kill; chunk 3's 4 were not
    assert result["manifest"]["cache"]["computed"] == {"hr": 4, "x4": 14}
    rec_a, arr_a = arrays(tmp_path / "a.sqlite", "tiny_sr:build")
    rec_b, arr_b = arrays(tmp_path / "b.sqlite", "tiny_sr:build")
    assert rec_a.metrics == rec_b.metrics
    assert arr_a.keys() == arr_b.keys()
    for name in arr_a:
        assert np.array_equal(arr_a[name], arr_b[name]), name


def test_batch_size_is_part_of_a_conv_models_cache_key_not_of_bicubics(tiny_lfw, tmp_path):
    def sr_cache_files(batch, model):
        cache = tmp_path / "cache"
        opts = runner.RunOptions(model=model, protocol="lfw-10fold", scale=4, data_root=str(tiny_lfw),
                                 store=str(tmp_path / "r.sqlite"), cache_dir=str(cache), batch_size=batch,
                                 progress=False, name=f"{model}-{batch}")
        return runner.run(opts)["manifest"]["cache"]["sr"]["x4"]

    assert sr_cache_files(4, "bicubic") == sr_cache_files(8, "bicubic")
    assert sr_cache_files(4, "nearest") == sr_cache_files(8, "nearest")


# --- row names ---------------------------------------------------------------------------

def test_folder_named_like_a_registered_model_does_not_replace_its_row(tiny_lfw, tmp_path):
    store, cache = tmp_path / "r.sqlite", tmp_path / "cache"
    assert cli(*run_args(tiny_lfw, store, cache, "--model", "bicubic")).exit_code == 0
    before = rows(store)
    # a folder of (nearest-upsampled) SR images that happens to be called "bicubic"
    from benchmark.faces.images import read_batch, write_rgb
    from conftest import pairs_txt_images

    folder = tmp_path / "sr" / "other" / "bicubic"
    for path in pairs_txt_images(tiny_lfw):
        rel = path.relative_to(tiny_lfw / "aligned-112x96")
        hr = read_batch([path])[0]
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        write_rgb((folder / rel).with_suffix(".png"), hr[:, ::4, ::4].repeat(4, 1).repeat(4, 2))
    line = one_error_line(cli(*run_args(tiny_lfw, store, cache, "--model", folder)))
    assert "'bicubic'" in line and "builtin model bicubic" in line and str(folder) in line and "--name" in line
    assert rows(store) == before
    assert cli(*run_args(tiny_lfw, store, cache, "--model", folder, "--name", "bicubic-folder")).exit_code == 0
    assert [r[0] for r in rows(store)] == ["bicubic", "bicubic-folder"]
    assert cli(*run_args(tiny_lfw, store, cache, "--model", folder, "--replace")).exit_code == 0
    assert json.loads(rows(store)[0][2])["model"]["kind"] == "folder"


def test_two_torchscript_files_with_one_basename_do_not_overwrite_each_other(tiny_lfw, tmp_path):
    store, cache = tmp_path / "r.sqlite", tmp_path / "cache"
    for version, gain in (("v1", 1.0), ("v2", 0.9)):
        class Up(torch.nn.Module):
            def __init__(self, g):
                super().__init__()
                self.g = g

            def forward(self, x):
                return (torch.nn.functional.interpolate(x, scale_factor=4.0, mode="nearest") * self.g).clamp(0, 1)

        (tmp_path / version).mkdir()
        torch.jit.save(torch.jit.script(Up(gain)), str(tmp_path / version / "model.pt"))
    assert cli(*run_args(tiny_lfw, store, cache, "--model", tmp_path / "v1" / "model.pt")).exit_code == 0
    first = rows(store)
    # the same model again updates its row, as before
    assert cli(*run_args(tiny_lfw, store, cache, "--model", tmp_path / "v1" / "model.pt")).exit_code == 0
    line = one_error_line(cli(*run_args(tiny_lfw, store, cache, "--model", tmp_path / "v2" / "model.pt")))
    assert "'model.pt'" in line and "v1/model.pt" in line and "v2/model.pt" in line
    assert rows(store)[0][1] == first[0][1]


@pytest.mark.parametrize("name", ["../../x", "a/b", "tab\tname", "x" * 201, ""])
def test_bad_run_names_are_refused_before_any_work(tiny_lfw, tmp_path, name):
    store, cache = tmp_path / "r.sqlite", tmp_path / "cache"
    one_error_line(cli(*run_args(tiny_lfw, store, cache, "--model", "bicubic", "--name", name)))
    assert not store.exists() and not cache.exists()


# --- models that fail --------------------------------------------------------------------

def test_model_raising_midway_is_one_line_naming_model_and_batch(tiny_lfw, tmp_path, models_dir):
    write_module(models_dir, "flaky", """
        import torch.nn.functional as F
        calls = []

        def sr(x):
            calls.append(1)
            if len(calls) == 2:
                raise RuntimeError("CUDA out of memory\\nsecond line")
            return F.interpolate(x, scale_factor=4, mode="nearest")
    """)
    store, cache = tmp_path / "r.sqlite", tmp_path / "cache"
    line = one_error_line(cli(*run_args(tiny_lfw, store, cache, "--model", "flaky:sr", "--batch-size", "8")))
    assert "model flaky:sr raised RuntimeError on images 8..15" in line and "CUDA out of memory" in line
    assert not store.exists()


def test_model_calling_sys_exit_fails_the_run_with_a_message(tiny_lfw, tmp_path, models_dir):
    write_module(models_dir, "quitter", """
        import sys

        def sr(x):
            sys.exit(0)
    """)
    store, cache = tmp_path / "r.sqlite", tmp_path / "cache"
    line = one_error_line(cli(*run_args(tiny_lfw, store, cache, "--model", "quitter:sr")))
    assert "called sys.exit(0)" in line
    assert not store.exists()


def test_upsampled_input_is_within_0_1(tiny_lfw, tmp_path, models_dir):
    write_module(models_dir, "range_probe", """
        seen = []

        def sr(x):
            seen.append((float(x.min()), float(x.max())))
            return x
    """)
    store, cache = tmp_path / "r.sqlite", tmp_path / "cache"
    assert cli(*run_args(tiny_lfw, store, cache, "--model", "range_probe:sr", "--upsampled-input")).exit_code == 0
    import range_probe

    lows, highs = zip(*range_probe.seen)
    assert min(lows) >= 0.0 and max(highs) <= 1.0


# --- the store --------------------------------------------------------------------------

def test_failed_run_leaves_no_empty_store_file(tiny_lfw, tmp_path):
    store = tmp_path / "sub" / "r.sqlite"
    one_error_line(cli(*run_args(tiny_lfw, store, tmp_path / "cache", "--model", "no_such_model")))
    one_error_line(cli(*run_args(tiny_lfw, store, tmp_path / "cache", "--model", "bicubic", "--evaluator", "nope")))
    assert not store.exists() and not store.parent.exists()


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 256 KiB tmpfs mounted for the test (needs root and mount rights: else skipped)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_store_on_a_read_only_file_system_fails_before_any_work(tiny_lfw, tmp_path, small_tmpfs, monkeypatch):
    store = small_tmpfs / "r.sqlite"
    assert cli(*run_args(tiny_lfw, store, tmp_path / "cache", "--model", "hr")).exit_code == 0
    assert subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)]).returncode == 0
    from benchmark.evaluators.sface import SFace

    monkeypatch.setattr(SFace, "embed", lambda *a, **k: pytest.fail("work began"))
    line = one_error_line(cli(*run_args(tiny_lfw, store, tmp_path / "cache2", "--model", "bicubic")))
    assert str(store) in line and "read" in line.lower()
    new_store = small_tmpfs / "new.sqlite"
    line = one_error_line(cli(*run_args(tiny_lfw, new_store, tmp_path / "cache2", "--model", "bicubic")))
    assert str(new_store) in line and "Read-only file system" in line


def test_full_disk_reports_the_first_error_and_keeps_the_old_row(small_tmpfs):
    st = ResultStore(small_tmpfs / "r.sqlite")
    st.save("m", "lfw-10fold", 8, "sface", {"accuracy": 0.5}, {}, {"a": np.arange(3)})
    with pytest.raises(FhbenchError) as err:
        st.save("m", "lfw-10fold", 8, "sface", {"accuracy": 0.9}, {}, {"big": np.random.default_rng(0).random(100_000)})
    assert "database or disk is full" in str(err.value) and "rollback" not in str(err.value)
    (rec,) = st.runs()
    assert rec.metrics == {"accuracy": 0.5} and np.array_equal(st.arrays(rec.id)["a"], np.arange(3))


# --- --protocol all ----------------------------------------------------------------------

def test_protocol_all_fails_on_a_corrupt_image_and_still_runs_the_rest(tiny_lfw, tmp_path):
    victim = next((tiny_lfw / "aligned-112x96").rglob("*.jpg"))
    victim.write_bytes(b"not a jpeg at all")
    store = tmp_path / "r.sqlite"
    res = CliRunner().invoke(main, ["run", "--model", "bicubic", "--protocol", "all", "--scale", "4",
                                    "--data-root", str(tiny_lfw), "--store", str(store),
                                    "--cache-dir", str(tmp_path / "cache"), "--quiet"], catch_exceptions=False)
    assert res.exit_code == 2, res.output
    assert f"failed lfw-10fold: image {victim} is corrupt" in res.output
    assert "skipped lfw-10fold" not in res.output
    assert rows(store) == []


def test_compare_json_against_the_hr_row_is_strict_json(tiny_lfw, tmp_path):
    from benchmark.engine import strict_json

    store, cache = tmp_path / "r.sqlite", tmp_path / "cache"
    for model in ("hr", "bicubic"):
        assert cli(*run_args(tiny_lfw, store, cache, "--model", model)).exit_code == 0
    res = cli("compare", "hr", "bicubic", "--protocol", "lfw-10fold", "--scale", "4", "--format", "json",
              "--resamples", "50", "--store", store)
    assert res.exit_code == 0, res.output
    json.loads(res.output, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert {i["metric"] for i in strict_json.loads(res.output)["intervals"]} >= {"accuracy", "ssim"}


def test_an_fhbench_upgrade_of_a_baselines_code_keeps_its_rows_identity(monkeypatch):
    """The cache key sees baselines/srresnet.py change (a new fhbench); the row's identity does
    not, so re-running the same weights after an upgrade updates its row without --replace."""
    from pathlib import Path

    from benchmark.contracts import model_fingerprint as fingerprint
    from benchmark.contracts.model_adapters import create_model
    from benchmark.engine.store import same_model

    weights = Path(__file__).resolve().parents[2] / "results" / "srresnet-cpu-demo" / "srresnet-cpu-demo-x8.pt"
    before = create_model("srresnet", weights=str(weights))
    before.fingerprint(), before.identity()  # computed (and kept) before the 'upgrade'
    real = fingerprint.sha256_bytes
    monkeypatch.setattr(fingerprint, "sha256_bytes", lambda data: real(data + b"# an edit\n"))
    after = create_model("srresnet", weights=str(weights))  # the same weights, 'edited' source files
    assert after.fingerprint() != before.fingerprint()
    assert after.identity() == before.identity() and before.identity() is not None
    rows = [{"model": {"identity": m.identity(), "fingerprint": m.fingerprint()}} for m in (before, after)]
    assert same_model(*rows)
    assert not same_model(rows[0], {"model": {"identity": "another", "fingerprint": before.fingerprint()}})
