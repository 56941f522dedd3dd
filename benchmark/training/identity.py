"""The face-recognition network phi inside the training losses (FR loss, identity terms).

``load_identity_network(name)`` returns an ``IdentityNetwork``: faces aligned to a known
frame (the training data's HR frame, e.g. SphereFace 112x96), (N, 3, H, W) RGB in [0, 1]
-> L2-normalised embeddings (N, D), differentiable with respect to the faces.

Backends (``name``):
  auto              facenet-vggface2, else facenet-casia, else sface: the first available;
  facenet-vggface2, facenet-casia
                    facenet-pytorch's InceptionResnetV1, when its weights are in
                    $TORCH_HOME/checkpoints (the files the facenet evaluators use);
  sface, arcface-mbf
                    the ONNX evaluators' networks converted to torch
                    (``benchmark.onnx_torch``), offline.
Each backend is derived from its evaluator's spec (``Evaluator.torch_network``, ``template``
and ``pixels``), so the loss sees the crop and pixel feed that scoring uses.

The face is resampled from the caller's frame into the backend's crop by a differentiable
affine warp (bilinear, zeros outside: ``grid_sample``), the same similarity transform
between templates that the evaluators use (``benchmark.faces.templates``).

Frozen, as the task-based paper trains: no parameter requires a gradient, dropout and
the rest are in eval mode, but BatchNorm layers stay in training mode, so they normalise
with batch statistics and keep updating their running statistics. The mode is sticky:
``.train()`` / ``.eval()`` on the wrapper do not change it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import EvaluatorUnavailable
from benchmark.faces.templates import SPHEREFACE_112x96, FaceTemplate, template_transform

AUTO_ORDER = ("facenet-vggface2", "facenet-casia", "sface")


@dataclass
class Backend:
    net: nn.Module                          # crops (N, 3, h, w) -> embeddings (N, D)
    frame: FaceTemplate                     # the crop the network was trained on (its input size)
    normalise: Optional[Callable] = None    # [0, 1] RGB -> the network's input values
    weights: Optional[str] = None           # where its weights came from (recorded, not used)


def _from_evaluator(evaluator_name: str) -> Callable[[], Backend]:
    """A backend from the evaluator's own spec: its torch network, crop and pixel feed."""
    def build() -> Backend:
        from benchmark.registry import EVALUATORS

        cls = EVALUATORS.get(evaluator_name)
        path = cls.default_weights()
        if path is None or not Path(path).is_file():  # never download from here: training must not stall
            raise EvaluatorUnavailable(cls.missing_weights_message(path))
        evaluator = cls()  # its loader checks the file: the network it names, SHA256 where pinned
        return Backend(evaluator.torch_network(), cls.template, cls.pixels, str(evaluator.weights_path))
    return build


# name -> builder; tests and users may add their own networks here.
BACKENDS: Dict[str, Callable[[], Backend]] = {
    name: _from_evaluator(name) for name in ("facenet-vggface2", "facenet-casia", "sface", "arcface-mbf")}


def identity_network_names():
    return ("auto",) + tuple(BACKENDS)


def load_identity_network(name: str = "auto", frame: FaceTemplate = SPHEREFACE_112x96,
                          device="cpu", update_bn_statistics: bool = True) -> "IdentityNetwork":
    """The frozen identity network ``name`` taking faces aligned to ``frame`` (at its size)."""
    if name == "auto":
        reasons = []
        for candidate in AUTO_ORDER:
            try:
                return load_identity_network(candidate, frame, device, update_bn_statistics)
            except EvaluatorUnavailable as err:
                reasons.append(str(err))
        raise EvaluatorUnavailable("no identity network available for training: " + "; ".join(reasons))
    if name not in BACKENDS:
        raise EvaluatorUnavailable(f"unknown identity network {name!r} (known: {', '.join(identity_network_names())})")
    backend = BACKENDS[name]()
    return IdentityNetwork(name, backend, frame, update_bn_statistics).to(device)


class IdentityNetwork(nn.Module):
    def __init__(self, name: str, backend: Backend, frame: FaceTemplate, update_bn_statistics: bool = True):
        super().__init__()
        self.name, self.frame, self.weights = name, frame, backend.weights
        self.backend = backend.net
        self.normalise = backend.normalise
        self.warp = FrameWarp(frame, backend.frame)
        self.update_bn_statistics = update_bn_statistics
        self.backend.requires_grad_(False)
        self.train()

    def train(self, mode: bool = True):  # sticky, see the module docstring
        super().train(False)
        if self.update_bn_statistics:
            for m in self.backend.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.train(True)
        return self

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        x = self.warp(faces)
        if self.normalise is not None:
            x = self.normalise(x)
        return F.normalize(self.backend(x).float(), dim=1)

    def describe(self) -> dict:
        return {"name": self.name, "weights": self.weights, "input_frame": self.frame.name,
                "bn_statistics": "batch (updating)" if self.update_bn_statistics else "running (frozen)"}


class FrameWarp(nn.Module):
    """Differentiable similarity warp of (N, 3, H, W) faces from frame ``src`` (H x W is
    its size) into frame ``dst`` at dst's size; bilinear, zeros outside the source."""

    def __init__(self, src: FaceTemplate, dst: FaceTemplate):
        super().__init__()
        self.src_size, self.dst_size = src.size, dst.size
        m = torch.eye(3, dtype=torch.float64)
        m[:2] = torch.from_numpy(template_transform(src, dst))   # src pixel -> dst pixel
        self.identity = bool(src.size == dst.size and torch.allclose(m, torch.eye(3, dtype=torch.float64),
                                                                     atol=1e-9))
        # an integer shift (112x96 -> 112x112: 8 px each side) is exact zero padding / cropping,
        # as the evaluators do it; float32 sampling grids would be off by ~1e-5
        t = m[:2, 2]
        self.shift = None
        if torch.allclose(m[:2, :2], torch.eye(2, dtype=torch.float64), atol=1e-9) and \
                torch.allclose(t, t.round(), atol=1e-9):
            dx, dy = int(t[0].round()), int(t[1].round())
            (h, w), (dh, dw) = src.size, dst.size
            self.shift = (dx, dw - w - dx, dy, dh - h - dy)  # F.pad's (left, right, top, bottom)
        # grid_sample (align_corners=False) wants dst normalised -> src normalised coordinates,
        # where a pixel centre x sits at (2x + 1) / W - 1.
        theta = _to_normalised(*src.size) @ torch.linalg.inv(m) @ torch.linalg.inv(_to_normalised(*dst.size))
        self.register_buffer("theta", theta[:2].float()[None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != tuple(self.src_size):
            raise ValueError(f"identity network expects faces of {self.src_size[0]}x{self.src_size[1]} "
                             f"(its input frame), got {x.shape[-2]}x{x.shape[-1]}")
        if self.identity:
            return x
        if self.shift is not None:  # negative padding crops
            return F.pad(x, self.shift)
        n = x.shape[0]
        grid = F.affine_grid(self.theta.to(x.dtype).expand(n, 2, 3), [n, x.shape[1], *self.dst_size],
                             align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _to_normalised(height: int, width: int) -> torch.Tensor:
    return torch.tensor([[2.0 / width, 0, 1.0 / width - 1], [0, 2.0 / height, 1.0 / height - 1], [0, 0, 1]],
                        dtype=torch.float64)

