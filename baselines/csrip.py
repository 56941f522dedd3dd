"""C-SRIP (Grm, Scheirer & Struc, "Face Hallucination Using Cascaded Super-Resolution and
Identity Priors", IEEE TIP 29:2150-2165, 2020; the text in ../shared/papers/001_*.txt, its
preprint in 003_*.txt): a cascade of three 2x SR modules, 24x24 -> 192x192, trained with
multi-scale SSIM and the cross-entropy of identity priors.

Design notes: docs/BASELINES.md, section `baselines/csrip.py`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import AdapterError, ConfigError, DataError, IncompatibleModelError
from benchmark.registry import MODELS

from benchmark.training.ssim_loss import high_pass, ssim_loss, ssim_map
from benchmark.training.trainer import CheckpointAdapter, StageSpec, TrainableModel, register_trainable

LRELU_SLOPE = 0.2
PRIOR_MIN_SIDE = 17  # the smallest input SqueezeNet 1.1's three stride-2 poolings accept (SSIM needs 11)


RESIDUAL_BLOCKS = ("conv-lrelu-conv", "conv-bn-lrelu-x2")
PRIOR_NETWORKS = ("squeezenet1_1", "squeezenet1_0-complex-bypass")


@dataclass
class CSRIPOptions:
    filters: List[int] = field(default_factory=lambda: [512, 256, 128])  # one 2x module each
    blocks: int = 7                                                       # residual blocks per module
    prior_sigmas: List[float] = field(default_factory=lambda: [1 / 3, 1.0, 7 / 3])  # per scale
    # the module's final conv (before the sub-pixel layer); empty: 4 x the next module's width
    upscale_filters: List[int] = field(default_factory=list)
    final_block_filters: int = 0          # a last residual block at the output size (0: none)
    residual_block: Literal["conv-lrelu-conv", "conv-bn-lrelu-x2"] = "conv-lrelu-conv"
    prior_network: Literal["squeezenet1_1", "squeezenet1_0-complex-bypass"] = "squeezenet1_1"
    prior_crop: int = 0                   # priors stage: random-crop shift in HR pixels (0: none)
    # SSIM's data range L for C1 = (0.01 L)^2, C2 = (0.03 L)^2 on images in [0, 1]; 256/255 gives the
    # paper's C1 = 6.55, C2 = 58.98 on the 0..255 scale (001 Sec. 3.3: (0.01 x 256)^2, (0.03 x 256)^2)
    ssim_data_range: float = 1.0
    # the priors see (high-pass residual) x this. Our faces are in [0, 1], where the residuals are
    # ~0.01-0.05; 255 puts them on the 0..255 scale of 8-bit images (the paper does not say which)
    prior_input_scale: float = 1.0


def _conv_unit(cin: int, cout: int, batch_norm: bool) -> List[nn.Module]:
    """3x3 conv (+ BN, the conv then without bias) + LReLU."""
    if batch_norm:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(LRELU_SLOPE)]
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(LRELU_SLOPE)]


class ResidualBlock(nn.Module):
    def __init__(self, filters: int, kind: str = "conv-lrelu-conv"):
        super().__init__()
        if kind == "conv-bn-lrelu-x2":
            self.body = nn.Sequential(*_conv_unit(filters, filters, True), *_conv_unit(filters, filters, True))
        else:
            self.body = nn.Sequential(nn.Conv2d(filters, filters, 3, padding=1), nn.LeakyReLU(LRELU_SLOPE),
                                      nn.Conv2d(filters, filters, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


class SRModule(nn.Module):
    """Residual trunk at the input resolution, then a 2x sub-pixel upscaling: a conv to
    ``upscale_filters`` channels, PixelShuffle(2) (a quarter of them at twice the size), LReLU."""

    def __init__(self, filters: int, upscale_filters: int, blocks: int, kind: str = "conv-lrelu-conv"):
        super().__init__()
        self.trunk = nn.Sequential(*[ResidualBlock(filters, kind) for _ in range(blocks)],
                                   nn.Conv2d(filters, filters, 3, padding=1))
        self.upscale = nn.Sequential(nn.Conv2d(filters, upscale_filters, 3, padding=1), nn.PixelShuffle(2),
                                     nn.LeakyReLU(LRELU_SLOPE))

    def forward(self, x):
        return self.upscale(x + self.trunk(x))


class FinalBlock(nn.Module):
    """The last residual block at the output size; a bridge conv when its width differs."""

    def __init__(self, in_filters: int, filters: int, kind: str):
        super().__init__()
        self.bridge = (nn.Sequential(*_conv_unit(in_filters, filters, kind == "conv-bn-lrelu-x2"))
                       if in_filters != filters else nn.Identity())
        self.block = ResidualBlock(filters, kind)

    def forward(self, x):
        return self.block(self.bridge(x))


def upscale_widths(options: "CSRIPOptions") -> List[int]:
    """Each module's final (pre-sub-pixel) conv width."""
    if options.upscale_filters:
        return list(options.upscale_filters)
    f = list(options.filters)
    return [4 * o for o in f[1:] + [f[-1]]]


class Cascade(nn.Module):
    def __init__(self, filters: List[int], blocks: int, upscale: List[int] = None, final_block: int = 0,
                 kind: str = "conv-lrelu-conv"):
        super().__init__()
        upscale = list(upscale) if upscale else [4 * o for o in list(filters[1:]) + [filters[-1]]]
        self.head = nn.Sequential(nn.Conv2d(3, filters[0], 9, padding=4), nn.LeakyReLU(LRELU_SLOPE))
        self.modules_ = nn.ModuleList(SRModule(f, u, blocks, kind) for f, u in zip(filters, upscale))
        outs = [u // 4 for u in upscale]                      # channels after each PixelShuffle(2)
        self.final = FinalBlock(outs[-1], final_block, kind) if final_block else None
        rgb_in = outs[:-1] + [final_block or outs[-1]]
        self.to_rgb = nn.ModuleList(nn.Conv2d(o, 3, 9, padding=4) for o in rgb_in)
        for conv in self.to_rgb:
            nn.init.constant_(conv.bias, 0.5)

    def forward(self, lr) -> List[torch.Tensor]:
        """The clipped RGB faces at 2x, 4x, 8x (one per module; the last after the final block)."""
        x, outputs = self.head(lr), []
        last = len(self.modules_) - 1
        for i, (module, to_rgb) in enumerate(zip(self.modules_, self.to_rgb)):
            x = module(x)
            if i == last and self.final is not None:
                x = self.final(x)
            outputs.append(to_rgb(x).clamp(0.0, 1.0))
        return outputs


def squeezenet(n_classes: int, kind: str = "squeezenet1_1") -> nn.Module:
    if kind == "squeezenet1_0-complex-bypass":
        return squeezenet_complex_bypass(n_classes)
    from torchvision.models import squeezenet1_1

    return squeezenet1_1(weights=None, num_classes=n_classes)


class BypassFire(nn.Module):
    """A fire module with a shortcut: + input (same width) or + 1x1 conv of it (Iandola et al.)."""

    def __init__(self, fire: nn.Module):
        super().__init__()
        self.fire = fire
        cin = fire.squeeze.in_channels
        cout = fire.expand1x1.out_channels + fire.expand3x3.out_channels
        self.bypass = None
        if cin != cout:
            self.bypass = nn.Conv2d(cin, cout, 1)
            nn.init.kaiming_uniform_(self.bypass.weight)  # torchvision's init of SqueezeNet's convs
            nn.init.zeros_(self.bypass.bias)

    def forward(self, x):
        return self.fire(x) + (x if self.bypass is None else self.bypass(x))


def squeezenet_complex_bypass(n_classes: int) -> nn.Module:
    """SqueezeNet 1.0 (torchvision's layout and init) with the complex bypass of Iandola et al.
    (arXiv 1602.07360, Fig. 2 right): a shortcut around every fire module (fire2 .. fire9)."""
    from torchvision.models import squeezenet1_0
    from torchvision.models.squeezenet import Fire

    net = squeezenet1_0(weights=None, num_classes=n_classes)
    for i, layer in enumerate(net.features):
        if isinstance(layer, Fire):
            net.features[i] = BypassFire(layer)
    return net


def prior_min_side(kind: str) -> int:
    """The smallest square input the prior network accepts: its first conv (no padding,
    stride 2) and three 3x3 stride-2 max-poolings (ceil mode) must leave >= 1 pixel."""
    first = 7 if kind == "squeezenet1_0-complex-bypass" else 3
    side = 1
    while True:
        h = (side - first) // 2 + 1 if side >= first else 0
        for _ in range(3):
            h = (h - 2) // 2 + 1 if h >= 2 else 0
        if h >= 1:
            return side
        side += 1


class Priors(nn.Module):
    """One SqueezeNet per scale on high-pass residuals; ``n_classes`` 0 until the data sets it."""

    def __init__(self, sigmas: List[float], n_classes: int = 0, kind: str = "squeezenet1_1",
                 input_scale: float = 1.0):
        super().__init__()
        self.sigmas, self.input_scale = list(sigmas), float(input_scale)
        self.register_buffer("n_classes", torch.tensor(n_classes))
        self.nets = nn.ModuleList(squeezenet(n_classes, kind) for _ in sigmas) if n_classes else nn.ModuleList()

    def forward(self, faces: List[torch.Tensor]) -> List[torch.Tensor]:
        """Logits of each prior on the high-pass residual of the face at its scale."""
        if not len(self.nets):
            raise RuntimeError("the identity priors are not sized yet (csrip's prepare sets them from the data)")
        return [net(high_pass(face.float(), sigma) * self.input_scale)
                for net, sigma, face in zip(self.nets, self.sigmas, faces)]


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
        if options.upscale_filters and (len(options.upscale_filters) != n or
                                        any(u < 4 or u % 4 for u in options.upscale_filters)):
            raise ConfigError(f"csrip: upscale_filters needs one width per module ({n}), each a multiple of 4 "
                              f"(PixelShuffle(2) keeps a quarter), got {options.upscale_filters}")
        if options.upscale_filters and any(u // 4 != f for u, f in zip(options.upscale_filters, options.filters[1:])):
            raise ConfigError(f"csrip: each module's upscale_filters / 4 must be the next module's filters: "
                              f"{options.upscale_filters} after PixelShuffle(2) give "
                              f"{[u // 4 for u in options.upscale_filters]}, filters are {options.filters}")
        if not options.prior_input_scale > 0 or not np.isfinite(options.prior_input_scale):
            raise ConfigError(f"csrip: prior_input_scale must be a finite number > 0, got "
                              f"{options.prior_input_scale}")
        if options.final_block_filters < 0 or options.prior_crop < 0:
            raise ConfigError(f"csrip: final_block_filters and prior_crop must be >= 0, got "
                              f"{options.final_block_filters} and {options.prior_crop}")
        self.options, self.scale = options, scale
        self.cascade = Cascade(options.filters, options.blocks, upscale_widths(options),
                               options.final_block_filters, options.residual_block)
        self.priors = Priors(options.prior_sigmas, 0, options.prior_network, options.prior_input_scale)

    def forward(self, lr):
        return self.cascade(lr)[-1]

    def size_priors(self, n_classes: int) -> None:
        self.priors = Priors(self.options.prior_sigmas, n_classes, self.options.prior_network,
                             self.options.prior_input_scale).to(self.priors.n_classes.device)

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
    least = max(PRIOR_MIN_SIDE, prior_min_side(model.options.prior_network))
    if h % side or w % side or min(h, w) * 2 // side < least:
        raise config.error("data.hr_size", f"{h}x{w} does not fit C-SRIP: sides must be multiples of {side} and "
                           f"the 2x output at least {least} px for its SqueezeNet prior (the paper: "
                           f"192x192)")
    n = len(data.faces.identities) if data.has_labels else 0
    if n < 2:
        raise DataError(f"C-SRIP's identity priors need at least 2 identities in the training faces in "
                        f"{data.faces.image_root}, found {n}")
    model.size_priors(n)
    model.priors.to(device)


def scale_targets(hr: torch.Tensor, n: int) -> List[torch.Tensor]:
    """The HR face at each of the n cascade scales (1/2^(n-1) ... 1 of its size), MATLAB bicubic."""
    from benchmark.faces.resize import imresize

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


CROP_STREAM = 0xC809  # keeps the crop draws apart from other per-step streams


def random_crops(hr: torch.Tensor, pad: int, seed: int, step: int, offset: int = 0,
                 global_batch: int = 0) -> torch.Tensor:
    """Each face edge-padded by ``pad`` px and cropped back to its size at an offset drawn
    uniformly from [0, 2 pad] x [0, 2 pad] by ``default_rng([seed, step, CROP_STREAM])``. Under
    torch.distributed ``hr`` is positions [offset, offset + len) of a global batch of
    ``global_batch`` faces and takes those draws (the same crops whatever the number of ranks)."""
    if pad <= 0:
        return hr
    h, w = hr.shape[-2:]
    n = max(global_batch, offset + len(hr))
    offsets = np.random.default_rng([seed, step, CROP_STREAM]).integers(0, 2 * pad + 1, size=(n, 2))
    offsets = offsets[offset:offset + len(hr)]
    padded = F.pad(hr, (pad,) * 4, mode="replicate")
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets.tolist())])


def priors_stage(ctx, batch):
    hr = random_crops(batch.hr, ctx.model.options.prior_crop, ctx.seed, ctx.step, ctx.batch_offset,
                      ctx.global_batch)
    targets = scale_targets(hr, len(ctx.model.cascade.to_rgb))
    return {"ce": _prior_ce(ctx.model.priors(targets), batch.labels)}


def cascade_stage(ctx, batch):
    model = ctx.model
    model.priors.eval()  # fixed priors: no dropout, whatever mode the loop set
    outputs = model.cascade(batch.lr)
    targets = scale_targets(batch.hr, len(outputs))
    dr = model.options.ssim_data_range
    return {"ssim": sum(ssim_loss(sr, hr, dr) for sr, hr in zip(outputs, targets)),
            "identity": _prior_ce(model.priors(outputs), batch.labels)}


def priors_validation(ctx, batch):
    """Per face: each prior's top-1 hit (accuracy_x2, _x4, _x8 by scale factor) and their mean."""
    targets = scale_targets(batch.hr, len(ctx.model.cascade.to_rgb))
    hits = [(z.argmax(1) == batch.labels).double() for z in ctx.model.priors(targets)]
    out = {f"accuracy_x{2 ** (i + 1)}": h for i, h in enumerate(hits)}
    out["accuracy"] = torch.stack(hits).mean(0)
    return out


def cascade_validation(ctx, batch):
    """Per face: the mean SSIM map and the pixel MSE of the 8x output against the HR face."""
    sr = ctx.model.cascade(batch.lr)[-1].float()
    hr = batch.hr.float()
    ssim = ssim_map(sr, hr, ctx.model.options.ssim_data_range).mean((1, 2, 3)).double()
    return {"ssim": ssim, "mse": ((sr - hr) ** 2).mean((1, 2, 3)).double()}


PRIOR_METRICS = {"accuracy": "max", "accuracy_x2": "max", "accuracy_x4": "max", "accuracy_x8": "max"}
STAGES = {
    "priors": StageSpec(priors_stage, ("ce",), optimise={"priors": ("ce",)}, needs_identity_labels=True,
                        validate=priors_validation, metrics=PRIOR_METRICS),
    "cascade": StageSpec(cascade_stage, ("ssim", "identity"), optimise={"cascade": ("ssim", "identity")},
                         needs_identity_labels=True, validate=cascade_validation,
                         metrics={"ssim": "max", "mse": "min"}),
}
PAPER = ("Grm et al., IEEE TIP 2020: 24x24 -> 192x192 in about 15 ms per image in batch mode, 30 ms "
         "single-sample, on a GPU (../shared/papers/001, Sec. 4.1); a 53-layer network, no parameter count")

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
                f"{err} (csrip turns {self.input_size[0]}x{self.input_size[1]} LR faces into {h}x{w}: run it at "
                f"x{self.scale} on a protocol that pins no HR size, such as lfw-10fold or lfw-blufr, where the faces "
                f"are rendered at {h}x{w}, or on one that pins [{h}, {w}], such as lfw-psnr)") from None

