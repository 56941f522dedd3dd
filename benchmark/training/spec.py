"""What a baseline module registers with the trainer, and what a stage kind's functions receive:
``Batch``, ``StageContext``, ``StageSpec``, ``TrainableModel`` (importable from
``benchmark.training.trainer`` too). See ``benchmark.training.trainer`` for how they are used."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import nn

from benchmark.faces.templates import FaceTemplate
from benchmark.training.config import StageConfig


@dataclass
class Batch:
    lr: torch.Tensor                   # (N, 3, h, w) RGB [0, 1]
    hr: torch.Tensor                   # (N, 3, H, W) RGB [0, 1], in ``StageContext.frame``
    labels: Optional[torch.Tensor]     # (N,) int64 identity index; None: the set has no labels
    index: torch.Tensor                # (N,) index of each face in the FaceSet


@dataclass
class StageContext:
    model: nn.Module                   # the whole built model (train mode)
    identity: Optional[nn.Module]      # the frozen identity network, when the stage needs one
    stage: StageConfig
    frame: FaceTemplate                # the frame of the HR faces
    scale: int
    device: torch.device
    faces: object = None               # the training FaceSet
    state: dict = field(default_factory=dict)  # per-stage state saved in checkpoints
    seed: int = 0                      # the config's seed
    step: int = 0                      # the stage step of the batch ``StageSpec.step`` is computing
    # under torch.distributed the batch is this rank's share of the step's global batch: its first
    # face's position in it and the global batch size (0: the batch is the global batch). Per-face
    # draws of (seed, step) streams take positions [batch_offset, batch_offset + len(batch)) of
    # ``global_batch`` draws, so that they do not depend on the number of processes.
    batch_offset: int = 0
    global_batch: int = 0


@dataclass(frozen=True)
class StageSpec:
    step: Callable[[StageContext, Batch], Dict[str, torch.Tensor]]  # raw (unweighted) loss terms
    losses: Tuple[str, ...]            # the terms ``step`` returns; the config weights each
    optimise: Optional[Dict[str, Tuple[str, ...]]] = None  # submodule ('' = all) -> its terms
    needs_identity_network: bool = False
    needs_identity_labels: bool = False
    setup: Optional[Callable[[StageContext], None]] = None  # runs at the stage's (re)start
    # validation for early stopping: (ctx, batch of held-out faces, unflipped) -> {metric: (N,)
    # per-face values}, run under torch.no_grad with the model in eval mode; ``metrics`` names
    # each metric's direction ("max": higher is better, "min": lower is better)
    validate: Optional[Callable[[StageContext, Batch], Dict[str, torch.Tensor]]] = None
    metrics: Optional[Dict[str, str]] = None

    def groups(self) -> Dict[str, Tuple[str, ...]]:
        return self.optimise if self.optimise is not None else {"": self.losses}


@dataclass(frozen=True)
class TrainableModel:
    name: str                          # also the adapter's name in benchmark.registry.MODELS
    architecture: str                  # checkpoints of the same architecture are interchangeable
    options: type                      # dataclass of the config's model: keys
    build: Callable[[object, int], nn.Module]  # (options, scale) -> module; forward(lr) = SR
    stages: Dict[str, StageSpec]       # stage kind (the config's stages[i].name) -> spec
    paper: str = ""                    # the paper's size/speed figures, for the benchmark
    # (model, identity=, data=, config=, device=) -> None, once before any step (after the model
    # is built, before weights are loaded): model-specific checks, and parts that need the data
    # or the identity network (e.g. a trainable copy of it); its errors stop the run cleanly.
    prepare: Optional[Callable[..., None]] = None
