"""``--cluster``: a run sharded over Dask worker processes stores exactly what a single-process
run stores. Every cluster test compares against a single-process run of the same options (its
own store and cache), never against the cluster run's own output. LocalClusters are 2 worker
processes with one thread each, and are always closed (fixtures / context managers)."""
import contextlib
import dataclasses
import os
import socket
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from benchmark.cli import main
from benchmark.engine import cluster as cl
from benchmark.engine import cluster_plugin
from benchmark.engine import runner
from benchmark.engine.store import ResultStore
from benchmark.errors import ConfigError, DataError
from cluster_fixtures import (REPO, assert_same_run, cache_rows, env_path, module_cluster, options, record_puts,
                              shard_tasks)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(client, paths): one 2-worker cluster (a cpu and a gpu worker) for this module's tests."""
    with module_cluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c


@pytest.fixture
def client(cluster):
    return cluster[0]


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
    ({"system": "slurm", "cores": 4, "memory": "8GB", "gpu": 1}, ": gpu: unknown key (known: system, cores, memory"),
    ({"system": "slurm", "cores": "4", "memory": "8GB"}, ": cores: must be an integer, got str '4'"),
    ({"system": "slurm", "cores": True, "memory": "8GB"}, ": cores: must be an integer, got bool True"),
    ({"system": "slurm", "cores": 4, "memory": "8GB", "job_extra_directives": "--gres=gpu:1"},
     ": job_extra_directives: must be a list of string or null, got str '--gres=gpu:1'"),
    ({"system": "slurm", "cores": 4, "memory": "8GB", "job_extra_directives": ["--gres=gpu:1", 2]},
     ": job_extra_directives: must be a list of string or null, got list"),
    ({"system": "slurm", "cores": 4, "memory": "8GB", "scheduler_options": ["port", 8786]},
     ": scheduler_options: must be a mapping or null, got list"),
    ({"system": "slurm", "cores": 4, "memory": "8GB", "jobs": 0}, ": jobs: must be an integer >= 1, got 0"),
    ({"system": "slurm", "cores": 4}, ": memory: missing (required)"),
    ({"system": "kubernetes", "cores": 4, "memory": "8GB"},
     ": system: must be one of slurm, pbs, sge, lsf, htcondor, oar, moab, got str 'kubernetes'"),
    (["system", "slurm"], ": the top level must be a mapping of keys, got list"),
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
    assert spec.config.gpus_per_worker == 1 and spec.config.jobs == 2
    cluster = cl._jobqueue_cluster(spec.config, spec.path)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH --gres=gpu:1" in script and "-p gpu" in script and "--resources GPU=1" in script


def test_worker_without_the_data_root_or_weights_fails_in_one_line(tiny_lfw, tmp_path):
    """What a worker checks before any shard (run here in-process: the same code)."""
    from benchmark.evaluators import create_evaluator
    from benchmark.contracts.model_adapters import create_model
    from benchmark.registry import TASKS
    from benchmark.engine.protocols import load_protocol

    faces = TASKS.get("pairs-10fold")(load_protocol("lfw-10fold"), str(tiny_lfw)).faces()
    levels = runner._levels(load_protocol("lfw-10fold"), create_model("bicubic", scale=8), 8)[1]
    model_d = create_model("bicubic", scale=8).describe()
    ev_d = create_evaluator("sface").describe()
    spec = cluster_plugin.WorkerSpec(key="t1", model="bicubic", model_scale=8, check_scale=8, weights=None, evaluator="sface",
                         evaluator_weights=None, clamp=False, device="cpu", upsampled_input=False, batch_size=4,
                         cache_dir="", faces=dataclasses.replace(faces, image_root=tmp_path / "absent"),
                         hr_size=(112, 96), levels=levels, metric_names=["psnr", "ssim"], crop_border=0,
                         model_description=model_d, evaluator_description=ev_d)
    with pytest.raises(DataError, match="cannot read the data root: .*absent is not a folder here"):
        cluster_plugin.WorkerRun(spec)
    other = dataclasses.replace(spec, key="t2", faces=faces,
                                evaluator_description={**ev_d, "weights_sha256": "0" * 64})
    with pytest.raises(ConfigError, match="evaluator sface weights SHA256 is .* on the client"):
        cluster_plugin.WorkerRun(other)
    assert isinstance(cluster_plugin.WorkerRun(dataclasses.replace(spec, key="t3", faces=faces)), cluster_plugin.WorkerRun)


# ---------------------------------------------------------------------------------------------
# A 2-worker LocalCluster stores what a single process stores


def test_cluster_run_is_identical_to_the_single_process_run(tiny_lfw, tmp_path, client, monkeypatch):
    from distributed import get_task_stream

    single = runner.run(options(tiny_lfw, tmp_path, "single"))
    puts = record_puts(monkeypatch)
    with get_task_stream(client) as stream:
        sharded = runner.run(options(tiny_lfw, tmp_path, "cluster"), client=client)
    assert_same_run(single, sharded, tmp_path, "single", "cluster")
    # the client wrote the same per-image cache rows as the single process, no more, no less,
    # each exactly once
    assert cache_rows(tmp_path / "cache-single") == cache_rows(tmp_path / "cache-cluster") != {}
    assert len(puts) == len(set(puts)) == 48  # 24 HR + 24 SR rows
    # the 3 shards went to both workers
    ran = shard_tasks(stream)
    assert len(ran) == 2 and sum(map(len, ran.values())) == 3
    # the run's plugin is gone from every worker once the run ended (its models freed)
    assert client.run(lambda dask_worker: [n for n in dask_worker.plugins if n.startswith("fhbench-run-")]) \
        == {a: [] for a in client.scheduler_info()["workers"]}
    # a re-run is all cache hits: nothing is sent
    with get_task_stream(client) as stream:
        again = runner.run(options(tiny_lfw, tmp_path, "cluster", replace=True), client=client)
    assert again["manifest"]["cache"]["computed"] == {"hr": 0, "x8": 0} and shard_tasks(stream) == {}
    assert again["metrics"] == sharded["metrics"]


def test_each_worker_builds_the_run_once_and_gpu_shards_go_to_gpu_workers(tiny_lfw, tmp_path, cluster, monkeypatch):
    """Shards that need a GPU (faked: the resource is asked for on a CPU run) run only on the
    worker declaring GPU=1, which builds the model once for all 3 shards; the other never
    builds it. The numbers are those of a single process."""
    from distributed import get_task_stream

    client, paths = cluster
    monkeypatch.syspath_prepend(str(paths["mods"]))
    monkeypatch.setenv("FHBENCH_TEST_BUILD_LOG", str(tmp_path / "client-builds.log"))
    model = dict(model="counted_model:build")
    single = runner.run(options(tiny_lfw, tmp_path, "single", **model))
    paths["build_log"].unlink(missing_ok=True)
    monkeypatch.setattr(cluster_plugin, "shard_resources", lambda device: {"GPU": 1})
    with get_task_stream(client) as stream:
        sharded = runner.run(options(tiny_lfw, tmp_path, "gpu", **model), client=client)
    assert_same_run(single, sharded, tmp_path, "single", "gpu")
    workers = client.scheduler_info()["workers"]
    gpu = [a for a, w in workers.items() if w["resources"].get("GPU")]
    ran = shard_tasks(stream)
    assert len(gpu) == 1 and list(ran) == gpu and len(ran[gpu[0]]) == 3
    pids = client.run(os.getpid)
    assert paths["build_log"].read_text().split() == [str(pids[gpu[0]])]  # one build, on the gpu worker
    # no worker declares 2 GPUs: one line before any work
    monkeypatch.setattr(cluster_plugin, "shard_resources", lambda device: {"GPU": 2})
    with pytest.raises(ConfigError) as err:
        runner.run(options(tiny_lfw, tmp_path, "gpu2", **model), client=client)
    assert "no worker declares the resource GPU" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "cache-gpu2" / "sr").exists() or cache_rows(tmp_path / "cache-gpu2") == {}


def test_local_n_on_cuda_declares_a_gpu_per_worker(monkeypatch):
    """``local:N --device cuda``: every worker process declares GPU=1 (and none on the CPU)."""
    import distributed

    made = []

    class FakeCluster:
        def __init__(self, **kw):
            made.append(kw)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(distributed, "LocalCluster", FakeCluster)
    monkeypatch.setattr(distributed, "Client", lambda cluster: contextlib.nullcontext())
    for gpu in (True, False):
        with cl.connect(cl.parse_cluster("local:3"), gpu=gpu):
            pass
    assert made[0]["n_workers"] == 3 and made[0]["resources"] == {"GPU": 1} and made[0]["threads_per_worker"] == 1
    assert made[1]["resources"] is None


def test_ship_data_sends_the_images_to_workers_that_cannot_read_the_data_root(tiny_lfw, tmp_path, client,
                                                                                 monkeypatch):
    """The data root is given relative to the client's folder; the workers run in an empty
    folder, so they cannot read it: without --ship-data the run fails in one line naming a
    worker, with it the run stores what a single process stores."""
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    monkeypatch.chdir(tiny_lfw.parent)
    single = runner.run(options(tiny_lfw, tmp_path, "single", cache_dir=""))
    worker_cwd = client.run(os.getcwd)
    client.run(os.chdir, str(empty))
    try:
        with pytest.raises(DataError) as err:
            runner.run(options(tiny_lfw.name, tmp_path, "noship", cache_dir=""), client=client)
        assert str(err.value).startswith("worker tcp://") and "cannot read the data root" in str(err.value)
        assert "\n" not in str(err.value)
        shipped = runner.run(options(tiny_lfw.name, tmp_path, "ship", cache_dir="", ship_data=True), client=client)
    finally:
        for address, cwd in worker_cwd.items():
            client.run(os.chdir, cwd, workers=[address])
    assert_same_run(single, shipped, tmp_path, "single", "ship")
    # the shipped copies were in each worker's scratch folder, and went with the run
    left = client.run(lambda dask_worker: [p.name for p in Path(dask_worker.local_directory).iterdir()
                                           if p.name.startswith("fhbench-ship-")])
    assert left == {a: [] for a in client.scheduler_info()["workers"]}


def test_client_weights_differ_from_the_workers(tiny_lfw, tmp_path, client, monkeypatch):
    from benchmark.contracts.evaluator import Evaluator

    real = Evaluator.describe
    monkeypatch.setattr(Evaluator, "describe", lambda self: {**real(self), "weights_sha256": "f" * 64})
    with pytest.raises(ConfigError) as err:
        runner.run(options(tiny_lfw, tmp_path, "w"), client=client)
    assert "evaluator sface weights SHA256" in str(err.value) and "'ffff" in str(err.value)
    assert str(err.value).startswith("worker tcp://") and "\n" not in str(err.value)
    assert not (tmp_path / "w.sqlite").exists() or ResultStore(tmp_path / "w.sqlite").runs() == []


def test_protocol_all_connects_one_cluster_for_every_protocol(tiny_lfw, tmp_path, proto_dir, client, monkeypatch):
    """``run_all`` with --cluster: one connection for all protocols (here the module's cluster
    stands in for local:2), each protocol storing what a single process stores."""
    spec = yaml.safe_load((REPO / "protocols" / "lfw-10fold.yaml").read_text())
    spec["options"]["pair_mode"] = "sr-hr"  # another protocol over the same images
    (proto_dir / "toy-b.yaml").write_text(yaml.safe_dump({**spec, "name": "toy-b"}))
    connects = []

    @contextlib.contextmanager
    def one_client(spec, gpu=False):
        connects.append(spec.text)
        yield client

    monkeypatch.setattr(cl, "connect", one_client)
    protocols = ["lfw-10fold", "toy-b"]
    single = runner.run_all(options(tiny_lfw, tmp_path, "single"), protocols=protocols)
    sharded = runner.run_all(options(tiny_lfw, tmp_path, "all", cluster="local:2"), protocols=protocols)
    assert connects == ["local:2"]
    assert not sharded.failed and not sharded.skipped and len(sharded.results) == 2
    ref = {r.protocol: r for r in ResultStore(tmp_path / "single.sqlite").runs()}
    for row in ResultStore(tmp_path / "all.sqlite").runs():
        assert row.metrics == ref[row.protocol].metrics
    assert [r["manifest"]["cache"]["computed"] for r in sharded.results] == \
        [r["manifest"]["cache"]["computed"] for r in single.results]
    # everything cached: the re-run starts no cluster at all
    runner.run_all(options(tiny_lfw, tmp_path, "all", cluster="local:2", replace=True), protocols=protocols)
    assert connects == ["local:2"]


@pytest.mark.slow
def test_cli_run_with_local_2(tiny_lfw, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", env_path())
    runner.run(options(tiny_lfw, tmp_path, "single"))  # the reference, read back from its store
    res = CliRunner().invoke(main, ["run", "--model", "bicubic", "--protocol", "lfw-10fold", "--scale", "8",
                                    "--data-root", str(tiny_lfw), "--store", str(tmp_path / "cli.sqlite"),
                                    "--cache-dir", str(tmp_path / "cache-cli"), "--batch-size", "4", "--quiet",
                                    "--cluster", "local:2"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    (row,) = ResultStore(tmp_path / "cli.sqlite").runs()
    (ref,) = ResultStore(tmp_path / "single.sqlite").runs()
    assert row.metrics == ref.metrics
    assert cache_rows(tmp_path / "cache-single") == cache_rows(tmp_path / "cache-cli")


def test_an_unreachable_scheduler_is_one_line_before_any_work(tiny_lfw, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = CliRunner().invoke(main, ["run", "--model", "bicubic", "--protocol", "lfw-10fold", "--scale", "8",
                                    "--data-root", str(tiny_lfw), "--store", str(tmp_path / "r.sqlite"),
                                    "--cache-dir", str(tmp_path / "cache"), "--quiet",
                                    "--cluster", f"tcp://127.0.0.1:{port}"])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    assert f"no Dask scheduler reachable at tcp://127.0.0.1:{port}" in res.output
    assert not (tmp_path / "r.sqlite").exists()  # refused before the store, the model, the images
