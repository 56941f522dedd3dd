"""C-Face in the paper's own forms (004): L_SI squared (eq. 4), L_P summed over channels
(eq. 2), L_FR (eq. 3) with the A-Softmax (Chebyshev psi), and the A-Softmax stages training
the recognition copy and its head. Split from test_cface.py (same stand-ins and helpers)."""
import json
import math

import pytest
import torch
import yaml
from torch import nn

from baselines import cface
from benchmark.contracts.model_adapters import create_model
from benchmark.training.trainer import train

from _baseline_stand_ins import register_tiny_identity, register_tiny_perceptual, synthetic_faces
from test_cface import _changed, _config, _mean_colour, _solid, _state


# --- the paper's own forms (004): L_SI squared (4), L_P summed over channels (2), L_FR (3) ----

def test_squared_si_distance_is_eq_4_of_the_paper():
    sr = _solid((1, 0, 0), (0, 0, 1), (1, 0, 0))
    hr = _solid((0, 1, 0), (0, 0, 1), (1, 0, 0))
    hrc = _solid((0.6, 0.8, 0), (0, 0, 1), (0, 1, 0))
    has = torch.tensor([True, True, False])
    si, compare = cface.cface_losses(_mean_colour, sr, hr, hrc, has, squared=True)
    # the squares of the distances of test_cface_loss_terms_by_hand: |red - green|^2 = 2
    assert float(si) == pytest.approx(2 / 3)
    assert float(compare) == pytest.approx((0.8 - 0.4) / 2)


def test_perceptual_sum_over_channels_is_eq_2_of_the_paper():
    f = cface.ImageNetFeatures(nn.Identity(), "identity")
    sr, hr = torch.full((2, 3, 4, 4), 0.5), torch.full((2, 3, 4, 4), 0.25)
    # Eq. (2): 1/(W H) sum over positions of the squared feature-vector difference: sum over channels
    want = sum((0.25 / s) ** 2 for s in cface.IMAGENET_STD)
    assert float(cface.perceptual_loss(f, sr, hr, "sum-channels")) == pytest.approx(want, rel=1e-5)
    assert float(cface.perceptual_loss(f, sr, hr, "sum-channels")) == \
        pytest.approx(3 * float(cface.perceptual_loss(f, sr, hr)), rel=1e-6)


def test_vgg19_relu_table_and_the_papers_relu3_1():
    """004 Sec. 3.1.2: i = 3, j = 5: the 5th convolution (conv3_1), before the 3rd max pooling."""
    assert {k: cface.VGG19_LAYERS[k] for k in ("relu1_2", "relu2_2", "relu3_4", "relu4_4", "relu5_4")} == \
        {"relu1_2": 4, "relu2_2": 9, "relu3_4": 18, "relu4_4": 27, "relu5_4": 36}   # unchanged
    assert len(cface.VGG19_LAYERS) == 16 and cface.VGG19_LAYERS["relu3_1"] == 12
    f = cface._vgg19(cface.CFaceOptions(perceptual_weights="random-init", perceptual_layer="relu3_1"), "c.yaml")
    convs = [m for m in f.features if isinstance(m, nn.Conv2d)]
    pools = [m for m in f.features if isinstance(m, nn.MaxPool2d)]
    assert (len(convs), len(pools), convs[-1].out_channels) == (5, 2, 256) and isinstance(f.features[-1], nn.ReLU)


def test_chebyshev_and_psi_of_the_a_softmax():
    theta = torch.linspace(0, math.pi, 721, dtype=torch.float64)
    assert torch.allclose(cface._chebyshev(torch.cos(theta), 4), torch.cos(4 * theta), atol=1e-12)
    # psi(theta) = (-1)^k cos(4 theta) - 2k is continuous and decreasing on [0, pi], from 1 to -7
    feats = torch.stack([torch.cos(theta), torch.sin(theta)], 1)            # unit vectors at angle theta
    w = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)        # class 0 at angle 0
    labels = torch.zeros(len(theta), dtype=torch.int64)
    # loss per face = -log(e^psi / (e^psi + e^-cos)) -> recover psi from it
    losses = torch.stack([cface.a_softmax_loss(feats[i:i + 1], w, labels[:1], 4) for i in range(len(theta))])
    other = -torch.cos(theta)
    psi = other - torch.log(torch.expm1(losses.double()))
    assert psi[0] == pytest.approx(1.0, abs=1e-5) and psi[-1] == pytest.approx(-7.0, abs=1e-4)
    assert (psi[1:] - psi[:-1] < 1e-6).all()
    assert (psi[1:] - psi[:-1]).abs().max() < 0.1                          # no jumps at k pi / 4


def test_a_softmax_by_hand():
    w = torch.eye(2)
    x = torch.tensor([[2.0, 0.0], [2.0, 0.0]])
    # face 0, label 0: theta 0, psi 1: logits (2, 0); face 1, label 1: theta pi/2, k = 2,
    # psi = cos(2 pi) - 4 = -3: logits (2 cos 0, 2 psi) = (2, -6)
    want = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(8))) / 2
    assert float(cface.a_softmax_loss(x, w, torch.tensor([0, 1]), 4)) == pytest.approx(want, rel=1e-5)
    # m = 1 is the plain softmax on ||x|| cos(theta) (normalised weights, no bias)
    z = torch.randn(5, 3)
    wr = torch.randn(4, 3)
    labels = torch.tensor([0, 3, 1, 2, 3])
    logits = z.norm(dim=1, keepdim=True) * (torch.nn.functional.normalize(z) @ torch.nn.functional.normalize(wr).t())
    assert float(cface.a_softmax_loss(z, wr * 7, labels, 1)) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, labels)), rel=1e-5)


def test_the_papers_asoftmax_stages_train_the_copy_and_its_head(tmp_path, monkeypatch):
    """Algorithm 1 steps 3-4 with L_FR (eq. 3): the recognition copy and its A-Softmax head
    (one row per training identity) move, the generator only in step 4; the adapter drops them."""
    register_tiny_identity(monkeypatch)
    register_tiny_perceptual(monkeypatch)
    monkeypatch.setenv("FHBENCH_CACHE", str(tmp_path / "cache"))
    data = synthetic_faces(tmp_path / "faces", 3, 3)
    config = _config(tmp_path, stages=("mse", "cface"))
    raw = yaml.safe_load(config.read_text())
    raw["model"].update(si_distance="squared", perceptual_reduction="sum-channels", asoftmax_m=4)
    weights = raw["stages"][1]["loss_weights"]
    raw["stages"] += [{"name": "recognition_asoftmax", "steps": 1, "lr": 1.0e-3, "loss_weights": {"asoftmax": 1.0}},
                      {"name": "cface_joint_asoftmax", "steps": 2, "lr": 1.0e-3,
                       "loss_weights": {**weights, "asoftmax": 1.0}}]
    raw["checkpoint_every"] = 1
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    states = [_state(train("cface", config, data, out, device="cpu", max_steps=k).checkpoint) for k in (2, 3, 5)]
    cf, rec, joint = states
    head = "recognition.asoftmax_head.weight"
    assert rec[head].shape == (3, 32)                       # 3 identities x the tiny network's 32-d features
    assert _changed(cf, rec, "recognition.backend.") and not torch.equal(cf[head], rec[head])
    assert not _changed(cf, rec, "generator.") and not _changed(cf, rec, "discriminator.")
    assert _changed(rec, joint, "generator.") and _changed(rec, joint, "discriminator.")
    assert not torch.equal(rec[head], joint[head])
    log_lines = [json.loads(ln) for ln in (out / "cface" / "scalars.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["asoftmax"]) for r in log_lines if "asoftmax" in r)
    assert [r["stage"] for r in log_lines] == ["mse", "cface", "recognition_asoftmax"] + ["cface_joint_asoftmax"] * 2
    # a straight run ends where the interrupted one does
    straight = train("cface", config, data, tmp_path / "straight", device="cpu")
    a, b = _state(straight.weights), joint
    assert all(torch.equal(a[k], b[k]) for k in a)
    model = create_model("cface", scale=4, weights=str(straight.weights))
    assert model.module.recognition is None
