"""The training framework (benchmark.training.trainer, config, losses) on tiny synthetic data.

Each test trains models of a few hundred parameters on 6-9 synthetic 112x96 faces at a
16x16 HR size for a few steps, so it runs in seconds. A toy model registered here gives
a second architecture and a stage that needs identity labels; a toy identity backend
with BatchNorm stands in for the FR network (the real one is in the smoke tests).
"""
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from benchmark.training import trainer as training
from benchmark.training.losses import fr_loss, mse_loss
from baselines.srresnet import SRResNetAdapter
from benchmark.training.trainer import TRAINABLE, balance_weights, read_checkpoint, train
from benchmark.errors import AdapterError, ConfigError, DataError

from training_fixtures import (  # noqa: F401 (fixtures are used by name)
    _comparable,
    _config,
    _log,
    faces,
    flat_faces,
    TINY_FR,
    TINY_SRRESNET,
    toy_identity,
    toy_model,
)


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
    (("batch_size: 3", "batch_size: 3\n    seed: -1"), r"c\.yaml: seed: must be between 0 and 9223372036854775807, "
                                                   r"got -1"),
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
    from benchmark.training.config import ScheduleConfig, StageConfig

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
