"""``--cluster``: a run sharded over Dask worker processes stores exactly what a single-process
run stores. Every cluster test compares against a single-process run of the same options (its
own store and cache), never against the cluster run's own output. LocalClusters are 2 worker
processes with one thread each, and are always closed (fixtures / context managers)."""
import os
import signal
import sqlite3
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from benchmark.cli import main
from benchmark.engine import cluster as cl
from benchmark.engine import runner
from benchmark.engine.store import ResultStore
from benchmark.errors import ConfigError, DataError, FhbenchError

REPO = Path(__file__).resolve().parents[2]


def _env_path(*extra):
    """PYTHONPATH for worker processes: this checkout first (they import its code)."""
    parts = [str(REPO), *map(str, extra)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys(parts))


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = _env_path()
    try:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                Client(cluster) as c:
            yield c
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def options(root, tmp_path, tag, **kw):
    # 24 images, SR batches of 4, chunks (shards) of 2 batches: 3 shards
    return runner.RunOptions(**{"model": "bicubic", "protocol": "lfw-10fold", "scale": 8, "data_root": str(root),
                                "store": str(tmp_path / f"{tag}.sqlite"), "cache_dir": str(tmp_path / f"cache-{tag}"),
                                "batch_size": 4, "chunk_size": 8, "progress": False, **kw})


def assert_same_run(a, b, tmp_path, tag_a, tag_b):
    """Stored metrics and arrays of run ``a`` (store tag_a) equal those of ``b``, bit for bit."""
    (ra,), (rb,) = ResultStore(tmp_path / f"{tag_a}.sqlite").runs(), ResultStore(tmp_path / f"{tag_b}.sqlite").runs()
    assert ra.metrics.keys() == rb.metrics.keys()
    for k in ra.metrics:
        x, y = np.float64(ra.metrics[k]), np.float64(rb.metrics[k])
        assert x.tobytes() == y.tobytes(), k
    arr_a, arr_b = ResultStore(tmp_path / f"{tag_a}.sqlite").arrays(a["id"]), \
        ResultStore(tmp_path / f"{tag_b}.sqlite").arrays(b["id"])
    assert arr_a.keys() == arr_b.keys() and arr_a
    for k in arr_a:
        assert arr_a[k].dtype == arr_b[k].dtype and arr_a[k].tobytes() == arr_b[k].tobytes(), k
    assert a["manifest"]["cache"]["computed"] == b["manifest"]["cache"]["computed"]


def cache_rows(folder):
    """{(file name, image key): (emb, metrics)} of every per-image cache file under ``folder``."""
    rows = {}
    for path in sorted(Path(folder).rglob("*.sqlite")):
        with sqlite3.connect(path) as con:
            for image, emb, metrics in con.execute("SELECT image, emb, metrics FROM items"):
                rows[(path.parent.name, path.name, image)] = (bytes(emb), bytes(metrics))
    return rows


# ---------------------------------------------------------------------------------------------
# Bad input: one line naming the culprit, before any work


@pytest.mark.parametrize("text,message", [
    ("bogus", "--cluster bogus: expected local:N"),
    ("local:0", "--cluster local:0: local:N needs"),
    ("local:two", "--cluster local:two"),
    ("tcp://nohost", "--cluster tcp://nohost: expected tcp://HOST:PORT"),
    ("jobqueue:/nonexistent/q.yaml", "jobqueue file /nonexistent/q.yaml does not exist"),
])
def test_bad_cluster_specs(text, message):
    with pytest.raises(ConfigError) as err:
        cl.parse_cluster(text)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("content,message", [
    ({"system": "slurm", "cores": 4, "memory": "8GB", "gpu": 1}, "unknown key 'gpu'"),
    ({"system": "slurm", "cores": "4", "memory": "8GB"}, "key 'cores' must be int, got str"),
    ({"system": "slurm", "cores": True, "memory": "8GB"}, "key 'cores' must be int, got bool"),
    ({"system": "slurm", "cores": 4, "memory": "8GB", "job_extra_directives": "--gres=gpu:1"},
     "key 'job_extra_directives' must be list of str, got str"),
    ({"system": "slurm", "cores": 4}, "key 'memory' is required"),
    ({"system": "kubernetes", "cores": 4, "memory": "8GB"}, "key 'system' must be one of"),
    (["system", "slurm"], "expected a mapping"),
])
def test_bad_jobqueue_yaml_names_file_and_key(tmp_path, content, message):
    path = tmp_path / "q.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(ConfigError) as err:
        cl.parse_cluster(f"jobqueue:{path}")
    assert str(path) in str(err.value) and message in str(err.value) and "\n" not in str(err.value)


def test_cli_refuses_bad_cluster_before_any_work(tiny_lfw, tmp_path):
    for extra, message in ((["--cluster", "bogus"], "--cluster bogus"), (["--cluster", "local:0"], "local:0"),
                           (["--ship-data"], "--ship-data needs --cluster")):
        res = CliRunner().invoke(main, ["run", "--model", "bicubic", "--protocol", "lfw-10fold", "--scale", "8",
                                        "--data-root", str(tiny_lfw), "--store", str(tmp_path / "r.sqlite"),
                                        "--cache-dir", "", "--quiet", *extra])
        assert res.exit_code == 2 and message in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "r.sqlite").exists()


def test_slurm_yaml_with_gpus_becomes_a_job_script(tmp_path):
    pytest.importorskip("dask_jobqueue")
    path = tmp_path / "slurm.yaml"
    path.write_text(textwrap.dedent("""
        system: slurm
        jobs: 2
        cores: 8
        memory: 32GB
        processes: 1
        gpus_per_worker: 1
        queue: gpu
        walltime: "02:00:00"
        job_extra_directives: ["--gres=gpu:1"]
    """))
    spec = cl.parse_cluster(f"jobqueue:{path}")
    cluster = cl._jobqueue_cluster(spec.config)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH --gres=gpu:1" in script and "-p gpu" in script and "--resources GPU=1" in script


def test_worker_without_the_data_root_or_weights_fails_in_one_line(tiny_lfw, tmp_path):
    """What a worker checks before any shard (run here in-process: the same code)."""
    import dataclasses

    from benchmark.evaluators import create_evaluator
    from benchmark.contracts.model_adapters import create_model
    from benchmark.registry import TASKS
    from benchmark.engine.protocols import load_protocol

    faces = TASKS.get("pairs-10fold")(load_protocol("lfw-10fold"), str(tiny_lfw)).faces()
    levels = runner._levels(load_protocol("lfw-10fold"), create_model("bicubic", scale=8), 8)[1]
    model_d = create_model("bicubic", scale=8).describe()
    ev_d = create_evaluator("sface").describe()
    spec = cl.WorkerSpec(key="t1", model="bicubic", model_scale=8, check_scale=8, weights=None, evaluator="sface",
                         evaluator_weights=None, clamp=False, device="cpu", upsampled_input=False, batch_size=4,
                         cache_dir="", faces=dataclasses.replace(faces, image_root=tmp_path / "absent"),
                         hr_size=(112, 96), levels=levels, metric_names=["psnr", "ssim"], crop_border=0,
                         model_description=model_d, evaluator_description=ev_d)
    with pytest.raises(DataError, match="cannot read the data root: .*absent is not a folder here"):
        cl.WorkerRun(spec)
    other = dataclasses.replace(spec, key="t2", faces=faces,
                                evaluator_description={**ev_d, "weights_sha256": "0" * 64})
    with pytest.raises(ConfigError, match="evaluator sface weights SHA256 is .* on the client"):
        cl.WorkerRun(other)
    assert isinstance(cl.WorkerRun(dataclasses.replace(spec, key="t3", faces=faces)), cl.WorkerRun)


# ---------------------------------------------------------------------------------------------
# A 2-worker LocalCluster stores what a single process stores


def test_cluster_run_is_identical_to_the_single_process_run(tiny_lfw, tmp_path, client):
    single = runner.run(options(tiny_lfw, tmp_path, "single"))
    sharded = runner.run(options(tiny_lfw, tmp_path, "cluster"), client=client)
    assert_same_run(single, sharded, tmp_path, "single", "cluster")
    # the client wrote the same per-image cache rows as the single process, no more, no less
    assert cache_rows(tmp_path / "cache-single") == cache_rows(tmp_path / "cache-cluster") != {}
    # both workers took shards
    assert len(client.run(lambda: len(cl._RUNS))) == 2
    assert all(n >= 1 for n in client.run(lambda: len(cl._RUNS)).values())
    # a re-run is all cache hits: nothing is sent
    again = runner.run(options(tiny_lfw, tmp_path, "cluster", replace=True), client=client)
    assert again["manifest"]["cache"]["computed"] == {"hr": 0, "x8": 0}
    assert again["metrics"] == sharded["metrics"]


def test_ship_data_sends_the_images_and_changes_nothing(tiny_lfw, tmp_path, client):
    single = runner.run(options(tiny_lfw, tmp_path, "single", cache_dir=""))
    shipped = runner.run(options(tiny_lfw, tmp_path, "ship", cache_dir="", ship_data=True), client=client)
    assert_same_run(single, shipped, tmp_path, "single", "ship")

    def shipped_files():
        return sorted(str(p.relative_to(s.shipped)) for s in cl._RUNS.values() if hasattr(s, "shipped")
                      for p in s.shipped.rglob("*.jpg"))

    files = sorted(f for fs in client.run(shipped_files).values() for f in fs)
    assert len(set(files)) == 24  # every image travelled to a worker


def test_client_weights_differ_from_the_workers(tiny_lfw, tmp_path, client, monkeypatch):
    from benchmark.contracts.evaluator import Evaluator

    real = Evaluator.describe
    monkeypatch.setattr(Evaluator, "describe", lambda self: {**real(self), "weights_sha256": "f" * 64})
    with pytest.raises(ConfigError) as err:
        runner.run(options(tiny_lfw, tmp_path, "w"), client=client)
    assert "evaluator sface weights SHA256" in str(err.value) and "'ffff" in str(err.value)
    assert str(err.value).startswith("worker tcp://") and "\n" not in str(err.value)
    assert not (tmp_path / "w.sqlite").exists() or ResultStore(tmp_path / "w.sqlite").runs() == []


@pytest.mark.slow
def test_cli_run_with_local_2(tiny_lfw, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", _env_path())
    single = runner.run(options(tiny_lfw, tmp_path, "single"))
    res = CliRunner().invoke(main, ["run", "--model", "bicubic", "--protocol", "lfw-10fold", "--scale", "8",
                                    "--data-root", str(tiny_lfw), "--store", str(tmp_path / "cli.sqlite"),
                                    "--cache-dir", str(tmp_path / "cache-cli"), "--batch-size", "4", "--quiet",
                                    "--cluster", "local:2"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    (row,) = ResultStore(tmp_path / "cli.sqlite").runs()
    (ref,) = ResultStore(tmp_path / "single.sqlite").runs()
    assert row.metrics == ref.metrics
    assert cache_rows(tmp_path / "cache-single") == cache_rows(tmp_path / "cache-cli")


# ---------------------------------------------------------------------------------------------
# Faults


KILLER = """
import os, signal
from pathlib import Path
import torch

def killer(lr):
    '''Bicubic x8; the first call inside a Dask worker SIGKILLs that worker, mid-shard.'''
    try:
        from distributed import get_worker
        get_worker()
        in_worker = True
    except (ImportError, ValueError):
        in_worker = False
    mark = Path(os.environ["FHBENCH_TEST_KILL_MARK"])
    if in_worker:
        try:
            fd = os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            fd = None
        if fd is not None:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)
    return torch.nn.functional.interpolate(lr, scale_factor=8, mode="bicubic", align_corners=False).clamp(0, 1)
"""


@pytest.mark.slow
def test_a_worker_killed_mid_shard_is_replaced_and_the_result_is_identical(tiny_lfw, tmp_path, monkeypatch):
    from distributed import Client, LocalCluster

    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "killer_model.py").write_text(KILLER)
    monkeypatch.syspath_prepend(str(mods))
    mark = tmp_path / "killed"
    monkeypatch.setenv("FHBENCH_TEST_KILL_MARK", str(mark))
    monkeypatch.setenv("PYTHONPATH", _env_path(mods))
    opts = dict(model="killer_model:killer")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as c:
        sharded = runner.run(options(tiny_lfw, tmp_path, "cluster", **opts), client=c)
    assert mark.is_file()  # a worker did die, mid-shard (in its first SR call)
    single = runner.run(options(tiny_lfw, tmp_path, "single", **opts))  # never killed: not in a worker
    assert_same_run(single, sharded, tmp_path, "single", "cluster")
    assert cache_rows(tmp_path / "cache-single") == cache_rows(tmp_path / "cache-cluster")
