"""C-Face: SRGAN networks against hand counts, every loss on a hand-checked case, the compare
faces (neighbours, cache, draws), which parts each of the four stages trains, the adapter,
and bad input. Stand-ins: a tiny identity network and a one-conv feature network."""
import json
import logging
import math

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from baselines import cface
from benchmark.training.config import load_config
from benchmark.training.facedata import FaceTrainingSet, open_training_faces
from benchmark.training.identity import load_identity_network
from benchmark.training.trainer import TRAINABLE, Batch, StageContext, read_checkpoint, train
from benchmark.contracts.model_adapters import create_model
from benchmark.faces.images import read_batch
from benchmark.contracts.degradation import make_degradation
from benchmark.errors import AdapterError, ConfigError, DataError
from benchmark.faces.frames import fit_to_hr_size

from _baseline_stand_ins import (TINY_IDENTITY, TinyIdentityNet, register_tiny_identity,
                                 register_tiny_perceptual, synthetic_faces)


# --- networks ------------------------------------------------------------------------

def test_generator_is_srresnet16_with_the_hand_counted_parameters():
    block = 2 * (64 * 64 * 9) + 2 * (2 * 64) + 64            # 2 convs (no bias), 2 BN, PReLU
    head = 3 * 64 * 81 + 64 + 64                              # 9x9 conv + bias, PReLU
    trunk_end = 64 * 64 * 9 + 2 * 64                          # conv (no bias) + BN
    up = 64 * 256 * 9 + 256 + 64                              # conv + bias, PixelShuffle, PReLU
    tail = 64 * 3 * 81 + 3
    x4 = head + 16 * block + trunk_end + 2 * up + tail
    assert x4 == 1_548_547                                    # the "1.5M" of SRResNet (EDSR, Table 1)
    for scale, n_up in ((4, 2), (8, 3)):
        g = cface.build(cface.CFaceOptions(d_dense=1), scale).generator  # a small D: not tested here
        assert sum(p.numel() for p in g.parameters()) == head + 16 * block + trunk_end + n_up * up + tail
        assert g(torch.rand(2, 3, 14, 12)).shape == (2, 3, 14 * scale, 12 * scale)


@pytest.mark.parametrize("hr, dense_in", [((112, 96), 7 * 6 * 512), ((96, 96), 6 * 6 * 512)])
def test_discriminator_is_srgans_with_the_hand_counted_parameters(hr, dense_in):
    convs = (3 * 64 * 9 + 64                                  # first conv, bias, no BN
             + 64 * 64 * 9 + 2 * 64 + 64 * 128 * 9 + 2 * 128 + 128 * 128 * 9 + 2 * 128
             + 128 * 256 * 9 + 2 * 256 + 256 * 256 * 9 + 2 * 256 + 256 * 512 * 9 + 2 * 512
             + 512 * 512 * 9 + 2 * 512)
    dense = dense_in * 1024 + 1024 + 1024 + 1
    d = cface.SRGANDiscriminator(hr)
    assert sum(p.numel() for p in d.parameters()) == convs + dense
    if hr == (112, 96):
        assert convs + dense == 26_709_377
    assert [m.stride[0] for m in d.modules() if isinstance(m, nn.Conv2d)] == [1, 2, 1, 2, 1, 2, 1, 2]
    assert {m.negative_slope for m in d.modules() if isinstance(m, nn.LeakyReLU)} == {0.2}
    assert d(torch.rand(3, 3, *hr)).shape == (3,)


# --- losses --------------------------------------------------------------------------

def test_perceptual_loss_is_feature_mse_after_imagenet_normalisation():
    f = cface.ImageNetFeatures(nn.Identity(), "identity")
    mean = torch.tensor(cface.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(cface.IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(f(mean.expand(1, 3, 2, 2)), torch.zeros(1, 3, 2, 2), atol=1e-7)
    assert torch.allclose(f((mean + std).expand(1, 3, 2, 2)), torch.ones(1, 3, 2, 2), atol=1e-6)
    sr, hr = torch.full((2, 3, 4, 4), 0.5), torch.full((2, 3, 4, 4), 0.25)
    # features differ by 0.25 / std_c in channel c: mean over channels of (0.25 / std_c)^2
    want = sum((0.25 / s) ** 2 for s in cface.IMAGENET_STD) / 3
    assert float(cface.perceptual_loss(f, sr, hr)) == pytest.approx(want, rel=1e-5)


def test_vgg19_features_end_after_the_named_relu_and_match_torchvision(caplog):
    from torchvision.models import vgg19

    with caplog.at_level(logging.WARNING):
        f = cface._vgg19(cface.CFaceOptions(perceptual_weights="random-init", perceptual_layer="relu2_2"), "c.yaml")
    assert "RANDOMLY INITIALISED VGG19" in caplog.text and f.source == "random-init"
    convs = [m for m in f.features if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4 and isinstance(f.features[-1], nn.ReLU)
    # torchvision's VGG19 with these weights, on input normalised by hand, is the oracle
    ref = vgg19(weights=None).features
    ref.load_state_dict(cface.vgg19_features().state_dict())  # same keys and shapes as torchvision's
    ref[:9].load_state_dict(f.features.state_dict())
    x = torch.rand(1, 3, 32, 32)
    mean, std = torch.tensor(cface.IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(cface.IMAGENET_STD).view(1, 3, 1, 1)
    normalised = (x - mean) / std
    with torch.no_grad():
        assert torch.allclose(f(x), ref[:9].eval()(normalised), atol=1e-5)
    deep = cface._vgg19(cface.CFaceOptions(perceptual_weights="random-init"), "c.yaml")  # relu5_4, VGG54
    assert sum(isinstance(m, nn.Conv2d) for m in deep.features) == 16 and isinstance(deep.features[-1], nn.ReLU)
    with torch.no_grad():
        assert deep(torch.rand(1, 3, 64, 48)).shape == (1, 512, 4, 3)
    assert not any(p.requires_grad for p in deep.parameters())


def test_vgg19_weights_come_from_torch_home_or_a_path_and_a_missing_file_says_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    want = tmp_path / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    with pytest.raises(ConfigError, match=f"c.yaml: .*VGG19 weights at {want}: download {cface.VGG19_URL}"):
        cface._vgg19(cface.CFaceOptions(perceptual_layer="relu1_2"), "c.yaml")
    with torch.random.fork_rng():
        torch.manual_seed(5)
        features = cface.vgg19_features()
    want.parent.mkdir(parents=True)
    # torchvision's file holds features.* and classifier.*; the classifier is not needed
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}
               | {"classifier.0.bias": torch.zeros(4096)}, want)
    f = cface._vgg19(cface.CFaceOptions(perceptual_layer="relu1_2"), "c.yaml")
    assert torch.equal(f.features[2].weight, features[2].weight) and f.source == str(want)
    other = tmp_path / "mine.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, other)
    with pytest.raises(ConfigError, match="mine.pth is not torchvision's VGG19 state dict"):
        cface._vgg19(cface.CFaceOptions(perceptual_weights=str(other)), "c.yaml")


def test_adversarial_and_discriminator_losses_by_hand():
    logits = torch.tensor([0.0, math.log(3.0)])                # D = 0.5, 0.75
    assert float(cface.adversarial_loss(logits)) == pytest.approx((math.log(2) + math.log(4 / 3)) / 2)
    real, fake = cface.discriminator_losses(torch.tensor([math.log(3.0)]), torch.tensor([math.log(3.0)]))
    assert float(real) == pytest.approx(-math.log(0.75)) and float(fake) == pytest.approx(-math.log(0.25))


def _mean_colour(x):  # phi for hand-checked cases: the L2-normalised mean colour
    return torch.nn.functional.normalize(x.mean((2, 3)), dim=1)


def _solid(*colours):
    return torch.stack([torch.tensor(c, dtype=torch.float32).view(3, 1, 1).expand(3, 4, 4) for c in colours])


def test_cface_loss_terms_by_hand():
    sr = _solid((1, 0, 0), (0, 0, 1), (1, 0, 0)).requires_grad_(True)
    hr = _solid((0, 1, 0), (0, 0, 1), (1, 0, 0))
    hrc = _solid((0.6, 0.8, 0), (0, 0, 1), (0, 1, 0))
    has = torch.tensor([True, True, False])
    si, compare = cface.cface_losses(_mean_colour, sr, hr, hrc, has)
    # si: |red - green| = sqrt 2, then 0, 0
    assert float(si.detach()) == pytest.approx(math.sqrt(2) / 3)
    # face 0: |SR - HRc| = sqrt(0.4^2 + 0.8^2) = sqrt 0.8, |HR - HRc| = sqrt(0.6^2 + 0.2^2) = sqrt 0.4
    # face 1: SR = HRc, hinge max(0 - 0, 0) = 0; face 2 has no compare face (its hinge, sqrt 2 - sqrt 2 = 0
    # anyway) and is left out of the mean: 2 faces count
    assert float(compare.detach()) == pytest.approx((math.sqrt(0.8) - math.sqrt(0.4)) / 2)
    (si + compare).backward()
    assert sr.grad.abs().sum() > 0
    _, none = cface.cface_losses(_mean_colour, sr, hr, hrc, torch.tensor([False, False, False]))
    assert float(none.detach()) == 0.0
    # SR already closer to HRc than HR is: no penalty
    _, ok = cface.cface_losses(_mean_colour, _solid((0.6, 0.8, 0)), _solid((0, 1, 0)), _solid((0.6, 0.8, 0)),
                               torch.tensor([True]))
    assert float(ok) == 0.0


def test_batch_hard_triplet_loss_by_hand():
    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.0, 2.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # anchor 0: hardest positive 1 (d 1), hardest negative 3 (d 2): max(1 - 2 + 0.5, 0) = 0
    # anchor 1: positive d 1; negatives d sqrt 10, sqrt 5 -> sqrt 5: 0
    # anchor 2: positive d 1; negatives d 3, sqrt 10 -> 3: 0
    # anchor 3: positive d 1; negatives d 2, sqrt 5 -> 2: 0
    assert float(cface.batch_hard_triplet_loss(emb, labels, 0.5)) == 0.0
    # margin 1.5: anchors 0 and 3 give 0.5, anchor 1 gives 2.5 - sqrt 5, anchor 2 gives 0
    want = (0.5 + (2.5 - math.sqrt(5)) + 0 + 0.5) / 4
    assert float(cface.batch_hard_triplet_loss(emb, labels, 1.5)) == pytest.approx(want)
    # an anchor without a positive (label 2 alone) is left out; no negatives at all: 0
    lone = cface.batch_hard_triplet_loss(torch.cat([emb, torch.tensor([[9.0, 9.0]])]),
                                         torch.tensor([0, 0, 1, 1, 2]), 1.5)
    assert float(lone) == pytest.approx(want)
    assert float(cface.batch_hard_triplet_loss(emb, torch.zeros(4, dtype=torch.long), 1.0)) == 0.0


# --- compare faces -------------------------------------------------------------------

def test_nearest_same_identity_by_hand():
    emb = np.array([[0.0], [1.0], [3.0], [6.0], [10.0], [0.0], [5.0], [5.5]])
    labels = np.array([0, 0, 0, 0, 0, 1, 2, 2])
    t = cface.nearest_same_identity(emb, labels, 3)
    assert t[0].tolist() == [1, 2, 3]
    assert t[2].tolist() == [1, 0, 3]        # d 2, then a tie at 3 between faces 0 and 3: lower index first
    assert t[4].tolist() == [3, 2, 1]
    assert t[5].tolist() == [-1, -1, -1]     # a single-image identity has none
    assert t[6].tolist() == [7, -1, -1] and t[7].tolist() == [6, -1, -1]


def test_compare_draws_are_seeded_uniform_and_resumable():
    table = np.array([[1, 2, 3], [0, -1, -1], [-1, -1, -1], [0, 1, 2]])
    idx = [0, 1, 2]
    draws = [cface.draw_compare(table, idx, 7, step) for step in range(600)]
    again = [cface.draw_compare(table, idx, 7, step) for step in range(600)]
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(draws, again))
    assert any(not np.array_equal(a[0], cface.draw_compare(table, idx, 8, s)[0]) for s, a in enumerate(draws))
    first = [d[0][0] for d in draws]
    assert set(first) == {1, 2, 3} and all(150 <= first.count(v) <= 250 for v in (1, 2, 3))
    assert all(d[0][1] == 0 and d[0][2] == -1 for d in draws)
    assert draws[0][1].tolist() == [True, True, False]


def _training_set(root, hr=(112, 96)):
    return FaceTrainingSet(open_training_faces(root), hr, make_degradation("bicubic", scale=4))


def test_compare_faces_are_the_nearest_in_phi_computed_once_and_cached_by_data_and_network(tmp_path, monkeypatch):
    register_tiny_identity(monkeypatch)
    root = synthetic_faces(tmp_path / "faces", 3, 5)
    data = _training_set(root)
    phi = load_identity_network(TINY_IDENTITY, data.frame)
    before = {k: v.clone() for k, v in phi.state_dict().items()}
    table = cface.compare_faces(data, phi, 3, "cpu", batch_size=4, cache_root=tmp_path / "cache")
    assert all(torch.equal(before[k], v) for k, v in phi.state_dict().items())  # BN statistics untouched
    # independently: every face embedded alone, BatchNorm on running statistics
    net = TinyIdentityNet()
    net.load_state_dict(phi.backend.state_dict())
    net.eval()
    with torch.no_grad():
        e = np.concatenate([torch.nn.functional.normalize(net(torch.from_numpy(read_batch([p]))), dim=1).numpy()
                            for p in data.paths])
    labels = data.faces.labels
    for i in range(len(e)):
        same = [j for j in range(len(e)) if labels[j] == labels[i] and j != i]
        want = sorted(same, key=lambda j: np.linalg.norm(e[i] - e[j]))[:3]
        assert table[i].tolist() == want
    files = list((tmp_path / "cache" / "compare-faces").glob("*.npz"))
    assert len(files) == 1

    def boom(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(phi, "forward", boom)
    assert np.array_equal(cface.compare_faces(data, phi, 3, "cpu", cache_root=tmp_path / "cache"), table)
    monkeypatch.undo()
    register_tiny_identity(monkeypatch)
    with torch.no_grad():  # another network: another key
        phi.backend.head.bias.add_(1.0)
    cface.compare_faces(data, phi, 3, "cpu", cache_root=tmp_path / "cache")
    img = data.paths[0]  # other data: another key
    img.write_bytes((root / "Person_01" / "Person_01_0001.png").read_bytes())
    cface.compare_faces(_training_set(root), phi, 3, "cpu", cache_root=tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "compare-faces").glob("*.npz"))) == 3


def test_the_cface_stage_compares_with_the_drawn_same_identity_faces(tmp_path, monkeypatch):
    root = synthetic_faces(tmp_path / "faces", 2, 3)
    data = _training_set(root, (56, 48))
    model = cface.build(cface.CFaceOptions(blocks=1, filters=8, d_filters=4, d_dense=8, hr_size=(56, 48)), 4)
    model.aux["perceptual"] = cface.ImageNetFeatures(nn.Identity(), "identity")
    model.aux["compare"] = np.array([[1, 2, -1], [0, -1, -1], [-1, -1, -1], [5, 4, -1], [3, 5, -1], [3, 4, -1]])
    model.recognition = nn.Identity()
    seen = {}

    def capture(phi, sr, hr, hrc, has):
        seen.update(hrc=hrc, has=has)
        return sr.sum() * 0, sr.sum() * 0

    monkeypatch.setattr(cface, "cface_losses", capture)
    index = torch.tensor([0, 2, 3])
    hr = torch.from_numpy(fit_to_hr_size(read_batch([data.paths[i] for i in index]), (56, 48)))
    batch = Batch(torch.rand(3, 3, 14, 12), hr, torch.tensor([0, 0, 1]), index)
    ctx = StageContext(model, None, None, data.frame, 4, torch.device("cpu"), data.faces, {}, seed=3, step=11)
    terms = cface.cface_stage(ctx, batch)
    assert set(terms) == {"perceptual", "adversarial", "si", "compare", "d_real", "d_fake"}
    chosen, has = cface.draw_compare(model.aux["compare"], [0, 2, 3], 3, 11)
    assert has.tolist() == [True, False, True] and seen["has"].tolist() == [True, False, True]
    want = fit_to_hr_size(read_batch([data.paths[chosen[0]], data.paths[chosen[2]]]), (56, 48))
    assert np.allclose(seen["hrc"][[0, 2]].numpy(), want)
    assert {data.faces.labels[chosen[0]], data.faces.labels[chosen[2]]} == {0, 1}


# --- training ------------------------------------------------------------------------

ALGORITHM_1 = ("mse", "cface", "recognition", "cface_joint")


def _config(tmp_path, stages=ALGORITHM_1, **changes):
    cface_weights = {"perceptual": 0.006, "adversarial": 1.0e-3, "si": 0.01, "compare": 0.01,
                     "d_real": 1.0, "d_fake": 1.0}
    weights = {"mse": {"mse": 1.0},
               "gan": {"perceptual": 0.006, "adversarial": 1.0e-3, "d_real": 1.0, "d_fake": 1.0},
               "recognition": {"triplet": 1.0},
               "cface": cface_weights, "cface_joint": {**cface_weights, "triplet": 1.0}}
    raw = {"model": {"name": "cface", "blocks": 1, "filters": 8, "d_filters": 4, "d_dense": 8,
                     "hr_size": [56, 48], "perceptual_network": "tiny-test-features"},
           "data": {"hr_size": [56, 48], "scale": 4, "workers": 0, "flip": False},
           "batch_size": 4, "log_every": 1, "checkpoint_every": 100, "keep_checkpoints": 0,
           "identity_network": TINY_IDENTITY, "mixed_precision": False,
           "stages": [{"name": s, "steps": 1, "lr": 1.0e-3, "loss_weights": weights[s]} for s in stages]}
    for key, value in changes.items():
        target = raw
        *path, last = key.split(".")
        for p in path:
            target = target[p]
        target[last] = value
    path = tmp_path / "cface.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _state(path):
    return read_checkpoint(path, "cface")["model_state"]


def _changed(a, b, prefix):
    keys = [k for k in a if k.startswith(prefix)]
    assert keys, prefix
    return any(not torch.equal(a[k], b[k]) for k in keys)


def _weights_only(state, prefix):
    return [k for k in state if k.startswith(prefix) and not k.split(".")[-1].startswith(("running", "num_"))]


def test_each_stage_trains_its_own_parts(tmp_path, monkeypatch):
    register_tiny_identity(monkeypatch)
    register_tiny_perceptual(monkeypatch)
    monkeypatch.setenv("FHBENCH_CACHE", str(tmp_path / "cache"))
    data = synthetic_faces(tmp_path / "faces", 3, 3)
    kinds = ("mse", "gan", "cface", "recognition", "cface_joint")  # every stage kind, one step each
    config = _config(tmp_path, stages=kinds)
    out = tmp_path / "out"
    states = []
    for k in range(1, len(kinds) + 1):  # stop after each stage
        result = train("cface", config, data, out, device="cpu", max_steps=k)
        states.append(_state(result.checkpoint))
    mse, gan, cf, rec, joint = states
    options = load_config(config, {n: m.options for n, m in TRAINABLE.items()}).model_options
    torch.manual_seed(0)  # the run builds the model right after seeding with the config's seed
    init = cface.build(options, 4).state_dict()
    assert _changed(init, mse, "generator.") and not _changed(init, mse, "discriminator.")
    assert _changed(mse, gan, "generator.") and _changed(mse, gan, "discriminator.")
    assert not _changed(mse, gan, "recognition.")
    # cface (Algorithm 1 step 1): generator and discriminator move; the copy's weights do not
    # (its BN statistics may)
    assert _changed(gan, cf, "generator.") and _changed(gan, cf, "discriminator.")
    weights = _weights_only(cf, "recognition.")
    assert weights and all(torch.equal(gan[k], cf[k]) for k in weights)
    # recognition stage: only the copy moves; the generator's BN statistics stay (eval mode)
    assert _changed(cf, rec, "recognition.backend.") and not _changed(cf, rec, "generator.")
    assert not _changed(cf, rec, "discriminator.")
    # cface_joint (step 4): all three move, the copy's weights included
    assert _changed(rec, joint, "generator.") and _changed(rec, joint, "discriminator.")
    assert any(not torch.equal(rec[k], joint[k]) for k in _weights_only(joint, "recognition.backend."))
    log_lines = [json.loads(ln) for ln in result.log.read_text().splitlines()]
    assert [ln["stage"] for ln in log_lines] == list(kinds)
    assert set(log_lines[2]) >= {"perceptual", "adversarial", "si", "compare", "d_real", "d_fake"}
    assert set(log_lines[4]) >= {"perceptual", "adversarial", "si", "compare", "d_real", "d_fake", "triplet"}
    # the adapter runs the generator of the final weights, without the recognition copy
    model = create_model("cface", scale=4, weights=str(result.weights))
    assert model.scale == 4 and model.module.recognition is None
    lr = torch.rand(2, 3, 14, 12)
    out_sr = model.super_resolve(lr, ["a", "b"])
    gen = cface.build(model.module.options, 4)
    gen.load_state_dict({k: v for k, v in joint.items() if not k.startswith("recognition.")})
    with torch.no_grad():
        assert torch.allclose(out_sr, gen.eval()(lr).clamp(0, 1))
    with pytest.raises(AdapterError, match="holds a cface x4 model .* not the cface x8 model"):
        create_model("cface", scale=8, weights=str(result.weights))


def test_resume_inside_the_joint_stage_ends_bit_identical(tmp_path, monkeypatch):
    """Three optimisers (generator, discriminator, recognition copy) and the compare draws
    come back from the checkpoint: stopped after step 5 of 6, resumed, the same weights."""
    register_tiny_identity(monkeypatch)
    register_tiny_perceptual(monkeypatch)
    monkeypatch.setenv("FHBENCH_CACHE", str(tmp_path / "cache"))
    data = synthetic_faces(tmp_path / "faces", 3, 3)
    config = _config(tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["stages"][3]["steps"] = 3  # mse, cface, recognition 1 step each, then cface_joint 3
    raw["checkpoint_every"] = 1
    config.write_text(yaml.safe_dump(raw))
    straight = train("cface", config, data, tmp_path / "straight", device="cpu")
    train("cface", config, data, tmp_path / "resumed", device="cpu", max_steps=5)
    resumed = train("cface", config, data, tmp_path / "resumed", device="cpu")
    assert straight.complete and resumed.complete and resumed.step == straight.step == 6
    a, b = _state(straight.weights), _state(resumed.weights)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ckpt = torch.load(resumed.checkpoint.with_name("checkpoint-5.pt"), weights_only=True)
    assert set(ckpt["optimizers"]) == {"generator", "discriminator", "recognition"}


def test_config_files_read_and_carry_the_paper_settings():
    """The paper's settings (../shared/papers/004, Sec. 3-4.2); every value is checked in
    tests/training/test_paper_settings.py, the stage layout here."""
    types = {n: m.options for n, m in TRAINABLE.items()}
    c = load_config("baselines/configs/cface.yaml", types)
    assert [s.name for s in c.stages] == ["mse", "cface", "recognition_asoftmax", "cface_joint_asoftmax"]
    o = c.model_options
    assert (o.blocks, o.filters, o.perceptual_layer, o.compare_k, tuple(o.hr_size)) == \
        (16, 64, "relu3_1", 3, tuple(c.data.hr_size))
    assert (o.si_distance, o.perceptual_reduction, o.asoftmax_m) == ("squared", "sum-channels", 4)
    step1 = c.stages[1]  # Algorithm 1 step 1: loss (7), alpha = 0.1, beta = 1.0, g1 = 0.05, g2 = 0.1
    assert step1.loss_weights == {"perceptual": 1.0, "adversarial": 0.1, "si": 0.05, "compare": 0.1,
                                  "d_real": 0.1, "d_fake": 0.1}
    assert (step1.lr, step1.epochs, step1.schedule.kind, step1.schedule.gamma, step1.schedule.unit) == \
        (2e-4, 10, "step", 0.99, "epochs")
    assert c.stages[3].loss_weights["asoftmax"] > 0  # step 4 also updates CNN_R with L_FR
    smoke = load_config("baselines/configs/smoke/cface.yaml", types)
    assert smoke.model_options.perceptual_weights == "random-init"
    assert [s.name for s in smoke.stages] == list(ALGORITHM_1)


def test_no_identity_labels_is_an_error_before_any_step(tmp_path, monkeypatch):
    register_tiny_identity(monkeypatch)
    register_tiny_perceptual(monkeypatch)
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in synthetic_faces(tmp_path / "faces", 2, 3).rglob("*.png"):
        p.rename(flat / p.name)
    with pytest.raises(DataError, match=r"stage 1 \(cface\) of cface needs identity labels"):
        train("cface", _config(tmp_path), flat, tmp_path / "out", device="cpu")
    assert not (tmp_path / "out" / "cface" / "scalars.jsonl").exists()


def test_single_image_identities_only_is_an_error_before_any_step(tmp_path, monkeypatch):
    register_tiny_identity(monkeypatch)
    register_tiny_perceptual(monkeypatch)
    monkeypatch.setenv("FHBENCH_CACHE", str(tmp_path / "cache"))
    data = synthetic_faces(tmp_path / "faces", 5, 1)
    with pytest.raises(DataError, match="compare faces need identities with at least two images"):
        train("cface", _config(tmp_path, stages=("mse", "cface")), data, tmp_path / "out", device="cpu")
    assert not (tmp_path / "out" / "cface" / "scalars.jsonl").exists()


@pytest.mark.parametrize("change, message", [
    ({"model.hr_size": [112, 96]}, "model.hr_size: the discriminator is built for 112x96 but data.hr_size is 56x48"),
    ({"model.perceptual_network": "alexnet"}, "model.perceptual_network: unknown network 'alexnet'"),
    ({"model.perceptual_network": "vgg19", "model.perceptual_layer": "relu9_9"}, "unknown VGG19 layer 'relu9_9'"),
    ({"model.compare_k": "three"}, "model.compare_k: must be an integer"),
    ({"model.g1": 1.0}, "model.g1: unknown key"),
])
def test_bad_config_is_one_clear_error_before_any_step(tmp_path, monkeypatch, change, message):
    register_tiny_identity(monkeypatch)
    register_tiny_perceptual(monkeypatch)
    monkeypatch.setenv("FHBENCH_CACHE", str(tmp_path / "cache"))
    data = synthetic_faces(tmp_path / "faces", 2, 3)
    with pytest.raises(ConfigError, match=message):
        train("cface", _config(tmp_path, **change), data, tmp_path / "out", device="cpu")
    assert not (tmp_path / "out" / "cface" / "scalars.jsonl").exists()


def test_missing_vgg19_weights_stop_the_run_before_any_step(tmp_path, monkeypatch):
    register_tiny_identity(monkeypatch)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    data = synthetic_faces(tmp_path / "faces", 2, 3)
    config = _config(tmp_path, stages=("mse", "gan"), **{"model.perceptual_network": "vgg19"})
    with pytest.raises(ConfigError, match="download https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"):
        train("cface", config, data, tmp_path / "out", device="cpu")
    assert not (tmp_path / "out" / "cface" / "scalars.jsonl").exists()
