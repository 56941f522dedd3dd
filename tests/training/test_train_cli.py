"""`fhbench train` through the CLI: a tiny run, its output, resuming, and one-line errors."""
import textwrap

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from benchmark.cli import main

CONFIG = """\
    model: {name: srresnet, blocks: 1, filters: 4}
    data: {hr_size: [16, 16], scale: 4}
    batch_size: 2
    log_every: 1
    checkpoint_every: 10
    stages:
      - {name: mse, steps: 3, lr: 1.0e-3, loss_weights: {mse: 1.0}}
    """


@pytest.fixture
def setup(tmp_path):
    rng = np.random.default_rng(0)
    for p in range(2):
        (tmp_path / "faces" / f"P{p}").mkdir(parents=True)
        for k in range(2):
            img = cv2.resize(rng.random((14, 12, 3)), (96, 112), interpolation=cv2.INTER_CUBIC) * 255
            cv2.imwrite(str(tmp_path / "faces" / f"P{p}" / f"{k}.png"), np.clip(img, 0, 255).astype(np.uint8))
    (tmp_path / "c.yaml").write_text(textwrap.dedent(CONFIG))
    return tmp_path


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_train_stops_at_max_steps_then_resumes_to_the_end(setup):
    args = ["train", "srresnet", "--config", setup / "c.yaml", "--data-root", setup / "faces",
            "--out", setup / "runs", "--device", "cpu"]
    res = cli(*args, "--max-steps", 2)
    assert res.exit_code == 0, res.output
    assert "srresnet: step 2 of 3 (stopped early: run the same command again to resume)" in res.output
    res = cli(*args)
    assert res.exit_code == 0, res.output
    assert "srresnet: step 3 of 3 (complete)" in res.output
    weights = setup / "runs" / "srresnet" / "srresnet-x4.pt"
    assert f"weights: {weights}" in res.output
    assert torch.load(weights, weights_only=True)["step"] == 3


def test_train_scale_override_reaches_the_checkpoint(setup):
    res = cli("train", "srresnet", "--config", setup / "c.yaml", "--data-root", setup / "faces",
              "--out", setup / "runs", "--scale", 8, "--max-steps", 1)
    assert res.exit_code == 0, res.output
    ckpt = torch.load(setup / "runs" / "srresnet" / "srresnet-x8.pt", weights_only=True)
    assert ckpt["scale"] == 8 and ckpt["config"]["data"]["scale"] == 8


def test_train_seed_override_equals_the_seed_in_the_config(setup):
    """--seed N trains what a config with seed: N trains, bit for bit, and records N."""
    common = ["--data-root", setup / "faces", "--device", "cpu"]
    res = cli("train", "srresnet", "--config", setup / "c.yaml", "--out", setup / "flag", "--seed", 5, *common)
    assert res.exit_code == 0, res.output
    (setup / "c5.yaml").write_text(textwrap.dedent(CONFIG) + "seed: 5\n")
    res = cli("train", "srresnet", "--config", setup / "c5.yaml", "--out", setup / "yaml", *common)
    assert res.exit_code == 0, res.output
    res = cli("train", "srresnet", "--config", setup / "c.yaml", "--out", setup / "seed0", *common)
    assert res.exit_code == 0, res.output
    flag, yaml, seed0 = (torch.load(setup / d / "srresnet" / "srresnet-x4.pt", weights_only=True)
                         for d in ("flag", "yaml", "seed0"))
    assert flag["config"]["seed"] == yaml["config"]["seed"] == 5 and seed0["config"]["seed"] == 0
    assert all(torch.equal(v, yaml["model_state"][k]) for k, v in flag["model_state"].items())
    assert not all(torch.equal(v, seed0["model_state"][k]) for k, v in flag["model_state"].items())


def test_a_resume_with_another_seed_is_refused_and_leaves_the_run(setup):
    args = ["train", "srresnet", "--config", setup / "c.yaml", "--data-root", setup / "faces",
            "--out", setup / "runs", "--device", "cpu"]
    assert cli(*args, "--max-steps", 2, "--seed", 1).exit_code == 0
    last = setup / "runs" / "srresnet" / "last.pt"
    before = last.read_bytes()
    for other in (["--seed", "2"], []):  # another seed, or the config's seed 0
        res = CliRunner().invoke(main, [str(a) for a in args] + other)
        assert res.exit_code == 2, res.output
        seed = other[1] if other else "0"
        assert res.output.strip() == (f"fhbench: error: {last} is a run with seed 1, but {setup / 'c.yaml'} asks "
                                      f"for seed {seed} (--seed); resume with the same seed or use another output "
                                      "folder")
    assert last.read_bytes() == before
    res = cli(*args, "--seed", 1)
    assert res.exit_code == 0 and "srresnet: step 3 of 3 (complete)" in res.output, res.output


@pytest.mark.parametrize("args,message", [
    (["train", "srgan"], "fhbench: error: unknown trainable model 'srgan'"),
    (["train", "srresnet", "--config", "{tmp}/absent.yaml"], "fhbench: error: training config {tmp}/absent.yaml does not exist"),
    (["train", "srresnet", "--scale", "3"], "fhbench: error: {tmp}/c.yaml: data.hr_size: 16x16 is not divisible by scale 3"),
    (["train", "srresnet", "--seed", str(2 ** 63)], f"fhbench: error: --seed: must be between 0 and {2 ** 63 - 1}, "
                                                    f"got {2 ** 63}"),
    (["train", "srresnet", "--data-root", "{tmp}/nowhere"], "fhbench: error: training data root {tmp}/nowhere does not exist"),
])
def test_train_errors_are_one_line_and_write_nothing(setup, args, message):
    base = {"--config": str(setup / "c.yaml"), "--data-root": str(setup / "faces"), "--out": str(setup / "runs")}
    args = [a.replace("{tmp}", str(setup)) for a in args]
    for key, value in base.items():
        if key not in args:
            args += [key, value]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(message.replace("{tmp}", str(setup)))
    assert not (setup / "runs").exists()


def test_nproc_hands_every_option_to_torchrun(setup, monkeypatch):
    """--nproc 2 replaces the process by torchrun with the same options, --seed among them."""
    from benchmark.training import launch

    handed = []

    def exec_torchrun(nproc, args):  # the real one never returns: it replaces the process
        handed.append((nproc, args))
        raise SystemExit(0)

    monkeypatch.setattr(launch, "exec_torchrun", exec_torchrun)
    monkeypatch.setattr(launch.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    res = cli("train", "srresnet", "--config", setup / "c.yaml", "--data-root", setup / "faces", "--out",
              setup / "runs", "--max-steps", 2, "--scale", 8, "--seed", 7, "--device", "cpu", "--nproc", 2)
    assert res.exit_code == 0, res.output
    assert handed == [(2, ["srresnet", "--config", str(setup / "c.yaml"), "--data-root", str(setup / "faces"),
                           "--out", str(setup / "runs"), "--max-steps", "2", "--scale", "8", "--seed", "7",
                           "--device", "cpu"])]
    assert not (setup / "runs").exists()
