"""Stand-ins for the baseline trainers' tests: a tiny identity network registered under its
own name (never mistaken for SFace or FaceNet), and small training folders.

The identity network is a stand-in because the tests check the trainers' plumbing and
losses, not what a real face-recognition network makes of them; it is registered with
``monkeypatch`` so it disappears after each test.
"""
import shutil
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from benchmark.training import identity
from benchmark.faces.templates import SPHEREFACE_112x96

TINY_IDENTITY = "tiny-test-identity"
LFW_ALIGNED = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw" / "aligned-112x96"


class TinyIdentityNet(nn.Module):
    """112x96 faces -> 32-d embeddings: two strided convs with BatchNorm, pooled, linear."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(16, 32)

    def forward(self, x):
        return self.head(self.features(x))


def _tiny_backend():
    with torch.random.fork_rng():  # fixed weights, the caller's RNG untouched
        torch.manual_seed(1234)
        net = TinyIdentityNet()
    return identity.Backend(net, SPHEREFACE_112x96, None, "stand-in (random weights)")


def register_tiny_identity(monkeypatch) -> str:
    monkeypatch.setitem(identity.BACKENDS, TINY_IDENTITY, _tiny_backend)
    return TINY_IDENTITY


def synthetic_faces(root: Path, n_ids: int, per_id: int, seed: int = 0, hw=(112, 96)) -> Path:
    """root/<id>/<id>_<k>.png: smooth random colour images (each identity a base colour)."""
    rng = np.random.default_rng(seed)
    for i in range(n_ids):
        folder = root / f"Person_{i:02d}"
        folder.mkdir(parents=True)
        base = rng.random(3)
        for k in range(per_id):
            small = np.clip(base + 0.3 * rng.standard_normal((7, 6, 3)), 0, 1)
            img = cv2.resize(small, (hw[1], hw[0]), interpolation=cv2.INTER_CUBIC)
            cv2.imwrite(str(folder / f"Person_{i:02d}_{k + 1:04d}.png"),
                        np.clip(img * 255, 0, 255).astype(np.uint8))
    return root


def real_faces(root: Path, people, per_person: int) -> Path:
    """root/<Name>/<Name>_<NNNN>.jpg copied from ../shared/data/lfw/aligned-112x96."""
    for name in people:
        (root / name).mkdir(parents=True)
        for k in range(1, per_person + 1):
            fname = f"{name}_{k:04d}.jpg"
            shutil.copyfile(LFW_ALIGNED / name / fname, root / name / fname)
    return root


TINY_PERCEPTUAL = "tiny-test-features"


def _tiny_features(options, where):
    from baselines.cface import ImageNetFeatures

    with torch.random.fork_rng():
        torch.manual_seed(99)
        net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    return ImageNetFeatures(net, "stand-in (random weights)")


def register_tiny_perceptual(monkeypatch) -> str:
    """A one-conv stand-in for VGG19 (the real one needs a 548 MB download)."""
    from baselines import cface

    monkeypatch.setitem(cface.PERCEPTUAL_NETWORKS, TINY_PERCEPTUAL, _tiny_features)
    return TINY_PERCEPTUAL
