"""The frozen identity network of the training losses (benchmark.training.identity).

Oracles: the SFace evaluator (onnxruntime, its own crop and pixel feed) for the embeddings,
cv2.warpAffine for the differentiable frame warp, hand-made zero padding for 112x96 -> 112x112.
"""
import cv2
import numpy as np
import pytest
import torch
from torch import nn

from benchmark.training.identity import Backend, FrameWarp, IdentityNetwork, load_identity_network
from benchmark.evaluators import create_evaluator
from benchmark.registry import EVALUATORS
from benchmark.faces.templates import ARCFACE_112x112, SPHEREFACE_112x96, FaceTemplate, template_transform

PEOPLE = ["Ariel_Sharon", "Colin_Powell", "Donald_Rumsfeld", "George_W_Bush", "Hugo_Chavez", "Tony_Blair"]


def _smooth(rng, n, h, w):
    small = rng.random((n, 3, h // 8, w // 8)).astype(np.float32)
    return np.stack([cv2.resize(s.transpose(1, 2, 0), (w, h), interpolation=cv2.INTER_CUBIC).transpose(2, 0, 1)
                     for s in small]).astype(np.float32)


def test_warp_112x96_to_arcface_is_exactly_8px_zero_padding():
    x = np.random.default_rng(0).random((2, 3, 112, 96)).astype(np.float32)
    out = FrameWarp(SPHEREFACE_112x96, ARCFACE_112x112)(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(out, np.pad(x, ((0, 0), (0, 0), (0, 0), (8, 8))))
    back = FrameWarp(ARCFACE_112x112, SPHEREFACE_112x96)(torch.from_numpy(out)).numpy()
    np.testing.assert_array_equal(back, x)  # and the way back crops 8 px each side


def test_warp_matches_cv2_warpaffine_with_the_template_transform():
    # a rotated, scaled and shifted source frame: a general similarity, not a shift
    angle, scale, shift = np.deg2rad(12.0), 0.55, np.array([5.3, -3.1])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    pts = ARCFACE_112x112.points @ rot.T + shift
    src = FaceTemplate("tilted-64x56", 64, 56, tuple(map(tuple, pts)))
    x = _smooth(np.random.default_rng(1), 2, 64, 56)
    matrix = template_transform(src, ARCFACE_112x112)
    expected = np.stack([cv2.warpAffine(im.transpose(1, 2, 0), matrix, (112, 112), flags=cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_CONSTANT, borderValue=0).transpose(2, 0, 1)
                         for im in x])
    out = FrameWarp(src, ARCFACE_112x112)(torch.from_numpy(x)).numpy()
    assert out.shape == expected.shape == (2, 3, 112, 112)
    # cv2 quantises sample positions to 1/32 px: agree to that, and exactly where both are 0
    assert np.abs(out - expected).max() < 0.02
    assert np.abs(out - expected).mean() < 1e-3
    assert ((out == 0) == (expected == 0)).mean() > 0.99


def test_warp_refuses_another_size():
    with pytest.raises(ValueError, match="expects faces of 112x96"):
        FrameWarp(SPHEREFACE_112x96, ARCFACE_112x112)(torch.zeros(1, 3, 64, 64))


class _TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.drop(self.bn(self.conv(x)).mean((2, 3))))


def test_frozen_network_keeps_batchnorm_training_and_the_rest_in_eval():
    net = IdentityNetwork("tiny", Backend(_TinyNet(), SPHEREFACE_112x96), SPHEREFACE_112x96)
    for mode in (True, False):
        net.train(mode)  # sticky: neither call changes the modes below
        assert net.backend.bn.training and not net.backend.drop.training and not net.training
    assert not any(p.requires_grad for p in net.parameters())
    before = net.backend.bn.running_mean.clone()
    x = torch.rand(4, 3, 112, 96, requires_grad=True)
    net(x).sum().backward()
    assert not torch.equal(before, net.backend.bn.running_mean)   # statistics updated
    assert x.grad is not None and x.grad.abs().sum() > 0            # gradient reaches the faces
    assert all(p.grad is None for p in net.parameters())            # but not the weights
    # without statistics updating, BN is in eval mode and the running statistics stay put
    still = IdentityNetwork("tiny", Backend(_TinyNet(), SPHEREFACE_112x96), SPHEREFACE_112x96,
                            update_bn_statistics=False)
    before = still.backend.bn.running_mean.clone()
    still(x)
    assert not still.backend.bn.training and torch.equal(before, still.backend.bn.running_mean)


def test_sface_identity_network_matches_the_sface_evaluator(lfw_shared):
    why = EVALUATORS.entry("sface").why_unavailable()
    if why:
        pytest.skip(why)
    from benchmark.faces.images import read_batch

    faces = read_batch([lfw_shared / "aligned-112x96" / p / f"{p}_0001.jpg" for p in PEOPLE])
    reference = create_evaluator("sface").embed(faces)          # onnxruntime, its own crop and feed
    net = load_identity_network("sface", SPHEREFACE_112x96, update_bn_statistics=False)
    with torch.no_grad():
        out = net(torch.from_numpy(faces)).numpy()
    assert (out * reference).sum(1).min() > 0.9999             # both L2-normalised
    assert np.abs(out - reference).max() < 1e-4
    assert net.describe()["weights"].endswith("face_recognition_sface_2021dec.onnx")
    # with BN on batch statistics (the default for training) the embeddings do move
    updating = load_identity_network("sface", SPHEREFACE_112x96)
    with torch.no_grad():
        moved = updating(torch.from_numpy(faces)).numpy()
    assert (moved * reference).sum(1).min() < 0.999


@pytest.mark.parametrize("name", ["sface", "arcface-mbf"])
def test_training_backend_is_derived_from_the_evaluators_spec(name):
    """One spec per network (issue 12): the loss's crop and pixel feed are the evaluator's own,
    and its network gives the evaluator's embeddings on the same crops."""
    from benchmark.training.identity import BACKENDS

    cls = EVALUATORS.get(name)
    backend = BACKENDS[name]()
    assert backend.frame == cls.template and backend.normalise is cls.pixels
    crops = np.random.default_rng(0).random((3, 3, cls.template.height, cls.template.width)).astype(np.float32)
    evaluator = cls()
    with torch.no_grad():
        got = backend.net(backend.normalise(torch.from_numpy(crops))).numpy()
    np.testing.assert_allclose(got, evaluator._embed_crops(crops), atol=1e-4)
    assert np.abs(evaluator._embed_crops(crops)).max() > 1e-3  # not trivially zero
