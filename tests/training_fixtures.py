"""What the training-framework tests share (test_training.py, test_training_epochs.py): tiny
synthetic faces, a toy model with a stage that needs identity labels, a toy identity backend
with BatchNorm, and config helpers.
"""
import json
import textwrap
from dataclasses import dataclass

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.training import identity as identity_mod
from benchmark.training.trainer import TRAINABLE, StageSpec, TrainableModel
from benchmark.faces.templates import ARCFACE_112x112


# --- fixtures ---------------------------------------------------------------------------

def _write_faces(folder, n_people, per_person, seed=0, flat=False):
    rng = np.random.default_rng(seed)
    for p in range(n_people):
        sub = folder if flat else folder / f"Person_{p}"
        sub.mkdir(parents=True, exist_ok=True)
        for k in range(per_person):
            small = rng.random((14, 12, 3))
            img = np.clip(cv2.resize(small, (96, 112), interpolation=cv2.INTER_CUBIC) * 255, 0, 255)
            cv2.imwrite(str(sub / f"Person_{p}_{k:04d}.png"), img.astype(np.uint8))
    return folder


@pytest.fixture
def faces(tmp_path):
    """3 people x 3 synthetic faces as <identity>/<image>, SphereFace 112x96."""
    return _write_faces(tmp_path / "faces", 3, 3)


@pytest.fixture
def flat_faces(tmp_path):
    """9 synthetic faces in one flat folder: no identity labels."""
    return _write_faces(tmp_path / "flat", 3, 3, flat=True)


class _ToyIdentity(nn.Module):
    """A tiny FR network with BatchNorm (so batch statistics matter): ArcFace crop -> 4-d."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(123)  # fixed weights; set before training seeds its own RNG
        self.body = nn.Sequential(nn.Conv2d(3, 4, 5, stride=4), nn.BatchNorm2d(4), nn.PReLU(4))

    def forward(self, x):
        return self.body(x).mean((2, 3))


@pytest.fixture
def toy_identity(monkeypatch):
    monkeypatch.setitem(identity_mod.BACKENDS, "toy",
                        lambda: identity_mod.Backend(_ToyIdentity(), ARCFACE_112x112.resized(28, 28)))
    return "toy"


@dataclass
class ToyOptions:
    width: int = 4


class _Toy(nn.Module):
    """Bicubic upsampling + one conv, and a classifier head on the SR image (8 classes)."""

    def __init__(self, scale, width):
        super().__init__()
        self.scale = scale
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 3, 3, padding=1))
        self.head = nn.Linear(3, 8)

    def forward(self, lr):
        up = F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return up + self.body(up)


def _classify(ctx, batch):
    logits = ctx.model.head(ctx.model(batch.lr).mean((2, 3)))
    return {"ce": F.cross_entropy(logits, batch.labels % 8)}


@pytest.fixture
def toy_model(monkeypatch):
    spec = TrainableModel("toy-labels", "toy", ToyOptions, lambda o, s: _Toy(s, o.width),
                          {"classify": StageSpec(_classify, ("ce",), needs_identity_labels=True)})
    monkeypatch.setitem(TRAINABLE, spec.name, spec)
    return spec


def _config(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


TINY_SRRESNET = """\
    model: {name: srresnet, blocks: 1, filters: 4}
    data: {hr_size: [16, 16], scale: 4}
    batch_size: 3
    log_every: 1
    checkpoint_every: 2
    stages:
      - {name: mse, steps: 2, lr: 1.0e-3, loss_weights: {mse: 1.0}}
    """

TINY_FR = """\
    model: {name: srresnet-fr, blocks: 1, filters: 4}
    data: {hr_size: [16, 16], scale: 4}
    batch_size: 3
    log_every: 1
    checkpoint_every: 2
    identity_network: toy
    stages:
      - {name: mse, steps: 3, lr: 1.0e-3, loss_weights: {mse: 1.0}}
      - {name: fr-finetune, steps: 4, lr: 1.0e-3, loss_weights: {mse: 1.0, fr: auto}}
    """


def _log(result):
    return [json.loads(line) for line in result.log.read_text().splitlines()]


def _comparable(lines):
    """Log lines without their timings, to compare two runs."""
    return [{k: v for k, v in r.items() if k != "images_per_s"} for r in lines]


# --- several processes (tests/test_training_ddp*.py) -------------------------------------

def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_worker(rank, world_size, port, model, config, data_root, out_dir, kill_after_checkpoint=None,
               max_steps=None, dump_ranks=False, device="cpu"):
    """One rank of a gloo run, as torchrun would start it (the env variables it sets), with the
    toy identity backend registered; ``kill_after_checkpoint``: SIGKILL this process right after
    the checkpoint of that step is on disk (every rank does: a killed job); ``dump_ranks``: each
    rank also saves its own final model state as ``out_dir/rank<r>.pt`` (to compare the ranks)."""
    import os
    import signal

    import torch.distributed as dist

    from benchmark.training import trainer

    torch.set_num_threads(1)
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size), "FHBENCH_DIST_TIMEOUT": "60"})
    identity_mod.BACKENDS["toy"] = lambda: identity_mod.Backend(_ToyIdentity(), ARCFACE_112x112.resized(28, 28))
    if kill_after_checkpoint is not None:
        save = trainer.save_checkpoint

        def save_then_die(run, stage_index, stage_step, step, stage_state):
            save(run, stage_index, stage_step, step, stage_state)
            if step == kill_after_checkpoint:
                os.kill(os.getpid(), signal.SIGKILL)

        trainer.save_checkpoint = save_then_die
    if dump_ranks:
        save_weights = trainer.save_weights

        def save_and_dump(run, step, complete):
            torch.save({k: v.detach().cpu() for k, v in run.model.state_dict().items()},
                       f"{out_dir}/rank{rank}.pt")
            return save_weights(run, step, complete)

        trainer.save_weights = save_and_dump
    try:
        trainer.train(model, config, data_root, out_dir, device=device, max_steps=max_steps)
        # whether the trainer left the process group it joined (read by the tests)
        with open(f"{out_dir}/rank{rank}.group-after-train", "w") as f:
            f.write("initialized" if dist.is_initialized() else "left")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def spawn_ddp(world_size, model, config, data_root, out_dir, **kw):
    """Run ``ddp_worker`` on ``world_size`` spawned processes and wait for them all."""
    import torch.multiprocessing as mp

    mp.spawn(ddp_worker, args=(world_size, free_port(), model, str(config), str(data_root), str(out_dir),
                               kw.get("kill_after_checkpoint"), kw.get("max_steps"), kw.get("dump_ranks", False),
                               kw.get("device", "cpu")),
             nprocs=world_size, join=True)
