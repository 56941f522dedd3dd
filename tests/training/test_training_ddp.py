"""Data-parallel training (benchmark.training.distributed) on the CPU with gloo: 2 processes
of 4 faces each against 1 process of 8, killed and resumed runs, C-Face's four stages, and
the bad-input errors.

The 2-process runs are spawned (torch.multiprocessing) with the variables torchrun sets; the
1-process reference is the ordinary single-process trainer in this process.

Equivalence and BatchNorm: BatchNorm in training mode normalises with the batch it sees, so a
rank's 4 faces are not the global batch of 8. The srresnet-fr runs therefore use
``sync_batchnorm: true`` (generator AND the frozen identity network's BatchNorm on the global
batch: the same statistics as one process with 8); the csrip runs need nothing: its cascade
(conv-lrelu-conv residual blocks) has no batch-dependent layer, and the cascade stage runs the
SqueezeNet priors in eval mode. The priors stage is left out of the csrip comparison because
its SqueezeNet has dropout in training mode: the masks come from each process's RNG and
cannot equal one process's masks.
"""
import signal
import textwrap

import pytest
import torch
import torch.multiprocessing as mp

from benchmark.training.trainer import read_checkpoint, train
from training_fixtures import _write_faces, spawn_ddp, toy_identity  # noqa: F401

SRRESNET_FR = """\
    model: {name: srresnet-fr, blocks: 1, filters: 4}
    data: {hr_size: [16, 16], scale: 4}
    batch_size: 8
    log_every: 1
    checkpoint_every: 2
    keep_checkpoints: 0
    identity_network: toy
    mixed_precision: false
    sync_batchnorm: true
    stages:
      - {name: mse, steps: 2, lr: 1.0e-3, loss_weights: {mse: 1.0}}
      - {name: fr-finetune, steps: 3, lr: 1.0e-3, loss_weights: {mse: 1.0, fr: auto}}
    """

CSRIP = """\
    model: {name: csrip, filters: [4, 4, 4], blocks: 1, prior_sigmas: [0.5, 1.0, 2.0]}
    data: {hr_size: [72, 72], scale: 8, degradation: blur-decimate}
    batch_size: 8
    log_every: 1
    checkpoint_every: 10
    mixed_precision: false
    stages:
      - {name: cascade, steps: 5, lr: 1.0e-3, loss_weights: {ssim: 1.0, identity: 0.001}}
    """


def _config(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def faces12(tmp_path):
    """4 people x 3 synthetic faces (<identity>/<image>, SphereFace 112x96)."""
    return _write_faces(tmp_path / "faces", 4, 3)


def _weights(out, model, arch, scale):
    return read_checkpoint(out / model / f"{model}-x{scale}.pt", arch)


def _max_diff(a, b):
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())


@pytest.mark.parametrize("model, arch, text, scale", [("srresnet-fr", "srresnet", SRRESNET_FR, 4),
                                                      ("csrip", "csrip", CSRIP, 8)])
@pytest.mark.slow
def test_two_processes_of_4_equal_one_process_of_8(tmp_path, faces12, toy_identity, model, arch, text, scale):
    config = _config(tmp_path, text)
    start = train(model, config, faces12, tmp_path / "start", device="cpu", max_steps=0)  # the initial weights
    assert start.step == 0
    one = train(model, config, faces12, tmp_path / "one", device="cpu")
    assert one.step == 5 and one.complete
    spawn_ddp(2, model, config, faces12, tmp_path / "two")
    init, a, b = (_weights(tmp_path / d, model, arch, scale) for d in ("start", "one", "two"))
    assert (a["world_size"], b["world_size"]) == (1, 2) and b["step"] == 5 and b["complete"]
    assert _max_diff(a["model_state"], init["model_state"]) > 1e-3  # the 5 steps moved the weights
    diff = _max_diff(a["model_state"], b["model_state"])
    print(f"{model}: max abs weight difference, 2 x 4 vs 1 x 8 after 5 steps: {diff:.3g}")
    assert diff <= 1e-5


@pytest.mark.slow
def test_without_sync_batchnorm_the_per_rank_statistics_change_the_result(tmp_path, faces12, toy_identity):
    """The control of the srresnet-fr comparison: BatchNorm on each rank's 4 faces is not
    BatchNorm on all 8, so the comparison above would fail without sync_batchnorm."""
    config = _config(tmp_path, SRRESNET_FR.replace("sync_batchnorm: true", "sync_batchnorm: false"))
    train("srresnet-fr", config, faces12, tmp_path / "one", device="cpu")
    spawn_ddp(2, "srresnet-fr", config, faces12, tmp_path / "two")
    a, b = (_weights(tmp_path / d, "srresnet-fr", "srresnet", 4) for d in ("one", "two"))
    diff = _max_diff(a["model_state"], b["model_state"])
    print(f"srresnet-fr without sync_batchnorm: max abs weight difference {diff:.3g}")
    assert diff > 1e-4


def test_each_rank_leaves_the_process_group_it_joined(tmp_path, faces12, toy_identity):
    """After a finished run every rank has ended the group the trainer joined (a barrier, then
    destroy_process_group), instead of leaving gloo's threads to interpreter shutdown."""
    config = _config(tmp_path, SRRESNET_FR)
    spawn_ddp(2, "srresnet-fr", config, faces12, tmp_path / "two", max_steps=1)
    assert [(tmp_path / "two" / f"rank{r}.group-after-train").read_text() for r in range(2)] == ["left", "left"]


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_to_the_same_weights(tmp_path, faces12, toy_identity):
    """SIGKILL on both ranks right after the checkpoint of step 4 (inside fr-finetune, after its
    auto weight was set); resuming with 2 processes ends bit-identical to an uninterrupted
    2-process run, resuming with 1 process (a different world size) within 1e-5."""
    import shutil

    config = _config(tmp_path, SRRESNET_FR)
    spawn_ddp(2, "srresnet-fr", config, faces12, tmp_path / "straight")
    with pytest.raises(mp.ProcessExitedException, match="SIGKILL"):
        spawn_ddp(2, "srresnet-fr", config, faces12, tmp_path / "killed", kill_after_checkpoint=4)
    last = read_checkpoint(tmp_path / "killed" / "srresnet-fr" / "last.pt", "srresnet")
    assert (last["step"], last["world_size"], last["stage_index"]) == (4, 2, 1)
    assert not (tmp_path / "killed" / "srresnet-fr" / "srresnet-fr-x4.pt").exists()
    shutil.copytree(tmp_path / "killed", tmp_path / "killed-1")

    spawn_ddp(2, "srresnet-fr", config, faces12, tmp_path / "killed")
    resumed_1 = train("srresnet-fr", config, faces12, tmp_path / "killed-1", device="cpu")
    assert resumed_1.step == 5 and resumed_1.complete
    straight, again, one = (_weights(tmp_path / d, "srresnet-fr", "srresnet", 4)
                            for d in ("straight", "killed", "killed-1"))
    assert straight["model_state"].keys() == again["model_state"].keys()
    assert all(torch.equal(straight["model_state"][k], again["model_state"][k]) for k in straight["model_state"])
    assert one["world_size"] == 1
    diff = _max_diff(straight["model_state"], one["model_state"])
    print(f"killed 2-process run resumed on 1 process: max abs difference {diff:.3g}")
    assert diff <= 1e-5
    # the log of the resumed run: one loss line per step, the balanced weight written once
    import json

    lines = [json.loads(x) for x in (tmp_path / "killed" / "srresnet-fr" / "scalars.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "loss" in r] == [1, 2, 3, 4, 5]
    assert sum("balanced_weights" in r for r in lines) == 1


CFACE = """\
    model: {name: cface, blocks: 1, filters: 4, d_filters: 2, d_dense: 8, hr_size: [32, 32],
            perceptual_network: vgg19, perceptual_layer: relu1_2, perceptual_weights: random-init}
    data: {hr_size: [32, 32], scale: 4, flip: false}
    batch_size: 4
    log_every: 1
    checkpoint_every: 100
    identity_network: toy
    mixed_precision: false
    stages:
      - {name: mse, steps: 2, lr: 1.0e-3, loss_weights: {mse: 1.0}}
      - {name: cface, steps: 2, lr: 1.0e-3, loss_weights: {perceptual: 0.006, adversarial: 1.0e-3, si: 0.01,
                                                           compare: 0.01, d_real: 1.0, d_fake: 1.0}}
      - {name: recognition, steps: 2, lr: 1.0e-3, loss_weights: {triplet: 1.0}}
      - {name: cface_joint, steps: 2, lr: 1.0e-3, loss_weights: {perceptual: 0.006, adversarial: 1.0e-3,
                                                                 si: 0.01, compare: 0.01, d_real: 1.0,
                                                                 d_fake: 1.0, triplet: 1.0}}
    """


@pytest.mark.slow
def test_cface_runs_its_four_stages_on_two_processes_with_identical_ranks(tmp_path, faces12, toy_identity,
                                                                         monkeypatch):
    monkeypatch.setenv("FHBENCH_CACHE", str(tmp_path / "cache"))
    config = _config(tmp_path, CFACE)
    start = train("cface", config, faces12, tmp_path / "start", device="cpu", max_steps=0)
    spawn_ddp(2, "cface", config, faces12, tmp_path / "two", dump_ranks=True)
    init = read_checkpoint(start.weights, "cface")["model_state"]
    final = _weights(tmp_path / "two", "cface", "cface", 4)
    assert (final["step"], final["complete"], final["world_size"]) == (8, True, 2)
    state = final["model_state"]
    for part in ("generator.", "discriminator.", "recognition."):  # each part trained
        keys = [k for k in state if k.startswith(part) and state[k].is_floating_point()]
        assert keys and max(float((state[k] - init[k]).abs().max()) for k in keys) > 1e-4, part
    # generator, discriminator and the recognition copy: the same on both ranks, buffers included
    r0, r1 = (torch.load(tmp_path / "two" / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0.keys() == r1.keys() == state.keys()
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    assert all(torch.equal(r0[k], state[k]) for k in r0)
    import json

    lines = [json.loads(x) for x in (tmp_path / "two" / "cface" / "scalars.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in lines if "loss" in r] == ["mse"] * 2 + ["cface"] * 2 + ["recognition"] * 2 + \
        ["cface_joint"] * 2


@pytest.mark.slow
@pytest.mark.shared_data
def test_cface_smoke_config_on_two_processes(train_faces, tmp_path, monkeypatch):
    """baselines/configs/smoke/cface.yaml as shipped (SFace, random-init VGG19, 20 + 2 + 2 + 3
    steps of 4 faces) on 8 real LFW faces, 2 gloo processes of 2 faces each."""
    from pathlib import Path

    monkeypatch.setenv("FHBENCH_CACHE", str(tmp_path / "cache"))
    config = Path(__file__).resolve().parents[2] / "baselines" / "configs" / "smoke" / "cface.yaml"
    spawn_ddp(2, "cface", config, train_faces, tmp_path / "two", dump_ranks=True)
    final = _weights(tmp_path / "two", "cface", "cface", 4)
    assert (final["step"], final["complete"], final["world_size"]) == (27, True, 2)
    r0, r1 = (torch.load(tmp_path / "two" / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    import json

    lines = [json.loads(x) for x in (tmp_path / "two" / "cface" / "scalars.jsonl").read_text().splitlines()]
    mse = [r["loss"] for r in lines if r.get("stage") == "mse" and "loss" in r]
    assert len(mse) == 20 and sum(mse[-3:]) < sum(mse[:3])
