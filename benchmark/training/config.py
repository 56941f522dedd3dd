"""Training configs: one YAML file -> a tree of dataclasses, checked before any training step.

Design notes: docs/TRAINING.md, section `benchmark/training/config.py`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Mapping, Optional, Tuple, Union


from benchmark.errors import ConfigError, FhbenchError
from benchmark.typed_yaml import convert, read_yaml_mapping

AUTO = "auto"


@dataclass
class ScheduleConfig:
    kind: Literal["constant", "step", "multistep", "cosine"] = "constant"
    every: int = 0           # step: multiply the lr by gamma every `every` units of the stage
    gamma: float = 0.1
    final_lr: float = 0.0    # cosine: the lr reached at the stage's last step
    milestones: List[int] = field(default_factory=list)  # multistep: x gamma at the end of each
    unit: Literal["steps", "epochs"] = "steps"           # what every and milestones count


@dataclass
class EarlyStoppingConfig:
    metrics: List[str]       # validation metrics of the stage kind; the stage stops when none improves
    patience: int = 10       # evaluations in a row without any metric improving
    every: int = 1           # evaluate every `every` units of the stage
    unit: Literal["steps", "epochs"] = "epochs"
    min_delta: float = 0.0   # an improvement must exceed this


@dataclass
class StageConfig:
    name: str                # one of the model's stage kinds (e.g. mse, fr-finetune)
    steps: Optional[int] = None
    epochs: Optional[int] = None
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-4
    betas: Tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9    # sgd only
    weight_decay: float = 0.0
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss_weights: Dict[str, Union[float, Literal["auto"]]] = field(default_factory=dict)
    batch_size: Optional[int] = None   # null: the config's batch_size
    early_stopping: Optional[EarlyStoppingConfig] = None


@dataclass
class ValidationConfig:
    fraction: float = 0.1    # of each identity's faces (of all faces without labels) held out of training
    max_images: int = 0      # evaluate on at most this many of them, evenly spaced (0: all)
    batch_size: int = 0      # images per validation batch (0: the config's batch_size)


MAX_SEED = 2 ** 63 - 1  # torch.manual_seed takes up to 2**64 - 1; rank_seed works modulo 2**63


@dataclass
class DataConfig:
    hr_size: Tuple[int, int] = (112, 96)
    scale: int = 4
    degradation: str = "bicubic"          # a benchmark.degrade name
    degradation_params: Dict[str, Union[bool, int, float]] = field(default_factory=dict)
    frame: str = "sphereface-112x96"      # the template the training images are aligned to
    flip: bool = True                     # random horizontal flips
    workers: int = 0                      # DataLoader worker processes


@dataclass
class TrainConfig:
    model: str
    model_options: Any                    # the model's own options dataclass
    stages: List[StageConfig]
    data: DataConfig = field(default_factory=DataConfig)
    batch_size: int = 16
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3             # periodic checkpoints kept besides last.pt (0: all)
    log_every: int = 50
    seed: int = 0
    identity_network: str = "auto"        # see benchmark.training.identity.load_identity_network
    mixed_precision: bool = True          # used on CUDA only
    amp_dtype: Literal["float16", "bfloat16"] = "float16"  # autocast dtype (float16 with a GradScaler)
    sync_batchnorm: bool = False          # under torch.distributed: BatchNorm on the global batch
    init_weights: Optional[str] = None    # start from these weights (same architecture and scale)
    validation: Optional[ValidationConfig] = None  # faces held out of training (for early stopping)
    source: Path = Path("?")              # the YAML file (not a key)

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {message}")

    def stage_batch_size(self, stage: StageConfig) -> int:
        return stage.batch_size if stage.batch_size is not None else self.batch_size

    def to_dict(self) -> dict:
        """Plain JSON-like dict (what checkpoints record)."""
        out = dataclasses.asdict(self)
        out["source"] = str(self.source)
        return _plain(out)


def load_config(path, options_types: Mapping[str, type]) -> TrainConfig:
    """Read and check a training config. ``options_types`` maps each trainable model name
    to the dataclass of its ``model:`` options."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"training config {path} does not exist")
    return parse_config(read_yaml_mapping(path), path, options_types)


def parse_config(raw: dict, path: Path, options_types: Mapping[str, type]) -> TrainConfig:
    raw = dict(raw)
    model = raw.pop("model", None)
    if not isinstance(model, dict) or "name" not in model:
        raise ConfigError(f"{path}: model: needs a mapping with at least 'name' (e.g. model: {{name: srresnet}})")
    model = dict(model)
    name = model.pop("name")
    if name not in options_types:
        raise ConfigError(f"{path}: model.name: unknown trainable model {name!r} "
                          f"(known: {', '.join(sorted(options_types))})")
    options = convert(model, options_types[name], "model", path)
    if "source" in raw or "model_options" in raw:
        key = "source" if "source" in raw else "model_options"
        raise ConfigError(f"{path}: {key}: unknown key")
    config = convert(raw, TrainConfig, "", path, fixed={"model": name, "model_options": options,
                                                         "source": path})
    _check_values(config)
    return config


def _check_values(c: TrainConfig) -> None:
    for key in ("batch_size", "checkpoint_every", "log_every"):
        if getattr(c, key) < 1:
            raise c.error(key, f"must be >= 1, got {getattr(c, key)}")
    if not 0 <= c.seed <= MAX_SEED:
        raise c.error("seed", f"must be between 0 and {MAX_SEED}, got {c.seed}")
    if c.keep_checkpoints < 0:
        raise c.error("keep_checkpoints", "must be >= 0")
    if not c.stages:
        raise c.error("stages", "needs at least one stage")
    for i, s in enumerate(c.stages):
        key = f"stages[{i}]"
        if (s.steps is None) == (s.epochs is None):
            raise c.error(f"{key}.steps", "give exactly one of steps or epochs")
        length = s.steps if s.steps is not None else s.epochs
        if length < 1:
            raise c.error(f"{key}.{'steps' if s.steps is not None else 'epochs'}", "must be >= 1")
        if s.lr <= 0:
            raise c.error(f"{key}.lr", f"must be > 0, got {s.lr}")
        if s.schedule.kind == "step" and s.schedule.every < 1:
            raise c.error(f"{key}.schedule.every", "a step schedule needs every >= 1")
        if s.schedule.kind == "multistep":
            m = s.schedule.milestones
            if not m or min(m) < 1 or any(b <= a for a, b in zip(m, m[1:])):
                raise c.error(f"{key}.schedule.milestones", f"a multistep schedule needs increasing "
                              f"milestones >= 1, got {m}")
        if s.batch_size is not None and s.batch_size < 1:
            raise c.error(f"{key}.batch_size", f"must be >= 1, got {s.batch_size}")
        es = s.early_stopping
        if es is not None:
            if c.validation is None:
                raise c.error(f"{key}.early_stopping", "needs held-out faces: add a validation: block "
                              "(e.g. validation: {fraction: 0.1})")
            if not es.metrics:
                raise c.error(f"{key}.early_stopping.metrics", "needs at least one metric")
            for name in ("patience", "every"):
                if getattr(es, name) < 1:
                    raise c.error(f"{key}.early_stopping.{name}", f"must be >= 1, got {getattr(es, name)}")
            if es.min_delta < 0:
                raise c.error(f"{key}.early_stopping.min_delta", f"must be >= 0, got {es.min_delta}")
    v = c.validation
    if v is not None:
        if not 0 < v.fraction < 1:
            raise c.error("validation.fraction", f"must be between 0 and 1, got {v.fraction}")
        if v.max_images < 0 or v.batch_size < 0:
            key = "max_images" if v.max_images < 0 else "batch_size"
            raise c.error(f"validation.{key}", "must be >= 0")
    d = c.data
    if d.scale < 1:
        raise c.error("data.scale", "must be >= 1")
    if min(d.hr_size) < 1 or d.hr_size[0] % d.scale or d.hr_size[1] % d.scale:
        raise c.error("data.hr_size", f"{d.hr_size[0]}x{d.hr_size[1]} is not divisible by scale {d.scale}")
    from benchmark.faces.templates import TEMPLATES

    if d.frame not in TEMPLATES:
        raise c.error("data.frame", f"unknown template {d.frame!r} (known: {', '.join(TEMPLATES)})")
    try:
        make_data_degradation(d)
    except FhbenchError as err:
        raise c.error("data.degradation", str(err)) from None


def with_overrides(config: TrainConfig, scale: Optional[int] = None, seed: Optional[int] = None) -> TrainConfig:
    """``config`` with the command line's ``--scale`` and ``--seed`` in place of data.scale and
    seed, checked as the YAML values are (checkpoints record the config as it ran)."""
    if scale is not None:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, scale=scale))
    if seed is not None:
        if not 0 <= seed <= MAX_SEED:
            raise ConfigError(f"--seed: must be between 0 and {MAX_SEED}, got {seed}")
        config = dataclasses.replace(config, seed=seed)
    _check_values(config)
    return config


def make_data_degradation(data: DataConfig):
    """The configured degradation (``benchmark.degrade``) at the configured scale."""
    from benchmark.contracts.degradation import make_degradation

    return make_degradation(data.degradation, scale=data.scale, **data.degradation_params)


def _plain(x):
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    return x
