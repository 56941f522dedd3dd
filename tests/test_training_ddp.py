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
