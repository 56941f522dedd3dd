"""The training framework (baselines.training, config, losses) on tiny synthetic data.

Each test trains models of a few hundred parameters on 6-9 synthetic 112x96 faces at a
16x16 HR size for a few steps, so it runs in seconds. A toy model registered here gives
a second architecture and a stage that needs identity labels; a toy identity backend
with BatchNorm stands in for the FR network (the real one is in the smoke tests).
"""
import dataclasses
import json
import math
import textwrap
from dataclasses import dataclass

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from baselines import identity as identity_mod
from baselines import training
from baselines.losses import fr_loss, mse_loss
from baselines.srresnet import SRResNetAdapter
from baselines.training import (TRAINABLE, StageSpec, TrainableModel, balance_weights, read_checkpoint,
                                train)
from benchmark.errors import AdapterError, ConfigError, DataError
from benchmark.templates import ARCFACE_112x112


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


# --- configs: clear errors naming the dotted key, before any step ----------------------

@pytest.mark.parametrize("edit,match", [
    (("batch_size: 3", "batch_size: '3'"), r"c\.yaml: batch_size: must be an integer, got str '3'"),
    (("lr: 1.0e-3", "lr: 1e-3"), r"stages\[0\]\.lr: must be a number, got str '1e-3' \(YAML reads 1e-3 as text"),
    (("loss_weights", "loss_weight"), r"stages\[0\]\.loss_weight: unknown key"),
    (("scale: 4}", "scale: 4, flipp: true}"), r"data\.flipp: unknown key"),
    (("filters: 4}", "filters: 4, blokcs: 2}"), r"model\.blokcs: unknown key"),
    (("{mse: 1.0}", "{mse: 1.0, fr: 0.5}"), r"stages\[0\]\.loss_weights\.fr: stage mse has no loss 'fr'"),
    (("{mse: 1.0}", "{mse: auto}"), r"stages\[0\]\.loss_weights: the losses mse are all auto"),
    (("name: mse", "name: adversarial"), r"stages\[0\]\.name: srresnet has no stage 'adversarial'"),
    (("hr_size: [16, 16]", "hr_size: [18, 16]"), r"data\.hr_size: 18x16 is not divisible by scale 4"),
    (("steps: 2,", "steps: 2, epochs: 1,"), r"stages\[0\]\.steps: give exactly one of steps or epochs"),
    (("checkpoint_every: 2", "checkpoint_every: true"), r"checkpoint_every: must be an integer, got bool"),
])
def test_config_errors_name_the_key_and_come_before_any_step(tmp_path, faces, edit, match):
    path = _config(tmp_path, TINY_SRRESNET.replace(*edit))
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=match):
        train("srresnet", path, faces, out)
    assert not out.exists()


def test_config_for_another_model_and_unknown_identity_network(tmp_path, faces):
    with pytest.raises(ConfigError, match=r"model\.name: this config trains srresnet, not srresnet-fr"):
        train("srresnet-fr", _config(tmp_path, TINY_SRRESNET), faces, tmp_path / "out")
    path = _config(tmp_path, TINY_FR.replace("identity_network: toy", "identity_network: vgg-face"))
    with pytest.raises(ConfigError, match=r"identity_network: unknown network 'vgg-face'"):
        train("srresnet-fr", path, faces, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- data -------------------------------------------------------------------------------

def test_stage_needing_identity_labels_refuses_a_flat_folder(tmp_path, flat_faces, faces, toy_model):
    path = _config(tmp_path, """\
        model: {name: toy-labels}
        data: {hr_size: [16, 16], scale: 4}
        batch_size: 3
        stages:
          - {name: classify, steps: 2, loss_weights: {ce: 1.0}}
        """)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"stage 0 \(classify\) of toy-labels needs identity labels, but the "
                                        r"faces in .*flat have none"):
        train("toy-labels", path, flat_faces, out)
    assert not out.exists()
    result = train("toy-labels", path, faces, out)  # the same config on labelled faces trains
    assert result.complete and result.step == 2


def test_fewer_faces_than_a_batch_is_refused(tmp_path, faces):
    path = _config(tmp_path, TINY_SRRESNET.replace("batch_size: 3", "batch_size: 16"))
    with pytest.raises(DataError, match="9 training faces in .* are fewer than one batch of 16"):
        train("srresnet", path, faces, tmp_path / "out")


# --- checkpoints of another architecture, scale or options -------------------------------

def test_checkpoints_of_another_architecture_or_scale_are_refused(tmp_path, faces, toy_model):
    x4 = train("srresnet", _config(tmp_path, TINY_SRRESNET), faces, tmp_path / "out").weights
    assert read_checkpoint(x4, "srresnet", 4)["scale"] == 4
    with pytest.raises(AdapterError, match=r"holds a srresnet x4 model \(trained as srresnet\), not the "
                                           r"srresnet x8 model asked for"):
        SRResNetAdapter(scale=8, weights=x4)
    toy_cfg = _config(tmp_path, """\
        model: {name: toy-labels}
        data: {hr_size: [16, 16], scale: 4}
        batch_size: 3
        stages:
          - {name: classify, steps: 1, loss_weights: {ce: 1.0}}
        """, "toy.yaml")
    toy = train("toy-labels", toy_cfg, faces, tmp_path / "toy").weights
    with pytest.raises(AdapterError, match=r"holds a toy x4 model .* not the srresnet model asked for"):
        SRResNetAdapter(weights=toy)
    # as init_weights: refused before any step
    path = _config(tmp_path, TINY_SRRESNET + f"init_weights: {toy}\n", "init.yaml")
    with pytest.raises(ConfigError, match=r"holds a toy x4 model"):
        train("srresnet", path, faces, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()
    # resuming a x4 run at x8 or with other model options: refused, the run left as it was
    before = (tmp_path / "out" / "srresnet" / "last.pt").read_bytes()
    with pytest.raises(ConfigError, match=r"holds a srresnet x4 model .* not the srresnet x8 model"):
        train("srresnet", _config(tmp_path, TINY_SRRESNET), faces, tmp_path / "out", scale=8)
    with pytest.raises(ConfigError, match=r"trained with model options \{'blocks': 1, 'filters': 4\}"):
        train("srresnet", _config(tmp_path, TINY_SRRESNET.replace("blocks: 1", "blocks: 2")), faces,
              tmp_path / "out")
    assert (tmp_path / "out" / "srresnet" / "last.pt").read_bytes() == before
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a checkpoint")
    with pytest.raises(AdapterError, match="bogus.pt is not a readable torch checkpoint"):
        SRResNetAdapter(weights=bogus)


def test_adapter_loads_the_trained_weights(tmp_path, faces):
    result = train("srresnet", _config(tmp_path, TINY_SRRESNET), faces, tmp_path / "out")
    adapter = SRResNetAdapter(scale=4, weights=result.weights)
    state = torch.load(result.weights, weights_only=True)["model_state"]
    assert all(torch.equal(v, adapter.module.state_dict()[k]) for k, v in state.items())
    out = adapter.super_resolve(torch.rand(2, 3, 4, 4), ["a", "b"])
    assert out.shape == (2, 3, 16, 16) and out.min() >= 0 and out.max() <= 1


# --- losses and their weights -------------------------------------------------------------

def test_balance_weights_hand_checked():
    # the docstring's case: mse 0.02 (weight 1), fr 0.5 on auto -> 0.04, a 50/50 split
    out = balance_weights({"mse": 1.0, "fr": "auto"}, {"mse": 0.02, "fr": 0.5}, {"": ("mse", "fr")})
    assert out == pytest.approx({"mse": 1.0, "fr": 0.04})
    # two groups, each balanced against its own fixed terms: b = (2*3)/4, c = (0.5*8 + 1*2)/3
    out = balance_weights({"a": 2.0, "b": "auto", "c": "auto", "d": 0.5, "e": 1.0},
                          {"a": 3.0, "b": 4.0, "c": 3.0, "d": 8.0, "e": 2.0},
                          {"g": ("a", "b"), "d": ("c", "d", "e")})
    assert out == pytest.approx({"a": 2.0, "b": 1.5, "c": 2.0, "d": 0.5, "e": 1.0})
    with pytest.raises(DataError, match="cannot balance the loss fr: it is 0.0 on the first batch"):
        balance_weights({"mse": 1.0, "fr": "auto"}, {"mse": 0.02, "fr": 0.0}, {"": ("mse", "fr")})


def test_mse_loss_hand_checked():
    sr = torch.zeros(1, 3, 2, 2)
    hr = torch.zeros(1, 3, 2, 2)
    hr[0, 0, 0, 0], hr[0, 1, 1, 1] = 1.0, 0.5
    assert float(mse_loss(sr, hr)) == pytest.approx((1.0 + 0.25) / 12)


def test_fr_loss_hand_checked():
    """phi = L2-normalised (mean R, mean G): SR reds vs HR greens are sqrt(2) apart, identical faces 0."""
    calls = []

    def phi(x):
        calls.append(len(x))
        return F.normalize(x.mean((2, 3))[:, :2], dim=1)

    sr = torch.zeros(2, 3, 4, 4)
    hr = torch.zeros(2, 3, 4, 4)
    sr[0, 0], hr[0, 1] = 1.0, 1.0          # face 0: red vs green
    sr[1, 0], hr[1, 0] = 0.5, 0.5          # face 1: the same
    sr[1, 1], hr[1, 1] = 0.5, 0.5
    sr.requires_grad_(True)
    hr.requires_grad_(True)
    loss = fr_loss(phi, sr, hr)
    assert float(loss.detach()) == pytest.approx(math.sqrt(2) / 2, abs=1e-6)
    assert calls == [4]                    # SR and HR in ONE batch (shared BN statistics)
    loss.backward()
    assert sr.grad.abs().sum() > 0 and (hr.grad is None or hr.grad.abs().sum() == 0)


def test_learning_rate_schedules_hand_checked():
    from baselines.config import ScheduleConfig, StageConfig

    step = StageConfig("mse", steps=10, lr=0.1, schedule=ScheduleConfig("step", every=4, gamma=0.5))
    assert [training._learning_rate(step, k, 10) for k in (0, 3, 4, 9)] == pytest.approx([0.1, 0.1, 0.05, 0.025])
    cos = StageConfig("mse", steps=10, lr=0.1, schedule=ScheduleConfig("cosine", final_lr=0.02))
    assert training._learning_rate(cos, 5, 10) == pytest.approx(0.06)   # half way: the mean of 0.1 and 0.02


# --- the loop: balancing, logs, resume -------------------------------------------------------

def test_fr_stage_balances_its_weight_to_50_50_on_the_first_batch(tmp_path, faces, toy_identity):
    result = train("srresnet-fr", _config(tmp_path, TINY_FR), faces, tmp_path / "out")
    assert result.complete and result.step == 7
    lines = _log(result)
    balanced = next(r for r in lines if "balanced_weights" in r)
    assert balanced["step"] == 4
    terms, w = balanced["terms"], balanced["balanced_weights"]
    assert w["fr"] * terms["fr"] == pytest.approx(w["mse"] * terms["mse"])
    first = next(r for r in lines if r.get("stage") == "fr-finetune" and "loss" in r)
    assert first["loss"] == pytest.approx(2 * first["mse"], rel=1e-5)   # mse + equal-sized fr
    ckpt = torch.load(result.weights, weights_only=True)
    assert ckpt["identity_network"]["name"] == "toy" and ckpt["complete"] is True


def _comparable(lines):
    return [{k: v for k, v in r.items() if k != "images_per_s"} for r in lines]


def test_resume_after_interruption_ends_bit_identical(tmp_path, faces, toy_identity, monkeypatch):
    config = _config(tmp_path, TINY_FR)
    straight = train("srresnet-fr", config, faces, tmp_path / "straight")

    # an interrupted run: killed during step 6 (the last checkpoint is at step 4, inside the
    # FR stage after its weights were balanced), then resumed twice (max_steps, then to the end)
    spec = TRAINABLE["srresnet-fr"]
    original = spec.stages["fr-finetune"]
    calls = {"n": 0}

    def dies_on_third_call(ctx, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original.step(ctx, batch)

    monkeypatch.setitem(spec.stages, "fr-finetune", dataclasses.replace(original, step=dies_on_third_call))
    with pytest.raises(KeyboardInterrupt):
        train("srresnet-fr", config, faces, tmp_path / "resumed")
    monkeypatch.setitem(spec.stages, "fr-finetune", original)
    assert read_checkpoint(tmp_path / "resumed" / "srresnet-fr" / "last.pt", "srresnet")["step"] == 4
    partial = train("srresnet-fr", config, faces, tmp_path / "resumed", max_steps=6)
    assert (partial.step, partial.complete) == (6, False)
    resumed = train("srresnet-fr", config, faces, tmp_path / "resumed")
    assert (resumed.step, resumed.complete) == (7, True)

    a = torch.load(straight.weights, weights_only=True)["model_state"]
    b = torch.load(resumed.weights, weights_only=True)["model_state"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _comparable(_log(straight)) == _comparable(_log(resumed))
    # periodic checkpoints: every 2 steps, the last keep_checkpoints (3) kept, plus the end
    names = sorted(p.name for p in (tmp_path / "straight" / "srresnet-fr").glob("checkpoint-*.pt"))
    assert names == ["checkpoint-4.pt", "checkpoint-6.pt", "checkpoint-7.pt"]


# --- mixed precision: the CUDA path (autocast fp16 + GradScaler), run on the CPU -------------

@pytest.fixture
def amp_on_cpu(monkeypatch):
    """torch autocasts fp16 and scales gradients on the CPU too: the same code path as CUDA."""
    monkeypatch.setattr(training, "AMP_DEVICE_TYPES", ("cuda", "cpu"))


def _scaler(path):
    return torch.load(path, weights_only=True)["scaler"]


def test_mixed_precision_trains_in_float16_and_checkpoints_the_scaler(tmp_path, faces, toy_identity, amp_on_cpu,
                                                                      monkeypatch):
    spec = TRAINABLE["srresnet-fr"]
    original = spec.stages["fr-finetune"]
    seen = []

    def recording(ctx, batch):
        sr = ctx.model(batch.lr)
        seen.append(sr.dtype)
        return original.step(ctx, batch)

    monkeypatch.setitem(spec.stages, "fr-finetune", dataclasses.replace(original, step=recording))
    result = train("srresnet-fr", _config(tmp_path, TINY_FR), faces, tmp_path / "out")
    assert result.complete and seen == [torch.float16] * 4      # the model ran under fp16 autocast
    assert all(math.isfinite(r["loss"]) for r in _log(result) if "loss" in r)
    scaler = _scaler(result.checkpoint)
    # 7 finite steps: the initial scale 2^16 kept (it grows only after 2000), 7 steps counted
    assert (scaler["scale"], scaler["_growth_tracker"]) == (65536.0, 7)
    assert _scaler(result.checkpoint.with_name("checkpoint-4.pt"))["_growth_tracker"] == 4


def test_mixed_precision_skips_an_overflowing_step_and_halves_the_scale(tmp_path, faces, amp_on_cpu, monkeypatch):
    spec = TRAINABLE["srresnet"]
    original = spec.stages["mse"]

    def overflows_at_step_1(ctx, batch):
        terms = original.step(ctx, batch)
        return {"mse": terms["mse"] * 1e38} if ctx.step == 1 else terms  # x 2^16 overflows fp32 too

    monkeypatch.setitem(spec.stages, "mse", dataclasses.replace(original, step=overflows_at_step_1))
    config = _config(tmp_path, TINY_SRRESNET.replace("checkpoint_every: 2", "checkpoint_every: 1"))
    out = tmp_path / "out"
    train("srresnet", config, faces, out, max_steps=1)
    before = read_checkpoint(out / "srresnet" / "last.pt", "srresnet")["model_state"]
    result = train("srresnet", config, faces, out)  # resumes and runs step 2, which overflows
    after = torch.load(result.weights, weights_only=True)["model_state"]
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    # the optimiser step was skipped: only BatchNorm's running statistics moved (the forward ran)
    assert changed and all(k.split(".")[-1] in ("running_mean", "running_var", "num_batches_tracked")
                           for k in changed), changed
    scaler = _scaler(result.checkpoint)
    assert (scaler["scale"], scaler["_growth_tracker"]) == (32768.0, 0)


def test_mixed_precision_resume_restores_the_scaler(tmp_path, faces, toy_identity, amp_on_cpu):
    config = _config(tmp_path, TINY_FR)
    straight = train("srresnet-fr", config, faces, tmp_path / "straight")
    train("srresnet-fr", config, faces, tmp_path / "resumed", max_steps=4)
    resumed = train("srresnet-fr", config, faces, tmp_path / "resumed")
    assert _scaler(resumed.checkpoint) == _scaler(straight.checkpoint)  # not a fresh scaler's count of 3
    a = torch.load(straight.weights, weights_only=True)["model_state"]
    b = torch.load(resumed.weights, weights_only=True)["model_state"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_finished_run_is_not_trained_again(tmp_path, faces):
    config = _config(tmp_path, TINY_SRRESNET)
    first = train("srresnet", config, faces, tmp_path / "out")
    again = train("srresnet", config, faces, tmp_path / "out")
    assert again.step == first.step == 2 and again.complete
    a = torch.load(first.checkpoint, weights_only=True)["model_state"]
    b = torch.load(again.weights, weights_only=True)["model_state"]
    assert all(torch.equal(a[k], b[k]) for k in a)


# --- epochs, per-stage batch sizes, schedules in epochs, validation hold-out, early stopping ------

def test_multistep_and_epoch_schedules_hand_checked():
    from baselines.config import ScheduleConfig, StageConfig

    # C-SRIP's cascade (../shared/papers/001 Sec. 3.4): x 1/3 at the end of epochs 10, 25, 50, 80
    multi = StageConfig("cascade", epochs=100, lr=0.9,
                        schedule=ScheduleConfig("multistep", milestones=[10, 25, 50, 80], gamma=1 / 3, unit="epochs"))
    spe = 7   # steps per epoch
    at = {epoch: training._learning_rate(multi, epoch * spe + 3, 700, spe) for epoch in (0, 9, 10, 24, 25, 79, 80, 99)}
    assert at == pytest.approx({0: 0.9, 9: 0.9, 10: 0.3, 24: 0.3, 25: 0.1, 79: 0.9 / 27, 80: 0.9 / 81, 99: 0.9 / 81})
    assert training._learning_rate(multi, 10 * spe - 1, 700, spe) == pytest.approx(0.9)   # the last step of epoch 10
    # C-Face (004 Sec. 4.2): x 0.99 after each epoch; the SqueezeNet priors: x 1/3 every 20 epochs
    decay = StageConfig("cface", epochs=10, lr=2e-4, schedule=ScheduleConfig("step", every=1, gamma=0.99, unit="epochs"))
    assert training._learning_rate(decay, 3 * spe, 70, spe) == pytest.approx(2e-4 * 0.99 ** 3)
    assert training._learning_rate(decay, 3 * spe - 1, 70, spe) == pytest.approx(2e-4 * 0.99 ** 2)
    every20 = StageConfig("priors", epochs=100, lr=1e-4, schedule=ScheduleConfig("step", every=20, gamma=1 / 3,
                                                                                 unit="epochs"))
    assert [training._learning_rate(every20, e * spe, 700, spe) for e in (19, 20, 40)] == \
        pytest.approx([1e-4, 1e-4 / 3, 1e-4 / 9])
    # steps (the default unit) are unchanged by steps_per_epoch
    step = StageConfig("mse", steps=10, lr=0.1, schedule=ScheduleConfig("step", every=4, gamma=0.5))
    assert training._learning_rate(step, 9, 10, spe) == pytest.approx(0.025)


def test_split_validation_per_identity_is_seeded_and_keeps_a_training_face(faces):
    from baselines.facedata import StageBatches, open_training_faces, split_validation

    fs = open_training_faces(faces)                      # 3 people x 3 faces
    train_i, held = split_validation(fs, 0.34, seed=0)   # round(1.02) = 1 of each identity
    assert len(held) == 3 and sorted(np.asarray(fs.labels)[held].tolist()) == [0, 1, 2]
    assert sorted(train_i.tolist() + held.tolist()) == list(range(9))
    again, held2 = split_validation(fs, 0.34, seed=0)
    assert np.array_equal(held, held2) and np.array_equal(train_i, again)
    assert any(not np.array_equal(held, split_validation(fs, 0.34, seed=s)[1]) for s in range(1, 6))
    _, most = split_validation(fs, 0.99, seed=0)         # at most n - 1 of each identity
    assert len(most) == 6
    _, none = split_validation(fs, 0.1, seed=0)          # round(0.3) = 0
    assert len(none) == 0
    # batches draw only the training faces
    batches = StageBatches(len(train_i), 2, 0, 0, 0, 9, True, train_i)
    seen = {i for b in batches for i, _ in b}
    assert seen <= set(train_i.tolist()) and len(seen) == 6


@dataclass
class _ESOptions:
    width: int = 4


def _es_fit(ctx, batch):
    ctx.state.setdefault("seen", []).extend(int(i) for i in batch.index)
    return {"mse": F.mse_loss(ctx.model(batch.lr), batch.hr)}


def _es_validate(ctx, batch):
    sr = ctx.model(batch.lr)
    n = len(batch.hr)
    return {"score": torch.full((n,), 0.5), "err": ((sr - batch.hr) ** 2).mean((1, 2, 3)),
            "index": batch.index.double()}


@pytest.fixture
def es_model(monkeypatch):
    """A toy with a validation metric that never improves after its first value ('score')."""
    spec = TrainableModel("toy-es", "toy-es", _ESOptions, lambda o, s: _Toy(s, o.width),
                          {"fit": StageSpec(_es_fit, ("mse",), validate=_es_validate,
                                            metrics={"score": "max", "err": "min", "index": "max"})})
    monkeypatch.setitem(TRAINABLE, spec.name, spec)
    return spec


ES = """\
    model: {name: toy-es}
    data: {hr_size: [16, 16], scale: 4}
    batch_size: 2
    log_every: 1
    checkpoint_every: 4
    validation: {fraction: 0.34}
    stages:
      - {name: fit, epochs: 10, lr: 1.0e-3, loss_weights: {mse: 1.0},
         early_stopping: {metrics: [score], patience: 2, every: 1, unit: epochs}}
      - {name: fit, epochs: 1, batch_size: 3, lr: 1.0e-3, loss_weights: {mse: 1.0}}
    """


def test_early_stopping_stops_after_patience_evaluations_without_gain(tmp_path, faces, es_model):
    """9 faces, 1 of each of 3 identities held out: 6 train, 3 steps of 2 per epoch. 'score'
    improves at the first evaluation only: evaluations at steps 3, 6, 9; the stage stops at 9
    (2 without gain); the next stage (batch 3: 2 steps per epoch) runs its one epoch."""
    result = train("toy-es", _config(tmp_path, ES), faces, tmp_path / "out")
    assert result.complete and result.step == 9 + 2 and result.total_steps == 30 + 2
    lines = _log(result)
    checks = [ln for ln in lines if "validation" in ln]
    assert [(ln["step"], ln["improved"], ln["evaluations_without_gain"], ln["early_stopped"]) for ln in checks] == \
        [(3, ["score"], 0, False), (6, [], 1, False), (9, [], 2, True)]
    assert checks[0]["validation"]["score"] == pytest.approx(0.5)
    # validation is on the 3 held-out faces, never trained on
    from baselines.facedata import open_training_faces, split_validation

    _, held = split_validation(open_training_faces(faces), 0.34, 0)
    assert checks[0]["validation"]["index"] == pytest.approx(float(np.mean(held)))
    ckpt = torch.load(result.checkpoint.with_name("checkpoint-8.pt"), weights_only=True)
    assert set(ckpt["stage_state"]["seen"]) == set(range(9)) - set(held.tolist())
    assert ckpt["stage_state"]["early_stopping"] == {"best": {"score": 0.5}, "bad": 1, "evaluations": 2}
    assert [r["stage"] for r in lines if "loss" in r] == ["fit"] * 11
    assert [r["step"] for r in lines if "loss" in r] == list(range(1, 12))


def test_early_stopping_resumes_bit_identically(tmp_path, faces, es_model):
    config = _config(tmp_path, ES)
    straight = train("toy-es", config, faces, tmp_path / "straight")
    for k in (2, 5, 9, 10):   # stops inside the first stage, exactly at the early stop, in the second
        partial = train("toy-es", config, faces, tmp_path / "resumed", max_steps=k)
        assert partial.step == k and not partial.complete
    resumed = train("toy-es", config, faces, tmp_path / "resumed")
    assert (resumed.step, resumed.complete) == (straight.step, True) == (11, True)
    a = torch.load(straight.weights, weights_only=True)["model_state"]
    b = torch.load(resumed.weights, weights_only=True)["model_state"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _comparable(_log(straight)) == _comparable(_log(resumed))
    # killed right after the step-8 checkpoint (best set, 1 evaluation without gain): the same stop
    (tmp_path / "killed" / "toy-es").mkdir(parents=True)
    for name in ("checkpoint-8.pt", "scalars.jsonl"):
        (tmp_path / "killed" / "toy-es" / name).write_bytes((tmp_path / "straight" / "toy-es" / name).read_bytes())
    (tmp_path / "killed" / "toy-es" / "checkpoint-8.pt").rename(tmp_path / "killed" / "toy-es" / "last.pt")
    again = train("toy-es", config, faces, tmp_path / "killed")
    c = torch.load(again.weights, weights_only=True)["model_state"]
    assert again.step == 11 and all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("edit,match", [
    (("    validation: {fraction: 0.34}\n", ""), r"stages\[0\]\.early_stopping: needs held-out faces: add a validation"),
    (("metrics: [score]", "metrics: [psnr]"), r"stages\[0\]\.early_stopping\.metrics: stage fit has no validation "
                                              r"metric 'psnr' \(its metrics: score, err, index\)"),
    (("metrics: [score]", "metrics: []"), r"early_stopping\.metrics: needs at least one metric"),
    (("patience: 2", "patience: 0"), r"early_stopping\.patience: must be >= 1"),
    (("fraction: 0.34", "fraction: 1.5"), r"validation\.fraction: must be between 0 and 1"),
    (("fraction: 0.34", "fraction: 0.1"), r"validation\.fraction 0\.1 holds out none of the 9 faces"),
    (("batch_size: 3,", "batch_size: 7,"), r"6 training faces in .* \(after 3 held out for validation\) are fewer "
                                           r"than one batch of 7"),
    (("batch_size: 3,", "batch_size: 0,"), r"stages\[1\]\.batch_size: must be >= 1"),
    (("loss_weights: {mse: 1.0}}\n", "loss_weights: {mse: 1.0}, schedule: {kind: multistep, milestones: [3, 2]}}\n"),
     r"stages\[1\]\.schedule\.milestones: a multistep schedule needs increasing milestones >= 1, got \[3, 2\]"),
    (("unit: epochs}}", "unit: epoch}}"), r"early_stopping\.unit: must be one of steps, epochs"),
])
def test_early_stopping_config_errors_come_before_any_step(tmp_path, faces, es_model, edit, match):
    out = tmp_path / "out"
    with pytest.raises((ConfigError, DataError), match=match):
        train("toy-es", _config(tmp_path, ES.replace(*edit)), faces, out)
    assert not out.exists()


def test_a_stage_without_validation_metrics_refuses_early_stopping(tmp_path, faces):
    text = TINY_SRRESNET.replace("stages:", "validation: {fraction: 0.34}\n    stages:").replace(
        "loss_weights: {mse: 1.0}}", "loss_weights: {mse: 1.0}, early_stopping: {metrics: [mse]}}")
    with pytest.raises(ConfigError, match=r"stages\[0\]\.early_stopping: stage mse of srresnet has no validation "
                                          r"metrics to stop on"):
        train("srresnet", _config(tmp_path, text), faces, tmp_path / "out")


def test_resuming_a_checkpoint_written_before_an_option_existed(tmp_path, faces, monkeypatch):
    """Model options added later take their defaults: a checkpoint without them still resumes."""
    config = _config(tmp_path, TINY_SRRESNET)
    first = train("srresnet", config, faces, tmp_path / "out", max_steps=1)
    ckpt = torch.load(first.checkpoint, weights_only=False)
    ckpt["model_options"] = {"blocks": 1}                       # as if 'filters' came later (default 64)
    torch.save(ckpt, first.checkpoint)
    with pytest.raises(ConfigError, match=r"trained with model options \{'blocks': 1\}"):  # 64 != 4
        train("srresnet", config, faces, tmp_path / "out")
    ckpt["model_options"] = {"blocks": 1, "filters": 4}
    torch.save(ckpt, first.checkpoint)
    assert train("srresnet", config, faces, tmp_path / "out").complete


def test_validation_max_images_takes_evenly_spaced_held_out_faces(tmp_path, faces, es_model):
    from baselines.facedata import open_training_faces, split_validation

    text = ES.replace("validation: {fraction: 0.34}", "validation: {fraction: 0.67, max_images: 2}")
    result = train("toy-es", _config(tmp_path, text), faces, tmp_path / "out", max_steps=3)
    _, held = split_validation(open_training_faces(faces), 0.67, 0)     # 2 of each identity: 6 held out
    assert len(held) == 6
    checks = [ln for ln in _log(result) if "validation" in ln]          # 3 training faces: 1 step per epoch
    assert [ln["step"] for ln in checks] == [1, 2, 3]
    assert checks[0]["validation"]["index"] == pytest.approx((held[0] + held[5]) / 2)
