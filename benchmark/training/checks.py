"""The trainer's checks that run before the first step: the config against the model's
stage kinds, a checkpoint's model options and stages against the config, the data against
what the stages need, the world size against the batch sizes. Each failure raises a
``ConfigError`` or ``DataError`` naming the culprit (the CLI prints it as one line)."""
from __future__ import annotations

import dataclasses

from benchmark.errors import ConfigError, DataError
from benchmark.training.config import AUTO, TrainConfig


def check_stages(spec, c: TrainConfig) -> None:
    """Stage names, loss weights and early-stopping metrics of ``c`` against ``spec``'s kinds."""
    for i, stage in enumerate(c.stages):
        if stage.name not in spec.stages:
            raise c.error(f"stages[{i}].name", f"{spec.name} has no stage {stage.name!r} "
                          f"(its stages: {', '.join(spec.stages)})")
        kind = spec.stages[stage.name]
        _check_loss_weights(c, i, stage, kind)
        if stage.early_stopping is not None:
            known = kind.metrics or {}
            if kind.validate is None or not known:
                raise c.error(f"stages[{i}].early_stopping", f"stage {stage.name} of {spec.name} has no "
                              "validation metrics to stop on")
            for metric in stage.early_stopping.metrics:
                if metric not in known:
                    raise c.error(f"stages[{i}].early_stopping.metrics", f"stage {stage.name} has no "
                                  f"validation metric {metric!r} (its metrics: {', '.join(known)})")


def _check_loss_weights(c: TrainConfig, i: int, stage, kind) -> None:
    terms = kind.losses
    for term in stage.loss_weights:
        if term not in terms:
            raise c.error(f"stages[{i}].loss_weights.{term}",
                          f"stage {stage.name} has no loss {term!r} (its losses: {', '.join(terms)})")
    for term in terms:
        if term not in stage.loss_weights:
            raise c.error(f"stages[{i}].loss_weights", f"no weight for the loss {term!r} of "
                          f"stage {stage.name} (give a number or auto)")
    for group_terms in kind.groups().values():
        if all(stage.loss_weights[t] == AUTO for t in group_terms):
            raise c.error(f"stages[{i}].loss_weights", f"the losses {', '.join(group_terms)} are all "
                          "auto: auto balances a loss against fixed-weight ones")


def check_options(spec, c: TrainConfig, ckpt: dict, where) -> None:
    """The checkpoint ``ckpt`` (read from ``where``) was trained with ``c``'s model options."""
    mine = dataclasses.asdict(c.model_options)
    try:  # options added since the checkpoint was written take their defaults (today's behaviour)
        theirs = dataclasses.asdict(spec.options(**ckpt["model_options"]))
    except TypeError:
        theirs = ckpt["model_options"]
    if theirs != mine:
        raise ConfigError(f"{where} was trained with model options {ckpt['model_options']}, "
                          f"but {c.source} asks for {mine}")


def check_resume(spec, c: TrainConfig, ckpt: dict, where) -> None:
    """``ckpt`` (``where``) can be resumed with ``c``: same model options, seed and stages, and
    optimiser states for every optimised part of its stage (full states: any world size)."""
    check_options(spec, c, ckpt, where)
    seed = ckpt["config"].get("seed", 0)
    if seed != c.seed:  # batches, flips and draws are functions of the seed: a mixed run is neither seed's
        raise ConfigError(f"{where} is a run with seed {seed}, but {c.source} asks for seed {c.seed} "
                          "(--seed); resume with the same seed or use another output folder")
    before = [s["name"] for s in ckpt["config"]["stages"]]
    now = [s.name for s in c.stages]
    if before != now:
        raise ConfigError(f"{where} is a run with stages {before}, but {c.source} has "
                          f"stages {now}; resume with the same stages or use another output folder")
    index, optimisers = ckpt.get("stage_index", 0), ckpt.get("optimizers") or {}
    if index < len(c.stages) and optimisers:
        want = set(spec.stages[c.stages[index].name].groups())
        if set(optimisers) != want:
            raise ConfigError(f"{where} holds optimiser states for {sorted(optimisers)} (written by "
                              f"{ckpt.get('world_size', 1)} process(es)), but stage {c.stages[index].name} "
                              f"optimises {sorted(want)}: resume it with the code that wrote it, or start afresh")


def check_labels(spec, c: TrainConfig, data, image_root) -> None:
    for i, stage in enumerate(c.stages):
        if spec.stages[stage.name].needs_identity_labels and not data.has_labels:
            raise DataError(f"stage {i} ({stage.name}) of {spec.name} needs identity labels, but the faces "
                            f"in {image_root} have none (lay them out as <identity>/<image>)")


def check_world(c: TrainConfig, world_size: int) -> None:
    """Every global batch (the config's and each stage's) splits evenly over the processes."""
    if world_size <= 1:
        return
    from benchmark.training.distributed import check_world as split_check

    sizes = [("batch_size", c.batch_size)]
    sizes += [(f"stages[{i}].batch_size", s.batch_size) for i, s in enumerate(c.stages) if s.batch_size is not None]
    split_check(world_size, sizes, c.source)
