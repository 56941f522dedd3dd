"""`fhbench train --nproc N` and the one-line errors of data-parallel runs (no GPU needed)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from benchmark.cli import main
from benchmark.errors import ConfigError
from benchmark.training.launch import torchrun_argv
from benchmark.training.trainer import read_checkpoint, train
from training_fixtures import _write_faces, free_port

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """\
    model: {name: srresnet, blocks: 1, filters: 4}
    data: {hr_size: [16, 16], scale: 4}
    batch_size: BATCH
    log_every: 1
    checkpoint_every: 10
    stages:
      - {name: mse, steps: 3, lr: 1.0e-3, loss_weights: {mse: 1.0}}
    """


@pytest.fixture
def setup(tmp_path):
    _write_faces(tmp_path / "faces", 2, 2)
    return tmp_path


def _config(tmp_path, batch=2, name="c.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(CONFIG).replace("BATCH", str(batch)))
    return path


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _train_args(setup, config):
    return ["train", "srresnet", "--config", config, "--data-root", setup / "faces", "--out", setup / "runs",
            "--device", "cpu"]


@pytest.mark.parametrize("nproc, batch, message", [
    (0, 2, "--nproc 0: the number of processes must be >= 1"),
    (-1, 2, "--nproc -1: the number of processes must be >= 1"),
    (3, 2, "batch_size: a batch of 2 cannot be shared by 3 processes"),
    (2, 3, "batch_size: a batch of 3 does not split evenly over 2 processes"),
])
def test_bad_nproc_is_one_line_naming_it(setup, nproc, batch, message):
    res = cli(*_train_args(setup, _config(setup, batch)), "--nproc", nproc)
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], res.output
    assert not (setup / "runs").exists()


def test_more_processes_than_cores_is_refused(setup):
    cores = len(os.sched_getaffinity(0))
    res = cli(*_train_args(setup, _config(setup, batch=2 * cores + 2)), "--nproc", cores + 1)
    assert res.exit_code == 2 and f"--nproc {cores + 1}: this CPU run has {cores} core(s)" in res.output


def test_nproc_1_trains_in_this_process(setup):
    res = cli(*_train_args(setup, _config(setup)), "--nproc", 1)
    assert res.exit_code == 0, res.output
    assert read_checkpoint(setup / "runs" / "srresnet" / "last.pt", "srresnet")["world_size"] == 1


def test_torchrun_command_line():
    argv = torchrun_argv(4, ["srresnet", "--config", "c.yaml"])
    assert argv[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "-m", "benchmark.cli",
                        "train", "srresnet", "--config", "c.yaml"]


def test_a_stage_batch_that_does_not_split_fails_before_the_rendezvous(setup, monkeypatch):
    """Under torchrun (the variables set, no group joined yet) the check runs before joining,
    so no rank waits for a peer that has already failed."""
    config = _config(setup, batch=4)
    config.write_text(config.read_text().replace("loss_weights: {mse: 1.0}}", "loss_weights: {mse: 1.0}, "
                                                                               "batch_size: 3}"))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match=r"stages\[0\]\.batch_size: a batch of 3 does not split evenly over 2"):
        train("srresnet", config, setup / "faces", setup / "runs", device="cpu")


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_a_rendezvous_that_never_completes_is_a_one_line_error(setup):
    env = {**_env(), "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port()), "FHBENCH_DIST_TIMEOUT": "2"}
    args = [str(a) for a in _train_args(setup, _config(setup))]
    res = subprocess.run([sys.executable, "-m", "benchmark.cli", *args], env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "rank 0 of 2 could not join the process group at 127.0.0.1:" in lines[0], res.stderr
    assert "within 2 s (gloo)" in lines[0]


@pytest.mark.slow
def test_nproc_2_runs_torchrun_and_equals_one_process(setup):
    """`fhbench train --nproc 2` (torchrun, gloo): rank 0 reports and writes; the weights equal
    those of one process with the same global batch (srresnet's BatchNorm on 2 faces per rank
    would not: sync_batchnorm is on)."""
    config = _config(setup, batch=4)
    config.write_text(config.read_text() + "sync_batchnorm: true\n")
    args = [str(a) for a in _train_args(setup, config)]
    res = subprocess.run([sys.executable, "-m", "benchmark.cli", *args, "--nproc", "2"], env=_env(),
                         capture_output=True, text=True, timeout=300, cwd=setup)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("srresnet: step 3 of 3 (complete)") == 1
    two = read_checkpoint(setup / "runs" / "srresnet" / "srresnet-x4.pt", "srresnet")
    assert two["world_size"] == 2
    one = train("srresnet", config, setup / "faces", setup / "one", device="cpu")
    ref = read_checkpoint(one.weights, "srresnet")
    diff = max(float((two["model_state"][k] - ref["model_state"][k]).abs().max())
               for k in ref["model_state"] if ref["model_state"][k].is_floating_point())
    assert diff <= 1e-5


def test_sync_batchnorm_keeps_the_state_and_is_plain_batchnorm_in_one_process():
    from torch import nn

    from benchmark.training.distributed import SyncBatchNorm, convert_sync_batchnorm

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    net[1].running_mean.fill_(0.5)
    net[2][0].eval()
    reference = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(6, 3, 8, 8)
    want = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    want.load_state_dict(reference)
    want[2][0].eval()
    converted = convert_sync_batchnorm(net)
    assert isinstance(converted[1], SyncBatchNorm) and isinstance(converted[2][0], SyncBatchNorm)
    assert converted[1].training and not converted[2][0].training
    assert converted.state_dict().keys() == reference.keys()
    assert all(torch.equal(converted.state_dict()[k], reference[k]) for k in reference)
    assert torch.allclose(converted(x), want(x), atol=1e-6)
    assert torch.allclose(converted[1].running_var, want[1].running_var)


def test_resuming_a_checkpoint_whose_optimisers_do_not_match_the_stage_is_refused(setup):
    config = _config(setup)
    train("srresnet", config, setup / "faces", setup / "runs", device="cpu", max_steps=1)
    last = setup / "runs" / "srresnet" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    ckpt["optimizers"] = {"generator": ckpt["optimizers"][""]}
    ckpt["world_size"] = 4
    torch.save(ckpt, last)
    with pytest.raises(ConfigError, match=r"holds optimiser states for \['generator'\] \(written by 4 process"):
        train("srresnet", config, setup / "faces", setup / "runs", device="cpu")
