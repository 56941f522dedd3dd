"""IPU-Net: the identity-preserving U-Net of Khazaie, Bayat & Mohsenzadeh, "IPU-Net: Multi
Scale Identity-Preserved U-Net for Low Resolution Face Recognition" (arXiv 2010.12249, 2020; the
text in ../shared/papers/002_*.txt; the authors' code: github.com/vahid0001/IPU-Net, train.py).
The paper (002 Sec. 3) gives the structure (7 down and 7 up blocks, concatenating skips), the
loss (embedding + beta x pixel, beta = 5), the 128x128 input, the ten LR sizes drawn with
equal probability and bicubic resizing; it gives no optimiser, batch size or length (those
come from train.py). It puts dropout in "each upsampling block"; train.py, followed here,
in the first three.

Design notes: docs/BASELINES.md, section `baselines/ipunet.py`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.faces.resize import imresize, to_uint8_levels, upsampled_model_input
from benchmark.errors import AdapterError
from benchmark.faces.frames import fit_to_hr_size, padded_size
from benchmark.registry import MODELS

from benchmark.training.trainer import CheckpointAdapter, StageSpec, TrainableModel, register_trainable

DOWN_WIDTHS = (1, 2, 4, 8, 8, 8, 8)   # x filters
UP_WIDTHS = (8, 8, 8, 8, 4, 2)        # x filters
DROPOUT_BLOCKS = 3                    # the first three up blocks
TRAIN_PY_LR_SIZES = [(7, 6), (11, 8), (14, 12), (16, 12), (16, 14), (16, 16), (18, 16), (21, 15), (32, 32),
                     (112, 96)]
DEPTH = len(DOWN_WIDTHS)              # the input side must be a multiple of 2**DEPTH = 128


@dataclass
class IPUNetOptions:
    filters: int = 64
    leaky_slope: float = 0.3
    dropout: float = 0.5
    lr_sizes: List[Tuple[int, int]] = field(default_factory=lambda: list(TRAIN_PY_LR_SIZES))
    quantize_lr: bool = True         # 8-bit LR, as the protocols degrade


def _keras_batchnorm(channels: int) -> nn.BatchNorm2d:
    # The authors' Keras BatchNormalization defaults: running statistics move by 1% per batch
    # (Keras momentum 0.99 = PyTorch momentum 0.01) and epsilon is 1e-3.
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class IPUNet(nn.Module):
    def __init__(self, filters: int = 64, leaky_slope: float = 0.3, dropout: float = 0.5):
        super().__init__()
        self.down = nn.ModuleList()
        c_in = 3
        for i, k in enumerate(DOWN_WIDTHS):
            layers = [nn.Conv2d(c_in, k * filters, 4, stride=2, padding=1, bias=False)]
            if i > 0:
                layers.append(_keras_batchnorm(k * filters))
            layers.append(nn.LeakyReLU(leaky_slope))
            self.down.append(nn.Sequential(*layers))
            c_in = k * filters
        skips = [k * filters for k in DOWN_WIDTHS[:-1]][::-1]   # what each up block's output meets
        self.up = nn.ModuleList()
        for i, (k, skip) in enumerate(zip(UP_WIDTHS, skips)):
            layers = [nn.ConvTranspose2d(c_in, k * filters, 4, stride=2, padding=1, bias=False),
                      _keras_batchnorm(k * filters)]
            if i < DROPOUT_BLOCKS:
                layers.append(nn.Dropout(dropout))
            layers.append(nn.ReLU())
            self.up.append(nn.Sequential(*layers))
            c_in = k * filters + skip
        self.out = nn.ConvTranspose2d(c_in, 3, 4, stride=2, padding=1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, upsampled_lr: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) bicubic-upsampled LR in [0, 1], H and W multiples of 128 -> SR in [0, 1]."""
        h, w = upsampled_lr.shape[-2:]
        if h % 2 ** DEPTH or w % 2 ** DEPTH:
            raise ValueError(f"IPU-Net takes inputs whose sides are multiples of {2 ** DEPTH}, got {h}x{w}")
        x = upsampled_lr * 2 - 1
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, skips[-2::-1]):
            x = torch.cat([block(x), skip], dim=1)
        return (torch.tanh(self.out(x)) + 1) / 2


def build(options: IPUNetOptions, scale: int) -> IPUNet:
    net = IPUNet(options.filters, options.leaky_slope, options.dropout)
    net.options = options  # the stage reads lr_sizes and quantize_lr from here
    return net


# --- multi-resolution inputs ---------------------------------------------------------

def lr_size_for_step(lr_sizes, seed: int, step: int) -> Tuple[int, int]:
    """The LR size of one batch: uniform over ``lr_sizes``, a pure function of (seed, step)."""
    rng = np.random.default_rng([seed, step, 0x1B0E7])  # the constant keeps this stream apart
    return tuple(lr_sizes[int(rng.integers(len(lr_sizes)))])


def upsampled_lr(hr: torch.Tensor, lr_hw: Tuple[int, int], quantize: bool = True) -> torch.Tensor:
    """HR (N, 3, H, W) -> MATLAB bicubic down to ``lr_hw`` (8-bit when ``quantize``) -> MATLAB
    bicubic back up to H x W: what the runner feeds a model that wants upsampled input."""
    x = hr.detach().float().cpu().numpy()
    lr = imresize(x, output_size=tuple(lr_hw))
    lr = to_uint8_levels(lr) if quantize else lr
    return torch.from_numpy(upsampled_model_input(lr, x.shape[-2:])).to(hr.device)


# --- losses and the stage ------------------------------------------------------------

def pixel_loss(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """MSE on the network's [-1, 1] scale (train.py's pixel loss): 4 x the MSE on [0, 1]."""
    return F.mse_loss(sr.float() * 2 - 1, hr.float() * 2 - 1)


def embedding_loss(identity_net, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """mean((phi(SR) - phi(HR))^2) over batch and embedding dimensions; phi(HR) is the
    target (no gradient). SR and HR go through phi as one batch (see ``losses.fr_loss``)."""
    n = sr.shape[0]
    emb = identity_net(torch.cat([sr, hr.to(sr.dtype)]))
    return F.mse_loss(emb[:n], emb[n:].detach())


def ipunet_stage(ctx, batch):
    options = ctx.model.options
    lr_hw = lr_size_for_step(options.lr_sizes, ctx.seed, ctx.step)
    sr = ctx.model(upsampled_lr(batch.hr, lr_hw, options.quantize_lr))
    return {"embedding": embedding_loss(ctx.identity, sr, batch.hr), "pixel": pixel_loss(sr, batch.hr)}


def prepare(model, identity, data, config, device):
    """Checks that would otherwise fail mid-run: the HR size, batch size and LR sizes."""
    h, w = config.data.hr_size
    if h % 2 ** DEPTH or w % 2 ** DEPTH:
        raise config.error("data.hr_size", f"IPU-Net's {DEPTH} stride-2 blocks need sides that are multiples "
                           f"of {2 ** DEPTH}, got {h}x{w} (the paper trains at 128x128)")
    for i, s in enumerate(config.stages):  # BatchNorm on the 1x1 bottleneck needs two values per channel
        if config.stage_batch_size(s) < 2:
            key = "batch_size" if s.batch_size is None else f"stages[{i}].batch_size"
            raise config.error(key, "IPU-Net needs batch_size >= 2 (BatchNorm at its 1x1 bottleneck)")
    if not model.options.lr_sizes:
        raise config.error("model.lr_sizes", "needs at least one LR size")
    for i, (lh, lw) in enumerate(model.options.lr_sizes):
        if not (1 <= lh <= h and 1 <= lw <= w):
            raise config.error(f"model.lr_sizes[{i}]", f"{lh}x{lw} is not between 1x1 and the HR size {h}x{w}")


STAGE = StageSpec(ipunet_stage, ("embedding", "pixel"), needs_identity_network=True)
PAPER = ("Khazaie et al. 2020 (arXiv 2010.12249): no parameter count, FLOPs or speed in the sources at hand "
         "(the authors' README and train.py); train.py: 128x128, batch 64, Adam 2e-4 (beta1 0.5), 50 epochs")

register_trainable(TrainableModel("ipunet", "ipunet", IPUNetOptions, build, {"ipunet": STAGE}, PAPER,
                                  prepare=prepare))


@MODELS.register("ipunet", summary="identity-preserving U-Net on bicubic-upsampled LR, 128x128 output "
                                   "(needs trained weights)")
class IPUNetAdapter(CheckpointAdapter):
    name = "ipunet"
    wants_upsampled_input = True
    TRAINED_SCALE = 1  # its training data are not degraded by a scale (the stage draws LR sizes)

    def __init__(self, scale=None, weights=None, device="cpu", **_):
        # any protocol scale or LR size works: the runner upsamples the LR to the HR size first
        super().__init__(scale=None if weights else self.TRAINED_SCALE, weights=weights, device=device)
        self.scale = None
        hr = self.training_data.get("hr_size")
        if not hr:
            raise AdapterError(f"{self.weights_file} does not record the HR size IPU-Net was trained at")
        self.trained_size = tuple(hr)
        self.hr_size = None  # the protocol's, set by check_compatible

    def check_compatible(self, lr_hw, hr_hw, scale) -> None:
        # Any HR size of the SphereFace-based frames works: the upsampled LR is rendered into the
        # frame the U-Net was trained on and the output back into the protocol's (frame_in/out).
        super().check_compatible(lr_hw, hr_hw, scale)
        self.hr_size = tuple(hr_hw)

    def frame_in(self, x: np.ndarray) -> np.ndarray:
        """Protocol frame -> training frame: the pad-then-resize rule of benchmark.faces.frames, clipped
        to [0, 1] as its training inputs were."""
        return np.clip(fit_to_hr_size(x, self.trained_size), 0.0, 1.0)

    def frame_out(self, y: np.ndarray) -> np.ndarray:
        """Training frame -> protocol frame: resize to the padded protocol size, then crop the pad."""
        top, bottom, left, right = padded_size(self.hr_size, self.trained_size)
        h, w = self.hr_size
        padded = imresize(y, output_size=(h + top + bottom, w + left + right))
        return np.clip(padded[..., top:top + h, left:left + w], 0.0, 1.0)

    def super_resolve(self, lr, keys):
        if self.hr_size is None or self.hr_size == self.trained_size:
            return super().super_resolve(lr, keys)
        x = torch.from_numpy(self.frame_in(lr.numpy()))
        return torch.from_numpy(self.frame_out(super().super_resolve(x, keys).numpy()))
