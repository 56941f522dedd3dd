"""The one training loop of the baselines: stages, optimisers, AMP, checkpoints, resume, logs.

Design notes: docs/TRAINING.md, section `benchmark/training/trainer.py`.
"""
from __future__ import annotations

import functools
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from benchmark.contracts.model import SRAdapter
from benchmark.errors import AdapterError, ConfigError, DataError, FhbenchError, UnknownNameError
from benchmark.registry import TRAINERS

from benchmark.training import checks
from benchmark.training.spec import Batch, StageContext, StageSpec, TrainableModel  # noqa: F401
from benchmark.training.checkpoints import (CHECKPOINT_FORMAT, rank_seed, read_checkpoint, restore_rng,  # noqa: F401
                                            save_checkpoint, save_weights)
from benchmark.training.scalars import LossWindow, NoScalarLog, ScalarLog, progress_bar
from benchmark.training.config import (AUTO, StageConfig, TrainConfig, load_config, make_data_degradation,
                                       with_overrides)
from benchmark.training.distributed import Dist, RankShare, convert_sync_batchnorm, requested_world_size

log = logging.getLogger(__name__)

# Devices on which ``mixed_precision: true`` autocasts to float16 with a GradScaler. Tests add
# "cpu" (torch autocasts fp16 and scales gradients there too) to run that path without a GPU.
AMP_DEVICE_TYPES = ("cuda",)


# --- what a baseline module registers (the types live in benchmark.training.spec) ----------

TRAINABLE: Dict[str, TrainableModel] = {}


def register_trainable(model: TrainableModel) -> TrainableModel:
    if model.name in TRAINABLE:
        if TRAINABLE[model.name] is not model:
            raise ValueError(f"trainable model {model.name!r} is registered twice")
        return model
    TRAINABLE[model.name] = model
    TRAINERS.add(model.name, functools.partial(train, model.name), summary=f"train {model.name}")
    return model


def trainable(name: str) -> TrainableModel:
    TRAINERS.load()  # the trainable models register themselves as their modules load
    if name not in TRAINABLE:
        raise UnknownNameError(f"unknown trainable model {name!r} (known: {', '.join(sorted(TRAINABLE)) or 'none'})")
    return TRAINABLE[name]


# --- weights files and the adapter ---------------------------------------------------

def default_weights_path(model: str, scale: int) -> Path:
    """``$FHBENCH_WEIGHTS/<model>-x<scale>.pt``, else ``~/.cache/fhbench/weights/...``."""
    folder = os.environ.get("FHBENCH_WEIGHTS") or Path.home() / ".cache" / "fhbench" / "weights"
    return Path(folder).expanduser() / f"{model}-x{scale}.pt"


class CheckpointAdapter(SRAdapter):
    """SR adapter of a trained baseline; subclasses set ``name`` (a registered trainable
    model). Loads ``weights`` (a weights file or a training checkpoint), else the default
    location; the output is clamped to [0, 1]."""

    kind = "baseline"

    def __init__(self, scale: Optional[int] = None, weights=None, device="cpu", **_):
        spec = trainable(self.name)
        if weights:
            path = Path(weights).expanduser()
        elif scale:
            path = default_weights_path(self.name, scale)
            if not path.is_file():
                raise AdapterError(
                    f"no {self.name} x{scale} weights at {path}: train them with `fhbench train {self.name} "
                    f"--config baselines/configs/{self.name}.yaml --data-root DIR` and copy "
                    f"{self.name}-x{scale}.pt there (or set $FHBENCH_WEIGHTS), or pass --weights PATH")
        else:
            raise AdapterError(f"model {self.name} needs --scale or --weights to find its weights")
        ckpt = read_checkpoint(path, spec.architecture, scale)
        self.scale, self.weights_file, self.device = ckpt["scale"], path, device
        self.module = spec.build(spec.options(**ckpt["model_options"]), self.scale)
        self.module.load_state_dict(ckpt["model_state"])
        self.module.eval().to(device)
        self.trained = {k: ckpt.get(k) for k in ("model", "step", "complete", "identity_network")}
        self.training_data = ckpt.get("data") or {}  # hr_size, frame, degradation it was trained on

    def weights_sha256(self):
        from benchmark.contracts.evaluator import sha256_file

        return sha256_file(self.weights_file)

    def describe(self) -> dict:
        return {**super().describe(), "trained": self.trained}

    def super_resolve(self, lr, keys):
        with torch.no_grad():
            return self.module(lr.to(self.device)).float().clamp(0, 1)


# --- training ------------------------------------------------------------------------

@dataclass
class TrainResult:
    weights: Path                      # out_dir/<model>/<model>-x<scale>.pt
    checkpoint: Path                   # out_dir/<model>/last.pt
    log: Path                          # out_dir/<model>/scalars.jsonl
    step: int
    total_steps: int
    complete: bool                     # False: stopped by max_steps (resume by calling train again)


def train(model_name: str, config_path, data_root, out_dir, device=None, max_steps: Optional[int] = None,
          scale: Optional[int] = None, seed: Optional[int] = None) -> TrainResult:
    """Train ``model_name`` as ``config_path`` says on the faces under ``data_root``.

    Resumes from ``out_dir/<model>/last.pt`` when it exists. ``max_steps`` stops once
    that many steps (counted over all stages) are done; ``scale`` and ``seed`` override data.scale
    and seed (for seed replicates of one config).
    """
    spec = trainable(model_name)
    config = load_config(config_path, {name: m.options for name, m in TRAINABLE.items()})
    if config.model != model_name:
        raise config.error("model.name", f"this config trains {config.model}, not {model_name}")
    config = with_overrides(config, scale=scale, seed=seed)
    run = _Run(spec, config, data_root, out_dir, device)
    result = run.run(max_steps)
    run.dist.leave()  # only after a run that finished: a failed rank must not wait at a barrier
    return result


class _Run:
    """One training run: the checks and set-up before the first step (``__init__``), then the
    loop (``run``: stages; ``_run_stage``: the steps of one; ``_step``: one step). Checkpoints
    are ``benchmark.training.checkpoints``; the pre-flight checks ``benchmark.training.checks``;
    the process group ``benchmark.training.distributed``."""

    def __init__(self, spec: TrainableModel, config: TrainConfig, data_root, out_dir, device):
        self.spec, self.config = spec, config
        self.scale = config.data.scale
        checks.check_stages(spec, config)
        checks.check_world(config, requested_world_size())  # before joining: every rank fails alike
        self.dist = Dist.from_env(device)
        self.device = self.dist.device(device)
        self.amp = config.mixed_precision and self.device.type in AMP_DEVICE_TYPES
        self.amp_dtype = torch.bfloat16 if config.amp_dtype == "bfloat16" else torch.float16
        if self.amp and self.amp_dtype == torch.bfloat16 and self.device.type == "cuda" \
                and not torch.cuda.is_bf16_supported():
            raise config.error("amp_dtype", f"bfloat16 is not supported by {torch.cuda.get_device_name(self.device)}")
        self.dir = Path(out_dir) / spec.name
        self.last = self.dir / "last.pt"
        self.resume = read_checkpoint(self.last, spec.architecture, self.scale, ConfigError) \
            if self.last.exists() else None
        if self.resume is not None:
            checks.check_resume(spec, config, self.resume, self.last)
        init = None
        if config.init_weights and self.resume is None:
            init = read_checkpoint(Path(config.init_weights).expanduser(), spec.architecture, self.scale, ConfigError)
            checks.check_options(spec, config, init, config.init_weights)
        self._open_data(data_root)
        self._build_model(init)

    def _open_data(self, data_root):
        from benchmark.training.facedata import FaceTrainingSet, open_training_faces, split_validation

        c = self.config
        faces = open_training_faces(data_root, c.data.frame)
        self.data = FaceTrainingSet(faces, c.data.hr_size, make_data_degradation(c.data))
        checks.check_labels(self.spec, c, self.data, faces.image_root)
        self.train_indices, self.val_indices = None, None  # None: every face trains
        held_out = ""
        if c.validation is not None:
            self.train_indices, self.val_indices = split_validation(faces, c.validation.fraction, c.seed)
            if not len(self.val_indices):
                raise DataError(f"validation.fraction {c.validation.fraction} holds out none of the "
                                f"{len(self.data)} faces in {faces.image_root} (each identity keeps at least one "
                                "training face): raise it or add faces")
            if 0 < c.validation.max_images < len(self.val_indices):  # evenly spaced over the held-out faces
                keep = np.unique(np.linspace(0, len(self.val_indices) - 1, c.validation.max_images).round())
                self.val_indices = self.val_indices[keep.astype(np.int64)]
            held_out = f" (after {len(self.data) - len(self.train_indices)} held out for validation)"
        self.n_train = len(self.data) if self.train_indices is None else len(self.train_indices)
        biggest = max(c.stage_batch_size(s) for s in c.stages)
        if self.n_train < biggest:
            raise DataError(f"{self.n_train} training faces in {faces.image_root}{held_out} are fewer than one "
                            f"batch of {biggest}")
        self.steps_per_epoch = [self.n_train // c.stage_batch_size(s) for s in c.stages]
        self.stage_steps = [s.steps if s.steps is not None else s.epochs * self.steps_per_epoch[i]
                            for i, s in enumerate(c.stages)]

    def _build_model(self, init):
        from benchmark.training.identity import identity_network_names, load_identity_network

        c, spec = self.config, self.spec
        self.identity = None
        if any(spec.stages[s.name].needs_identity_network for s in c.stages):
            if c.identity_network not in identity_network_names():
                raise c.error("identity_network", f"unknown network {c.identity_network!r} "
                              f"(known: {', '.join(identity_network_names())})")
            self.identity = load_identity_network(c.identity_network, self.data.frame, self.device)
        torch.manual_seed(c.seed)
        self.model = spec.build(c.model_options, self.scale).to(self.device)
        if spec.prepare is not None:
            spec.prepare(self.model, identity=self.identity, data=self.data, config=c, device=self.device)
        if c.sync_batchnorm:  # global-batch statistics (a no-op in a single process); same state-dict keys
            self.model = convert_sync_batchnorm(self.model)
            if self.identity is not None:
                self.identity = convert_sync_batchnorm(self.identity)
        if init is not None:
            self.model.load_state_dict(init["model_state"])
        self.dist.broadcast_module(self.model)  # the same start on every rank
        if self.identity is not None:
            self.dist.broadcast_module(self.identity)
        if self.dist.rank > 0:  # own dropout masks; rank 0 keeps the single-process stream
            torch.manual_seed(rank_seed(c.seed, self.dist.rank))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp and self.amp_dtype == torch.float16)
        self.optimisers: Dict[str, torch.optim.Optimizer] = {}  # the current stage's

    # -- the loop --
    def run(self, max_steps: Optional[int]) -> TrainResult:
        c = self.config
        if self.dist.is_main:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.dist.barrier()
        stage_index, stage_step, step, stage_state, optimiser_state = 0, 0, 0, {}, None
        if self.resume is not None:
            r = self.resume
            stage_index, stage_step, step, stage_state = r["stage_index"], r["stage_step"], r["step"], r["stage_state"]
            optimiser_state = r["optimizers"]
            self.model.load_state_dict(r["model_state"])
            if r["scaler"] and self.scaler.is_enabled():
                self.scaler.load_state_dict(r["scaler"])
            restore_rng(r, self.dist.rank, c.seed)
            log.info("%s: resuming from %s (written by %d process(es)) at step %d with %d", self.spec.name,
                     self.last, r.get("world_size", 1), step, self.dist.world_size)
        scalars = ScalarLog(self.dir, truncate_after=step) if self.dist.is_main else NoScalarLog(self.dir)
        total = sum(self.stage_steps)
        limit = total if max_steps is None else min(total, max_steps)
        bar = progress_bar(total, step, self.spec.name, self.dist.is_main)
        try:
            while stage_index < len(c.stages):
                # the stage is done (all its steps, or stopped early): the next starts afresh
                if stage_step >= self.stage_steps[stage_index] or stage_state.get("early_stopped") is not None:
                    stage_index, stage_step, stage_state, optimiser_state = stage_index + 1, 0, {}, None
                    self.optimisers = {}
                    continue
                if step >= limit:
                    break
                stage_step, step = self._run_stage(stage_index, stage_step, step, stage_state, optimiser_state,
                                                   limit, scalars, bar)
                optimiser_state = None
        finally:
            bar.close()
            scalars.close()
        if self.resume is None or step != self.resume["step"]:
            save_checkpoint(self, stage_index, stage_step, step, stage_state)
        complete = stage_index >= len(c.stages)
        weights = save_weights(self, step, complete)
        return TrainResult(weights, self.last, scalars.path, step, total, complete)

    def _start_stage(self, stage_index, stage_state, optimiser_state):
        """The stage's context and optimisers (restored from ``optimiser_state`` when resuming)."""
        c, stage = self.config, self.config.stages[stage_index]
        spec = self.spec.stages[stage.name]
        ctx = StageContext(self.model, self.identity if spec.needs_identity_network else None, stage,
                           self.data.frame, self.scale, self.device, self.data.faces, stage_state, c.seed)
        if self.dist.enabled:
            ctx.global_batch = c.stage_batch_size(stage)
            ctx.batch_offset = self.dist.rank * (ctx.global_batch // self.dist.world_size)
        groups = self._make_optimisers(spec, stage)
        self.optimisers = {name: opt for name, (opt, _, _) in groups.items()}
        if optimiser_state:
            for name, opt in self.optimisers.items():
                opt.load_state_dict(optimiser_state[name])
        if spec.setup is not None:  # must not draw from the global RNG (resumed runs stay identical)
            spec.setup(ctx)
        return spec, ctx, groups

    def _loader(self, stage_index, start, stop):
        from benchmark.training.facedata import StageBatches

        c = self.config
        batches = StageBatches(self.n_train, c.stage_batch_size(c.stages[stage_index]), c.seed, stage_index,
                               start, stop, c.data.flip, self.train_indices)
        if self.dist.enabled:  # the rank's share of the same global batch
            batches = RankShare(batches, self.dist.rank, self.dist.world_size)
        return torch.utils.data.DataLoader(
            self.data, batch_sampler=batches, num_workers=c.data.workers, pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(c.seed))  # keeps the global RNG untouched

    def _run_stage(self, stage_index, stage_step, step, stage_state, optimiser_state, limit, scalars, bar):
        """Steps of one stage from ``stage_step`` until it ends or ``limit`` global steps;
        ``optimiser_state``: the resumed checkpoint's optimisers, when resuming inside it."""
        c, stage = self.config, self.config.stages[stage_index]
        spec, ctx, groups = self._start_stage(stage_index, stage_state, optimiser_state)
        n_steps, per_epoch = self.stage_steps[stage_index], self.steps_per_epoch[stage_index]
        es = stage.early_stopping
        es_interval = None if es is None else es.every * (per_epoch if es.unit == "epochs" else 1)
        stop = min(n_steps, stage_step + (limit - step))
        self.model.train()
        window = LossWindow()
        for item in self._loader(stage_index, stage_step, stop):
            batch = Batch(item["lr"].to(self.device, non_blocking=True), item["hr"].to(self.device, non_blocking=True),
                          item["label"].to(self.device) if self.data.has_labels else None, item["index"])
            lr_now = _learning_rate(stage, stage_step, n_steps, per_epoch)
            ctx.step = stage_step
            terms, total = self._step(spec, ctx, groups, batch, lr_now, step, scalars)
            stage_step, step = stage_step + 1, step + 1
            window.add(terms, total, len(batch.hr) * self.dist.world_size)
            bar.update(1)
            stopped = False
            if es_interval is not None and stage_step % es_interval == 0:
                stopped = self._early_stopping(spec, ctx, stage_state, stage_step, step, scalars)
            if step % c.log_every == 0 or stage_step == stop or stopped:
                record = window.flush(step, stage.name, lr_now, self.dist.mean_terms)
                if not self.amp and not math.isfinite(record["loss"]):
                    raise FhbenchError(f"{self.spec.name}: the loss became {record['loss']} at step {step} "
                                       f"(stage {stage.name}); lower the learning rate")
                scalars.write(record)
                bar.set_postfix(loss=f"{record['loss']:.4g}", stage=stage.name)
            if step % c.checkpoint_every == 0:
                save_checkpoint(self, stage_index, stage_step, step, stage_state)
            if stopped:
                log.info("%s: stage %s stopped early at its step %d (step %d): no validation gain in %d "
                         "evaluations", self.spec.name, stage.name, stage_step, step, es.patience)
                break
        return stage_step, step

    def _step(self, spec: StageSpec, ctx: StageContext, groups, batch: Batch, lr_now: float, step: int, scalars):
        """One optimiser step of every part on ``batch`` (this rank's share of the global batch):
        the loss terms, each part's gradient of its own terms, averaged over the ranks, then
        the optimisers; returns (terms, weighted total) of this rank."""
        stage = ctx.stage
        for opt in self.optimisers.values():
            for g in opt.param_groups:
                g["lr"] = lr_now
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            terms = spec.step(ctx, batch)
        if set(terms) != set(spec.losses):
            raise RuntimeError(f"stage {stage.name} of {self.spec.name} returned losses {sorted(terms)}, "
                               f"declared {sorted(spec.losses)}")
        weights = ctx.state.get("loss_weights") or dict(stage.loss_weights)
        if any(w == AUTO for w in weights.values()):  # on the global batch's mean of each term
            values = self.dist.mean_terms({k: float(v.detach()) for k, v in terms.items()})
            weights = balance_weights(weights, values, spec.groups())
            ctx.state["loss_weights"] = weights
            scalars.write({"step": step + 1, "stage": stage.name, "balanced_weights": weights, "terms": values})
            log.info("%s stage %s: balanced loss weights %s on %s", self.spec.name, stage.name, weights, values)
        group_losses = [sum(weights[t] * terms[t] for t in group_terms) for _, _, group_terms in groups.values()]
        every_param = []
        for i, ((_, params, _), loss) in enumerate(zip(groups.values(), group_losses)):
            grads = torch.autograd.grad(self.scaler.scale(loss), params, retain_graph=i + 1 < len(groups),
                                        allow_unused=True)
            for p, g in zip(params, grads):
                p.grad = g
            every_param += params
        self.dist.all_reduce_gradients(every_param)
        for opt in self.optimisers.values():
            self.scaler.step(opt)
        self.scaler.update()
        self.dist.broadcast_module(self.model, buffers_only=True)  # running statistics: rank 0's
        if self.identity is not None:
            self.dist.broadcast_module(self.identity, buffers_only=True)
        return terms, sum(group_losses)

    def _early_stopping(self, spec, ctx, stage_state, stage_step, step, scalars) -> bool:
        from benchmark.training.validation import early_stopping

        return early_stopping(self, spec, ctx, stage_state, stage_step, step, scalars)

    def _make_optimisers(self, spec: StageSpec, stage: StageConfig):
        """{submodule: (optimiser, params, loss terms)}; the parts must not overlap."""
        out, seen = {}, set()
        for name, terms in spec.groups().items():
            params = [p for p in self.model.get_submodule(name).parameters() if p.requires_grad]
            if seen & {id(p) for p in params}:
                raise RuntimeError(f"{self.spec.name}: optimised parts of stage {stage.name} share parameters")
            seen |= {id(p) for p in params}
            if stage.optimizer == "adam":
                opt = torch.optim.Adam(params, lr=stage.lr, betas=stage.betas, weight_decay=stage.weight_decay)
            else:
                opt = torch.optim.SGD(params, lr=stage.lr, momentum=stage.momentum, weight_decay=stage.weight_decay)
            out[name] = (opt, params, terms)
        return out


def balance_weights(weights: Dict[str, object], terms: Dict[str, float],
                    groups: Dict[str, Tuple[str, ...]]) -> Dict[str, float]:
    """Resolve ``auto`` weights: within each optimised group, an auto term's weight makes it
    equal the sum of the group's fixed-weight terms on this batch (mse 0.02 with weight 1
    and fr 0.5 on auto -> fr weight 0.04: 0.02 + 0.02, a 50/50 split)."""
    out = dict(weights)
    for group_terms in groups.values():
        fixed = sum(weights[t] * terms[t] for t in group_terms if weights[t] != AUTO)
        for t in group_terms:
            if weights[t] == AUTO:
                if not (terms[t] > 0 and math.isfinite(terms[t])):
                    raise DataError(f"cannot balance the loss {t}: it is {terms[t]} on the first batch "
                                    "(give its weight as a number)")
                out[t] = fixed / terms[t]
    return out


def _learning_rate(stage: StageConfig, k: int, n_steps: int, steps_per_epoch: int = 1) -> float:
    """The lr at step k (from 0) of a stage of n_steps; ``unit: epochs`` counts epochs of
    ``steps_per_epoch`` steps (the epoch of step k is k // steps_per_epoch)."""
    s = stage.schedule
    unit = k // steps_per_epoch if s.unit == "epochs" else k
    if s.kind == "step":
        return stage.lr * s.gamma ** (unit // s.every)
    if s.kind == "multistep":  # x gamma at the end of each milestone: from unit m on
        return stage.lr * s.gamma ** sum(unit >= m for m in s.milestones)
    if s.kind == "cosine":
        return s.final_lr + (stage.lr - s.final_lr) * 0.5 * (1 + math.cos(math.pi * k / max(1, n_steps)))
    return stage.lr
