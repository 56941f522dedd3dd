"""C-SRIP (Grm, Scheirer & Struc, "Face Hallucination Using Cascaded Super-Resolution and
Identity Priors", IEEE TIP 29:2150-2165, 2020): a cascade of three 2x SR modules, 24x24 -> 192x192,
trained with multi-scale SSIM and the cross-entropy of identity priors.

Cascade (``Cascade``), as the design card (../shared/DESIGN.md) states it:
  input: 9x9 conv (3 -> F1) + LReLU, on the LR face;
  module m = 1, 2, 3 with F = 512, 256, 128 filters (``filters``), at 24, 48, 96 px:
    7 residual blocks (``blocks``) [3x3 conv F -> F, LReLU, 3x3 conv F -> F, + input];
    a 3x3 conv F -> F closing the trunk, + the module's input (SRResNet's global skip);
    sub-pixel upscaling: 3x3 conv F -> 4 F', PixelShuffle(2), LReLU, where F' is the next
    module's width (the last module keeps its own), so no extra conv joins two modules;
  a 9x9 conv F' -> 3 on each module's output gives the RGB face at 2x, 4x and 8x, clipped
  to [0, 1]; the 8x one is the model's output.
LReLU slope 0.2; no BatchNorm (not in the card; SR trunks since EDSR leave it out). Counting
convolutions, this is 1 + 3 x (14 + 1 + 1) + 3 = 52 layers; the card's "53 layers" cannot be
reconciled without the paper's layer table, which was not at hand (clipping counted as a
layer would make 53). The RGB convs start with bias 0.5, so that the clipped outputs start
inside [0, 1] where the clip passes gradients.

Identity priors (``Priors``): three SqueezeNet 1.1 classifiers (torchvision's, untrained),
one per scale (48, 96, 192 px), each seeing the high-pass residual x - g_sigma * x with
sigma 1/3, 1 and 7/3 (``prior_sigmas``; ``baselines.ssim_loss.high_pass``) of the face at
its scale, and classifying its identity among the training set's identities (the number
is set from the data before the first step and stored with the weights).

Training (stages):
  priors   cross-entropy of each prior on the HR faces (rendered at its scale), summed;
           needs identity labels;
  cascade  ssim = sum over the three scales of (1 - mean SSIM)/2 against the HR face at
           that scale (MATLAB bicubic, the same rule as the HR faces), identity = sum of the
           three priors' cross-entropies on the SR faces; the config weighs them 1 and
           alpha = 0.001. Only the cascade is optimised; the priors are fixed and in eval mode.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import AdapterError, ConfigError, DataError, IncompatibleModelError
from benchmark.registry import MODELS

from .ssim_loss import high_pass, ssim_loss
from .training import CheckpointAdapter, StageSpec, TrainableModel, register_trainable

LRELU_SLOPE = 0.2
PRIOR_MIN_SIDE = 17  # the smallest input SqueezeNet 1.1's three stride-2 poolings accept (SSIM needs 11)


@dataclass
class CSRIPOptions:
    filters: List[int] = field(default_factory=lambda: [512, 256, 128])  # one 2x module each
    blocks: int = 7                                                       # residual blocks per module
    prior_sigmas: List[float] = field(default_factory=lambda: [1 / 3, 1.0, 7 / 3])  # per scale


class ResidualBlock(nn.Module):
    def __init__(self, filters: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(filters, filters, 3, padding=1), nn.LeakyReLU(LRELU_SLOPE),
                                  nn.Conv2d(filters, filters, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


class SRModule(nn.Module):
    """Residual trunk at the input resolution, then a 2x sub-pixel upscaling to ``out_filters``."""

    def __init__(self, filters: int, out_filters: int, blocks: int):
        super().__init__()
        self.trunk = nn.Sequential(*[ResidualBlock(filters) for _ in range(blocks)],
                                   nn.Conv2d(filters, filters, 3, padding=1))
        self.upscale = nn.Sequential(nn.Conv2d(filters, 4 * out_filters, 3, padding=1), nn.PixelShuffle(2),
                                     nn.LeakyReLU(LRELU_SLOPE))

    def forward(self, x):
        return self.upscale(x + self.trunk(x))


class Cascade(nn.Module):
    def __init__(self, filters: List[int], blocks: int):
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(3, filters[0], 9, padding=4), nn.LeakyReLU(LRELU_SLOPE))
        outs = list(filters[1:]) + [filters[-1]]
        self.modules_ = nn.ModuleList(SRModule(f, o, blocks) for f, o in zip(filters, outs))
        self.to_rgb = nn.ModuleList(nn.Conv2d(o, 3, 9, padding=4) for o in outs)
        for conv in self.to_rgb:
            nn.init.constant_(conv.bias, 0.5)

    def forward(self, lr) -> List[torch.Tensor]:
        """The clipped RGB faces at 2x, 4x, 8x (one per module)."""
        x, outputs = self.head(lr), []
        for module, to_rgb in zip(self.modules_, self.to_rgb):
            x = module(x)
            outputs.append(to_rgb(x).clamp(0.0, 1.0))
        return outputs


def squeezenet(n_classes: int) -> nn.Module:
    from torchvision.models import squeezenet1_1

    return squeezenet1_1(weights=None, num_classes=n_classes)


class Priors(nn.Module):
    """One SqueezeNet per scale on high-pass residuals; ``n_classes`` 0 until the data sets it."""

    def __init__(self, sigmas: List[float], n_classes: int = 0):
        super().__init__()
        self.sigmas = list(sigmas)
        self.register_buffer("n_classes", torch.tensor(n_classes))
        self.nets = nn.ModuleList(squeezenet(n_classes) for _ in sigmas) if n_classes else nn.ModuleList()

    def forward(self, faces: List[torch.Tensor]) -> List[torch.Tensor]:
        """Logits of each prior on the high-pass residual of the face at its scale."""
        if not len(self.nets):
            raise RuntimeError("the identity priors are not sized yet (csrip's prepare sets them from the data)")
        return [net(high_pass(face.float(), sigma)) for net, sigma, face in zip(self.nets, self.sigmas, faces)]


class CSRIP(nn.Module):
    def __init__(self, options: CSRIPOptions, scale: int):
        super().__init__()
        n = len(options.filters)
        if scale != 2 ** n:
            raise ConfigError(f"csrip's cascade of {n} 2x modules upsamples {2 ** n}x, not {scale}x "
                              f"(set data.scale: {2 ** n})")
        if len(options.prior_sigmas) != n:
            raise ConfigError(f"csrip needs one prior sigma per module: {n} filters but "
                              f"{len(options.prior_sigmas)} prior_sigmas")
        if options.blocks < 0 or min(options.filters) < 1:
            raise ConfigError(f"csrip: blocks must be >= 0 and filters >= 1, got {options.blocks} and "
                              f"{options.filters}")
        self.options, self.scale = options, scale
        self.cascade = Cascade(options.filters, options.blocks)
        self.priors = Priors(options.prior_sigmas)

    def forward(self, lr):
        return self.cascade(lr)[-1]

    def size_priors(self, n_classes: int) -> None:
        self.priors = Priors(self.options.prior_sigmas, n_classes).to(self.priors.n_classes.device)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Sizes unsized priors from the weights first; sized ones must agree with them."""
        stored = state_dict.get("priors.n_classes")
        if stored is not None:
            stored, mine = int(stored), int(self.priors.n_classes)
            if mine == 0 and stored:
                self.size_priors(stored)
            elif mine != stored:
                raise ConfigError(f"these csrip weights have identity priors over {stored} identities, but the "
                                  f"training faces have {mine}; train on the same identities or start afresh")
        return super().load_state_dict(state_dict, strict, assign)


def build(options: CSRIPOptions, scale: int) -> CSRIP:
    return CSRIP(options, scale)


def prepare(model: CSRIP, identity, data, config, device):
    """Before any step: the HR size and the priors' classes (the training set's identities)."""
    h, w = config.data.hr_size
    side = 2 ** len(model.options.filters)
    if h % side or w % side or min(h, w) * 2 // side < PRIOR_MIN_SIDE:
        raise config.error("data.hr_size", f"{h}x{w} does not fit C-SRIP: sides must be multiples of {side} and "
                           f"the 2x output at least {PRIOR_MIN_SIDE} px for its SqueezeNet prior (the paper: "
                           f"192x192)")
    n = len(data.faces.identities) if data.has_labels else 0
    if n < 2:
        raise DataError(f"C-SRIP's identity priors need at least 2 identities in the training faces in "
                        f"{data.faces.image_root}, found {n}")
    model.size_priors(n)
    model.priors.to(device)


def scale_targets(hr: torch.Tensor, n: int) -> List[torch.Tensor]:
    """The HR face at each of the n cascade scales (1/2^(n-1) ... 1 of its size), MATLAB bicubic."""
    from benchmark.degrade import imresize

    h, w = hr.shape[-2:]
    out = []
    array = hr.detach().float().cpu().numpy()
    for k in range(n - 1, 0, -1):
        size = (h // 2 ** k, w // 2 ** k)
        small = np.clip(imresize(array, output_size=size), 0.0, 1.0).astype(np.float32)
        out.append(torch.from_numpy(small).to(hr.device, hr.dtype))
    return out + [hr]


def _prior_ce(logits: List[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    return sum(F.cross_entropy(z.float(), labels) for z in logits)


def priors_stage(ctx, batch):
    targets = scale_targets(batch.hr, len(ctx.model.cascade.to_rgb))
    return {"ce": _prior_ce(ctx.model.priors(targets), batch.labels)}


def cascade_stage(ctx, batch):
    model = ctx.model
    model.priors.eval()  # fixed priors: no dropout, whatever mode the loop set
    outputs = model.cascade(batch.lr)
    targets = scale_targets(batch.hr, len(outputs))
    return {"ssim": sum(ssim_loss(sr, hr) for sr, hr in zip(outputs, targets)),
            "identity": _prior_ce(model.priors(outputs), batch.labels)}


STAGES = {
    "priors": StageSpec(priors_stage, ("ce",), optimise={"priors": ("ce",)}, needs_identity_labels=True),
    "cascade": StageSpec(cascade_stage, ("ssim", "identity"), optimise={"cascade": ("ssim", "identity")},
                         needs_identity_labels=True),
}
PAPER = ("Grm et al., IEEE TIP 2020: 24x24 -> 192x192 in about 15 ms per image in batch mode on a GPU "
         "(../shared/DESIGN.md); no parameter count in the sources at hand")

register_trainable(TrainableModel("csrip", "csrip", CSRIPOptions, build, STAGES, PAPER, prepare=prepare))


@MODELS.register("csrip", summary="C-SRIP cascade (3 x 2x modules), 24x24 -> 192x192 (8x; needs trained weights)")
class CSRIPAdapter(CheckpointAdapter):
    """The cascade's 8x output at the size it was trained for (192x192: the 112x96 crop padded
    to square, then resized); other sizes are refused rather than resized."""

    name = "csrip"

    def __init__(self, scale=None, weights=None, device="cpu", **kw):
        super().__init__(scale=scale, weights=weights, device=device, **kw)
        hr = self.training_data.get("hr_size")
        if not hr:
            raise AdapterError(f"{self.weights_file} does not record the HR size csrip was trained at")
        self.output_size = (int(hr[0]), int(hr[1]))
        self.input_size = (self.output_size[0] // self.scale, self.output_size[1] // self.scale)

    def check_compatible(self, lr_hw, hr_hw, scale) -> None:
        try:
            super().check_compatible(lr_hw, hr_hw, scale)
        except IncompatibleModelError as err:
            h, w = self.output_size
            raise IncompatibleModelError(
                f"{err} (csrip turns {self.input_size[0]}x{self.input_size[1]} LR faces into {h}x{w}: run it on "
                f"lfw-psnr, or on a protocol with hr_size: [{h}, {w}] at x{self.scale}, e.g. a copy of lfw-blufr "
                "in a folder named by $FHBENCH_PROTOCOLS)") from None

