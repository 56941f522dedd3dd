"""The trainer's epochs, per-stage batch sizes, schedules in epochs, validation hold-out and
early stopping (issue 16), on tiny synthetic data; the shared fixtures are in training_fixtures.py."""
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.training import trainer as training
from benchmark.training.trainer import TRAINABLE, StageSpec, TrainableModel, train
from benchmark.errors import ConfigError, DataError

from training_fixtures import (  # noqa: F401 (fixtures are used by name)
    _comparable,
    _config,
    _log,
    _Toy,
    faces,
    TINY_SRRESNET,
)


# --- epochs, per-stage batch sizes, schedules in epochs, validation hold-out, early stopping ------

def test_multistep_and_epoch_schedules_hand_checked():
    from benchmark.training.config import ScheduleConfig, StageConfig

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
    from benchmark.training.facedata import StageBatches, open_training_faces, split_validation

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
    from benchmark.training.facedata import open_training_faces, split_validation

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
    from benchmark.training.facedata import open_training_faces, split_validation

    text = ES.replace("validation: {fraction: 0.34}", "validation: {fraction: 0.67, max_images: 2}")
    result = train("toy-es", _config(tmp_path, text), faces, tmp_path / "out", max_steps=3)
    _, held = split_validation(open_training_faces(faces), 0.67, 0)     # 2 of each identity: 6 held out
    assert len(held) == 6
    checks = [ln for ln in _log(result) if "validation" in ln]          # 3 training faces: 1 step per epoch
    assert [ln["step"] for ln in checks] == [1, 2, 3]
    assert checks[0]["validation"]["index"] == pytest.approx((held[0] + held[5]) / 2)
