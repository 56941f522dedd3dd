"""C-Face (Han, Wang, Shen & Zhao, "C-Face: Using Compare Face on Face Hallucination for
Low-Resolution Face Recognition", JAIR 75:1715-1737, 2022; the text in
../shared/papers/004_*.txt): an SRGAN (Ledig et al., CVPR 2017) trained with the C-Face identity
loss, after fine-tuning its face-recognition network on hallucinated faces.

Design notes: docs/BASELINES.md, section `baselines/cface.py`.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Literal, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import ConfigError, DataError
from benchmark.registry import MODELS

from benchmark.training.losses import mse_loss
from baselines.srresnet import SRResNet
from benchmark.training.trainer import CheckpointAdapter, StageSpec, TrainableModel, register_trainable

log = logging.getLogger(__name__)

RANDOM_INIT = "random-init"
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"


def _vgg19_relus() -> Dict[str, int]:
    """torchvision vgg19.features: relu<block>_<conv> -> the slice end just after that ReLU."""
    out, index, block, conv = {}, 0, 1, 0
    for width in (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                  512, 512, 512, 512, "M"):
        if width == "M":
            index, block, conv = index + 1, block + 1, 0
        else:
            conv += 1
            out[f"relu{block}_{conv}"] = index + 2   # conv at index, its ReLU at index + 1
            index += 2
    return out


VGG19_LAYERS = _vgg19_relus()   # relu1_2: 4, relu2_2: 9, relu3_1: 12, relu3_4: 18, relu5_4: 36, ...
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
COMPARE_CACHE_VERSION = 1


@dataclass
class CFaceOptions:
    blocks: int = 16                    # generator residual blocks (SRGAN: 16)
    filters: int = 64                   # generator width
    d_filters: int = 64                 # discriminator's first width (then x1, 2, 2, 4, 4, 8, 8)
    d_dense: int = 1024                 # discriminator's hidden dense layer
    hr_size: Tuple[int, int] = (112, 96)  # the discriminator's input size (= data.hr_size)
    perceptual_network: str = "vgg19"
    perceptual_layer: str = "relu5_4"
    perceptual_weights: Optional[str] = None  # file | null: $TORCH_HOME/checkpoints | random-init
    compare_k: int = 3
    triplet_margin: float = 0.2
    si_distance: Literal["euclidean", "squared"] = "euclidean"      # L_SI: ||.||_2 or ||.||_2^2 (004 Eq. 4)
    perceptual_reduction: Literal["mean", "sum-channels"] = "mean"  # sum-channels: 004 Eq. (2)
    asoftmax_m: int = 4                                              # L_FR's margin (004 Sec. 3.1.3)


# --- networks ------------------------------------------------------------------------

class SRGANDiscriminator(nn.Module):
    WIDTHS = (1, 2, 2, 4, 4, 8, 8)      # x filters, after the first conv
    STRIDES = (2, 1, 2, 1, 2, 1, 2)

    def __init__(self, hr_size: Tuple[int, int], filters: int = 64, dense: int = 1024, slope: float = 0.2):
        super().__init__()
        layers = [nn.Conv2d(3, filters, 3, padding=1), nn.LeakyReLU(slope)]
        c, (h, w) = filters, hr_size
        for k, s in zip(self.WIDTHS, self.STRIDES):
            layers += [nn.Conv2d(c, k * filters, 3, stride=s, padding=1, bias=False), nn.BatchNorm2d(k * filters),
                       nn.LeakyReLU(slope)]
            c, h, w = k * filters, (h - 1) // s + 1, (w - 1) // s + 1
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, dense), nn.LeakyReLU(slope), nn.Linear(dense, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N,) logits of 'this is a real HR face'."""
        return self.head(self.features(images * 2 - 1))[:, 0]


class CFaceModel(nn.Module):
    """generator + discriminator (+ the recognition copy once ``attach_recognition`` ran);
    forward(lr) is the generator. ``aux`` holds what is not saved: the perceptual network
    and the compare-face table."""

    def __init__(self, scale: int, o: CFaceOptions):
        super().__init__()
        self.options = o
        self.generator = SRResNet(scale, o.blocks, o.filters)
        self.discriminator = SRGANDiscriminator(tuple(o.hr_size), o.d_filters, o.d_dense)
        self.recognition = None
        self.aux: Dict[str, object] = {}

    def forward(self, lr):
        return self.generator(lr)

    def attach_recognition(self, identity: nn.Module) -> None:
        self.recognition = copy.deepcopy(identity)  # keeps IdentityNetwork's sticky BN-only train mode
        self.recognition.backend.requires_grad_(True)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Without a recognition copy (the adapter) its saved weights are skipped; with one, a
        state saved before it existed leaves it as copied from the identity network."""
        state = dict(state_dict)
        if self.recognition is None:
            state = {k: v for k, v in state.items() if not k.startswith("recognition.")}
        elif not any(k.startswith("recognition.") for k in state):
            state.update({f"recognition.{k}": v for k, v in self.recognition.state_dict().items()})
        return super().load_state_dict(state, strict=strict, assign=assign)


def build(options: CFaceOptions, scale: int) -> CFaceModel:
    return CFaceModel(scale, options)


class ImageNetFeatures(nn.Module):
    """[0, 1] RGB -> the feature maps of ``features`` on ImageNet-normalised input; frozen."""

    def __init__(self, features: nn.Module, source: str):
        super().__init__()
        self.features, self.source = features, source
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def forward(self, x):
        return self.features((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))


def vgg19_weights_path(options: CFaceOptions) -> Path:
    if options.perceptual_weights:
        return Path(options.perceptual_weights).expanduser()
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(VGG19_URL).name


def vgg19_features() -> nn.Sequential:
    """torchvision's ``vgg19().features`` (same layers, same state-dict keys), without the
    123M-parameter classifier the perceptual loss never uses; torchvision's initialisation."""
    from torchvision.models.vgg import cfgs, make_layers

    features = make_layers(cfgs["E"], batch_norm=False)
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return features


def _vgg19(options: CFaceOptions, where: str) -> nn.Module:
    if options.perceptual_layer not in VGG19_LAYERS:
        raise ConfigError(f"{where}: model.perceptual_layer: unknown VGG19 layer {options.perceptual_layer!r} "
                          f"(known: {', '.join(VGG19_LAYERS)})")
    if options.perceptual_weights == RANDOM_INIT:
        log.warning("cface: the perceptual loss uses a RANDOMLY INITIALISED VGG19 (perceptual_weights: "
                    "random-init): for smoke runs and benchmarks only, not a perceptual loss")
        with torch.random.fork_rng():  # fixed weights, the training RNG untouched
            torch.manual_seed(0)
            features = vgg19_features()
        source = RANDOM_INIT
    else:
        path = vgg19_weights_path(options)
        if not path.is_file():
            raise ConfigError(f"{where}: the VGG19 perceptual loss needs torchvision's ImageNet VGG19 weights at "
                              f"{path}: download {VGG19_URL} there (or set model.perceptual_weights to the "
                              "file); nothing is downloaded during training")
        features = vgg19_features()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            features.load_state_dict({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
        except Exception as err:
            raise ConfigError(f"{where}: {path} is not torchvision's VGG19 state dict "
                              f"({type(err).__name__}: {str(err).splitlines()[0]})") from None
        source = str(path)
    return ImageNetFeatures(features[:VGG19_LAYERS[options.perceptual_layer]], source)


# name -> (options, where) -> frozen feature network; tests and users may add their own here.
PERCEPTUAL_NETWORKS: Dict[str, Callable[[CFaceOptions, str], nn.Module]] = {"vgg19": _vgg19}


# --- losses --------------------------------------------------------------------------

def perceptual_loss(features: nn.Module, sr: torch.Tensor, hr: torch.Tensor,
                    reduction: str = "mean") -> torch.Tensor:
    """MSE between the feature maps of SR and HR (HR is the target: no gradient); with
    ``sum-channels`` summed over the channels (004 Eq. 2), i.e. C x the mean."""
    n = sr.shape[0]
    f = features(torch.cat([sr, hr.to(sr.dtype)])).float()
    loss = F.mse_loss(f[:n], f[n:].detach())
    return loss * f.shape[1] if reduction == "sum-channels" else loss


def adversarial_loss(logits_sr: torch.Tensor) -> torch.Tensor:
    """The generator's -log D(SR), mean over the batch (D = sigmoid of the logit)."""
    return F.binary_cross_entropy_with_logits(logits_sr.float(), torch.ones_like(logits_sr, dtype=torch.float32))


def discriminator_losses(logits_hr: torch.Tensor, logits_sr: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(-log D(HR), -log(1 - D(SR))), each the mean over the batch."""
    real = F.binary_cross_entropy_with_logits(logits_hr.float(), torch.ones_like(logits_hr, dtype=torch.float32))
    fake = F.binary_cross_entropy_with_logits(logits_sr.float(), torch.zeros_like(logits_sr, dtype=torch.float32))
    return real, fake


def cface_losses(phi, sr: torch.Tensor, hr: torch.Tensor, hr_compare: torch.Tensor,
                 has_compare: torch.Tensor, squared: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """(L_SI(SR, HR) averaged over the batch, the compare term averaged over the faces with
    ``has_compare``; 0 when none has). ``hr_compare`` rows without one are ignored. L_SI is
    the L2 distance of the (normalised) embeddings, squared when ``squared`` (004 Eq. 4)."""
    n = sr.shape[0]
    emb = phi(torch.cat([sr, hr.to(sr.dtype), hr_compare.to(sr.dtype)]))
    e_sr, e_hr, e_c = emb[:n], emb[n:2 * n].detach(), emb[2 * n:].detach()

    def dist(a, b):
        d = torch.linalg.vector_norm(a - b, dim=1)
        return d * d if squared else d

    si = dist(e_sr, e_hr)
    hinge = F.relu(dist(e_sr, e_c) - dist(e_hr, e_c))
    mask = has_compare.to(hinge.dtype)
    return si.mean(), (hinge * mask).sum() / mask.sum().clamp(min=1)


def batch_hard_triplet_loss(emb: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean over anchors of max(d(a, hardest positive) - d(a, hardest negative) + margin, 0);
    L2 distances; anchors with no positive or no negative in the batch are left out (0 when
    none is left)."""
    d = torch.cdist(emb.float(), emb.float())
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=emb.device)
    pos, neg = same & ~eye, ~same
    valid = pos.any(1) & neg.any(1)
    if not valid.any():
        return emb.sum() * 0.0
    hardest_pos = torch.where(pos, d, torch.full_like(d, -float("inf"))).amax(1)
    hardest_neg = torch.where(neg, d, torch.full_like(d, float("inf"))).amin(1)
    return F.relu(hardest_pos - hardest_neg + margin)[valid].mean()


def _chebyshev(c: torch.Tensor, m: int) -> torch.Tensor:
    """cos(m theta) from c = cos(theta): the Chebyshev polynomial T_m(c)."""
    t_prev, t = torch.ones_like(c), c
    if m == 0:
        return t_prev
    for _ in range(m - 1):
        t_prev, t = t, 2 * c * t - t_prev
    return t


def a_softmax_loss(features: torch.Tensor, class_weights: torch.Tensor, labels: torch.Tensor,
                   m: int = 4) -> torch.Tensor:
    """SphereFace's A-Softmax (004 Eq. 3): mean over the batch of -log softmax of the label's
    logit, with logits ||x|| cos(theta_j) (weights L2-normalised, no bias) and, for the
    label, ||x|| psi(theta_y), psi(theta) = (-1)^k cos(m theta) - 2k for theta in
    [k pi/m, (k+1) pi/m] (monotonically decreasing on [0, pi])."""
    x = features.float()
    norm = torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-12)
    cos = ((x / norm) @ F.normalize(class_weights.float(), dim=1).t()).clamp(-1.0, 1.0)
    c_y = cos.gather(1, labels[:, None])
    with torch.no_grad():
        k = torch.floor(m * torch.acos(c_y.clamp(-1.0 + 1e-7, 1.0 - 1e-7)) / math.pi).clamp(0, m - 1)
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
    psi = sign * _chebyshev(c_y, m) - 2.0 * k
    logits = (norm * cos).scatter(1, labels[:, None], norm * psi)
    return F.cross_entropy(logits, labels)


class ASoftmaxHead(nn.Module):
    """The class weights of L_FR over the training identities (a row per identity)."""

    def __init__(self, dim: int, n_classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_classes, dim))
        nn.init.xavier_uniform_(self.weight)


def raw_features(net: nn.Module, faces: torch.Tensor) -> torch.Tensor:
    """phi(I) before the L2 normalisation an ``IdentityNetwork`` applies (the A-Softmax input)."""
    if not hasattr(net, "backend"):
        return net(faces).float()
    x = net.warp(faces)
    if net.normalise is not None:
        x = net.normalise(x)
    return net.backend(x).float()


# --- compare faces -------------------------------------------------------------------

def nearest_same_identity(emb: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(n, k) indices of each face's k nearest other faces of its identity (L2), nearest
    first, ties by index; -1 pads rows whose identity has fewer than k + 1 faces."""
    emb, labels = np.asarray(emb, dtype=np.float64), np.asarray(labels)
    out = np.full((len(labels), k), -1, dtype=np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:
            continue
        e = emb[members]
        d = np.sqrt(((e[:, None, :] - e[None, :, :]) ** 2).sum(-1))
        for row, i in enumerate(members):
            others = [j for j in range(len(members)) if j != row]
            order = sorted(others, key=lambda j: (d[row, j], members[j]))[:k]
            out[i, :len(order)] = members[order]
    return out


@contextmanager
def running_statistics(net: nn.Module):
    """BatchNorm layers of ``net`` use (and leave untouched) their running statistics."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    modes = [m.training for m in bns]
    for m in bns:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(bns, modes):
            m.train(mode)


def network_fingerprint(net: nn.Module) -> str:
    """SHA256 of a network's parameters and buffers (names, shapes, values)."""
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        h.update(name.encode() + str(tuple(t.shape)).encode() + t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def compare_faces(data, identity: nn.Module, k: int, device, batch_size: int = 64,
                  cache_root: Optional[Path] = None) -> np.ndarray:
    """The compare-face table of a ``FaceTrainingSet`` (see the module docstring), from the
    cache when this data, network, HR size and k were seen before."""
    from benchmark.engine.cache import default_cache_dir, key_hash

    key = {"version": COMPARE_CACHE_VERSION, "data": data.faces.content_hash(), "hr_size": list(data.hr_size),
           "frame": data.frame.name, "k": k, "identity": getattr(identity, "name", type(identity).__name__),
           "identity_sha256": network_fingerprint(identity)}
    root = Path(cache_root) if cache_root is not None else default_cache_dir()
    path = root / "compare-faces" / f"{key_hash(key)}.npz"
    if path.is_file():
        with np.load(path) as z:
            if json.loads(str(z["key"])) == json.loads(json.dumps(key)):
                return z["neighbours"]
    paths = data.paths
    chunks = []
    with torch.no_grad(), running_statistics(identity):
        for s in range(0, len(paths), batch_size):
            hr = read_hr_faces(paths[s:s + batch_size], data.hr_size)
            chunks.append(identity(torch.from_numpy(hr).to(device)).float().cpu().numpy())
    table = nearest_same_identity(np.concatenate(chunks), data.faces.labels, k)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
    np.savez(tmp, neighbours=table, key=json.dumps(key))
    os.replace(tmp, path)
    return table


def read_hr_faces(paths, hr_size) -> np.ndarray:
    """Aligned faces (any size each) as the training set renders them: (N, 3, H, W) in [0, 1]."""
    from benchmark.faces.images import read_batch

    from benchmark.faces.frames import fit_to_hr_size

    return np.concatenate([fit_to_hr_size(read_batch([p]), tuple(hr_size)) for p in paths])


def draw_compare(table: np.ndarray, index, seed: int, step: int, offset: int = 0,
                 global_batch: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """One neighbour per face of the batch (uniform over its row's valid entries), drawn from
    ``default_rng([seed, step, ...])``: (indices, has_compare); index -1 where there is none.
    Under torch.distributed the batch is positions [offset, offset + len) of a global batch of
    ``global_batch`` faces: it takes those draws, so the draw of a face does not depend on N."""
    rows = table[np.asarray(index)]
    counts = (rows >= 0).sum(1)
    rng = np.random.default_rng([seed, step, 0xCFACE])
    draws = rng.random(max(global_batch, offset + len(rows)))[offset:offset + len(rows)]
    pick = (draws * np.maximum(counts, 1)).astype(np.int64)
    chosen = np.where(counts > 0, rows[np.arange(len(rows)), pick], -1)
    return chosen, counts > 0


# --- stages --------------------------------------------------------------------------

def mse_stage(ctx, batch):
    return {"mse": mse_loss(ctx.model.generator(batch.lr), batch.hr)}


def _gan_terms(ctx, batch):
    m = ctx.model
    sr = m.generator(batch.lr)
    # one D(SR) serves both players: each group's gradient reaches only its own parameters
    logits_sr = m.discriminator(sr)
    d_real, d_fake = discriminator_losses(m.discriminator(batch.hr), logits_sr)
    terms = {"perceptual": perceptual_loss(m.aux["perceptual"], sr, batch.hr, m.options.perceptual_reduction),
             "adversarial": adversarial_loss(logits_sr), "d_real": d_real, "d_fake": d_fake}
    return sr, terms


def gan_stage(ctx, batch):
    return _gan_terms(ctx, batch)[1]


def _frozen_sr(m, lr):
    was = m.generator.training
    m.generator.eval()  # frozen here: its BatchNorm statistics must not drift either
    with torch.no_grad():
        sr = m.generator(lr).clamp(0, 1)
    m.generator.train(was)
    return sr


def recognition_stage(ctx, batch):
    m = ctx.model
    sr = _frozen_sr(m, batch.lr)
    emb = m.recognition(torch.cat([batch.hr, sr.to(batch.hr.dtype)]))
    labels = torch.cat([batch.labels, batch.labels])
    return {"triplet": batch_hard_triplet_loss(emb, labels, m.options.triplet_margin)}


def _asoftmax(m, hr, sr, labels):
    """L_FR on the HR faces and their (gradient-free) SR versions mixed in one batch."""
    features = raw_features(m.recognition, torch.cat([hr, sr.to(hr.dtype)]))
    return a_softmax_loss(features, m.recognition.asoftmax_head.weight, torch.cat([labels, labels]),
                          m.options.asoftmax_m)


def recognition_asoftmax_stage(ctx, batch):
    """Algorithm 1 steps 2-3 with the paper's L_FR (eq. 3) on mixed HR and SR faces."""
    m = ctx.model
    return {"asoftmax": _asoftmax(m, batch.hr, _frozen_sr(m, batch.lr), batch.labels)}


def _cface_terms(ctx, batch):
    m = ctx.model
    sr, terms = _gan_terms(ctx, batch)
    chosen, has = draw_compare(m.aux["compare"], batch.index.cpu().numpy(), ctx.seed, ctx.step,
                                ctx.batch_offset, ctx.global_batch)
    hrc = batch.hr.clone()  # placeholders where a face has no compare face (masked out)
    if has.any():
        paths = [ctx.faces.image_root / ctx.faces.relpaths[j] for j in chosen[has]]
        faces = torch.from_numpy(read_hr_faces(paths, batch.hr.shape[-2:]))
        hrc[torch.from_numpy(has).to(hrc.device)] = faces.to(hrc.device, hrc.dtype)
    squared = {"squared": True} if m.options.si_distance == "squared" else {}
    terms["si"], terms["compare"] = cface_losses(m.recognition, sr, batch.hr, hrc,
                                                 torch.from_numpy(has).to(sr.device), **squared)
    return sr, terms


def cface_stage(ctx, batch):
    return _cface_terms(ctx, batch)[1]


def cface_joint_stage(ctx, batch):
    """Algorithm 1 step 4: the cface stage, and the recognition copy descends its own loss on
    this batch's HR faces and (detached) SR faces at the same time."""
    m = ctx.model
    sr, terms = _cface_terms(ctx, batch)
    emb = m.recognition(torch.cat([batch.hr, sr.detach().clamp(0, 1).to(batch.hr.dtype)]))
    terms["triplet"] = batch_hard_triplet_loss(emb, torch.cat([batch.labels, batch.labels]),
                                               m.options.triplet_margin)
    return terms


def cface_joint_asoftmax_stage(ctx, batch):
    """Algorithm 1 step 4 as the paper writes it: loss (7) for N_SR and N_D, and CNN_R updated
    with L_FR (eq. 3) on this batch's HR and (detached) SR faces at the same time."""
    m = ctx.model
    sr, terms = _cface_terms(ctx, batch)
    terms["asoftmax"] = _asoftmax(m, batch.hr, sr.detach().clamp(0, 1), batch.labels)
    return terms


GENERATOR = "generator"
DISCRIMINATOR = "discriminator"
STAGES = {
    "mse": StageSpec(mse_stage, ("mse",), optimise={GENERATOR: ("mse",)}),
    "gan": StageSpec(gan_stage, ("perceptual", "adversarial", "d_real", "d_fake"),
                     optimise={GENERATOR: ("perceptual", "adversarial"), DISCRIMINATOR: ("d_real", "d_fake")}),
    "recognition": StageSpec(recognition_stage, ("triplet",), optimise={"recognition": ("triplet",)},
                             needs_identity_network=True, needs_identity_labels=True),
    "cface": StageSpec(cface_stage, ("perceptual", "adversarial", "si", "compare", "d_real", "d_fake"),
                       optimise={GENERATOR: ("perceptual", "adversarial", "si", "compare"),
                                 DISCRIMINATOR: ("d_real", "d_fake")},
                       needs_identity_network=True, needs_identity_labels=True),
    "cface_joint": StageSpec(cface_joint_stage, ("perceptual", "adversarial", "si", "compare", "d_real", "d_fake",
                                                 "triplet"),
                             optimise={GENERATOR: ("perceptual", "adversarial", "si", "compare"),
                                       DISCRIMINATOR: ("d_real", "d_fake"), "recognition": ("triplet",)},
                             needs_identity_network=True, needs_identity_labels=True),
    "recognition_asoftmax": StageSpec(recognition_asoftmax_stage, ("asoftmax",),
                                      optimise={"recognition": ("asoftmax",)},
                                      needs_identity_network=True, needs_identity_labels=True),
    "cface_joint_asoftmax": StageSpec(cface_joint_asoftmax_stage,
                                      ("perceptual", "adversarial", "si", "compare", "d_real", "d_fake", "asoftmax"),
                                      optimise={GENERATOR: ("perceptual", "adversarial", "si", "compare"),
                                                DISCRIMINATOR: ("d_real", "d_fake"), "recognition": ("asoftmax",)},
                                      needs_identity_network=True, needs_identity_labels=True),
}


def prepare(model: CFaceModel, identity, data, config, device):
    """Before any step: sizes, the recognition copy, the perceptual network, the compare faces."""
    o, where = model.options, str(config.source)
    if tuple(o.hr_size) != tuple(config.data.hr_size):
        raise config.error("model.hr_size", f"the discriminator is built for {o.hr_size[0]}x{o.hr_size[1]} "
                           f"but data.hr_size is {config.data.hr_size[0]}x{config.data.hr_size[1]}")
    for i, s in enumerate(config.stages):
        if config.stage_batch_size(s) < 2:
            key = "batch_size" if s.batch_size is None else f"stages[{i}].batch_size"
            raise config.error(key, "C-Face needs batch_size >= 2 (BatchNorm, triplets)")
    if o.compare_k < 1:
        raise config.error("model.compare_k", "must be >= 1")
    if o.asoftmax_m < 1:
        raise config.error("model.asoftmax_m", "must be >= 1")
    losses = {term for s in config.stages for term in STAGES[s.name].losses}  # what the configured stages need
    if identity is not None:
        model.attach_recognition(identity)
    if "asoftmax" in losses:  # L_FR's class weights over the training identities
        h, w = config.data.hr_size
        with torch.no_grad(), running_statistics(model.recognition):
            dim = raw_features(model.recognition, torch.zeros(2, 3, h, w, device=device)).shape[1]
        model.recognition.add_module("asoftmax_head", ASoftmaxHead(dim, len(data.faces.identities)).to(device))
    if "perceptual" in losses:
        if o.perceptual_network not in PERCEPTUAL_NETWORKS:
            raise config.error("model.perceptual_network", f"unknown network {o.perceptual_network!r} "
                               f"(known: {', '.join(PERCEPTUAL_NETWORKS)})")
        model.aux["perceptual"] = PERCEPTUAL_NETWORKS[o.perceptual_network](o, where).to(device)
    if "compare" in losses:
        table = compare_faces(data, identity, o.compare_k, device)
        n_with = int((table[:, 0] >= 0).sum())
        if n_with == 0:
            raise DataError(f"C-Face's compare faces need identities with at least two images; no identity in "
                            f"{data.faces.image_root} has two")
        log.info("cface: %d of %d training faces have compare faces; the other %d (single-image identities) "
                 "are left out of the compare term", n_with, len(table), len(table) - n_with)
        model.aux["compare"] = table


PAPER = ("C-Face (Han et al., JAIR 2022; ../shared/papers/004): no parameter count, FLOPs or speed; "
         "SRGAN (Ledig et al. 2017): generator 1.5M parameters (16 blocks, 4x; EDSR paper, Table 1)")

register_trainable(TrainableModel("cface", "cface", CFaceOptions, build, STAGES, PAPER, prepare=prepare))


@MODELS.register("cface", summary="C-Face: SRGAN generator trained with the C-Face identity loss "
                                  "(needs trained weights)")
class CFaceAdapter(CheckpointAdapter):
    name = "cface"
