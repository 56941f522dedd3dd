"""SRResNet (Ledig et al., "Photo-Realistic Single Image Super-Resolution Using a Generative
Adversarial Network", CVPR 2017) with 10 residual blocks, and its two trained variants:

  srresnet      trained on the pixel MSE (Adam, lr 1e-4);
  srresnet-fr   then fine-tuned (Adam, lr 1e-5) on MSE + FR loss, the FR weight set on the
                first batch so that both terms are equal (50/50), with the FR network frozen
                but its BatchNorm statistics updating (Abello & Hirata, "Optimizing Super
                Resolution for Face Recognition", SIBGRAPI 2019).

Generator: 9x9 conv (3 -> 64) + PReLU; B residual blocks [3x3 conv, BN, PReLU, 3x3 conv,
BN, + input]; 3x3 conv + BN, + the first activation (global skip); log2(scale) times
[3x3 conv 64 -> 256, PixelShuffle(2), PReLU]; 9x9 conv (64 -> 3). PReLU slopes are per
channel (He et al.'s PReLU); convolutions followed by BN have no bias (BN's shift makes
it redundant). Input LR and output SR are RGB in [0, 1]; the output is not clamped while
training (the adapter clamps).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from benchmark.errors import ConfigError
from benchmark.registry import MODELS

from benchmark.training.losses import fr_loss, mse_loss
from benchmark.training.trainer import CheckpointAdapter, StageSpec, TrainableModel, register_trainable


@dataclass
class SRResNetOptions:
    blocks: int = 10
    filters: int = 64


class ResidualBlock(nn.Module):
    def __init__(self, filters: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(filters, filters, 3, padding=1, bias=False), nn.BatchNorm2d(filters), nn.PReLU(filters),
            nn.Conv2d(filters, filters, 3, padding=1, bias=False), nn.BatchNorm2d(filters))

    def forward(self, x):
        return x + self.body(x)


class SRResNet(nn.Module):
    def __init__(self, scale: int = 4, blocks: int = 10, filters: int = 64):
        super().__init__()
        if scale < 2 or scale & (scale - 1):
            raise ConfigError(f"SRResNet upsamples by powers of two (2, 4, 8, ...), not {scale}")
        self.scale = scale
        self.head = nn.Sequential(nn.Conv2d(3, filters, 9, padding=4), nn.PReLU(filters))
        self.blocks = nn.Sequential(*[ResidualBlock(filters) for _ in range(blocks)])
        self.trunk_end = nn.Sequential(nn.Conv2d(filters, filters, 3, padding=1, bias=False),
                                       nn.BatchNorm2d(filters))
        self.upsample = nn.Sequential(*[
            nn.Sequential(nn.Conv2d(filters, 4 * filters, 3, padding=1), nn.PixelShuffle(2), nn.PReLU(filters))
            for _ in range(int(math.log2(scale)))])
        self.tail = nn.Conv2d(filters, 3, 9, padding=4)

    def forward(self, lr):
        features = self.head(lr)
        return self.tail(self.upsample(features + self.trunk_end(self.blocks(features))))


def build(options: SRResNetOptions, scale: int) -> SRResNet:
    return SRResNet(scale, options.blocks, options.filters)


def mse_stage(ctx, batch):
    return {"mse": mse_loss(ctx.model(batch.lr), batch.hr)}


def fr_finetune_stage(ctx, batch):
    sr = ctx.model(batch.lr)
    return {"mse": mse_loss(sr, batch.hr), "fr": fr_loss(ctx.identity, sr, batch.hr)}


MSE = StageSpec(mse_stage, ("mse",))
FR_FINETUNE = StageSpec(fr_finetune_stage, ("mse", "fr"), needs_identity_network=True)
PAPER = ("Ledig et al. 2017: SRResNet with 16 blocks has 1.5M parameters at 4x (EDSR paper, Table 1); "
         "no figures for the 10-block face model")

register_trainable(TrainableModel("srresnet", "srresnet", SRResNetOptions, build, {"mse": MSE}, PAPER))
register_trainable(TrainableModel("srresnet-fr", "srresnet", SRResNetOptions, build,
                                  {"mse": MSE, "fr-finetune": FR_FINETUNE}, PAPER))


@MODELS.register("srresnet", summary="SRResNet-10 trained on MSE (4x, 8x; needs trained weights)")
class SRResNetAdapter(CheckpointAdapter):
    name = "srresnet"


@MODELS.register("srresnet-fr", summary="SRResNet-10 fine-tuned on MSE + FR loss (4x, 8x; needs trained weights)")
class SRResNetFRAdapter(CheckpointAdapter):
    name = "srresnet-fr"
