"""Sample images for figures: LR | each model's SR | HR for a few faces of a protocol.

The faces go through a run's per-image pipeline (``engine/pipeline.py``): read (or
MTCNN-aligned) by ``HRSource``, degraded with the protocol's degradation at the scale asked
for (or, for a protocol with fixed LR sizes, at the LR size of the ``level`` asked for), and
super-resolved by each model as a run does it (``create_model``, ``check_compatible``, the
bicubic upsampling for models that want it, ``check_sr_batch``). Nothing is stored.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from benchmark.contracts.degradation import make_degradation
from benchmark.engine.pipeline import HRSource, ImagePipeline, Level, degrade
from benchmark.contracts.model_adapters import create_model
from benchmark.errors import ConfigError, DataError, FhbenchError
from benchmark.engine.query import describe_level
from benchmark.reporting.leaderboard import HR_MODEL
from benchmark.engine.levels import level_size, resolve_level
from benchmark.engine.protocols import load_protocol
from benchmark.registry import TASKS
from benchmark.engine.store import SIZES_LEVEL, ResultStore, level_name

N_DEFAULT_IMAGES = 4


@dataclass
class SampleGrid:
    """``images[i, j]``: image i (``keys[i]``) in column j (``columns[j]``), (3, H, W) RGB in [0, 1];
    column 0 is the LR face enlarged by pixel replication, the last column the HR face."""

    protocol: str
    scale: Optional[int]        # None for a level of a protocol with fixed LR sizes
    keys: List[str]
    columns: List[str]
    images: np.ndarray
    skipped: Dict[str, str] = field(default_factory=dict)  # model label: why it is not shown
    level: Optional[str] = None  # the LR size shown ("16x14"), for a protocol with fixed LR sizes


@dataclass(frozen=True)
class ModelSpec:
    """How to rebuild a model for a sample grid: its ``--model`` spec and the run options
    that change its output (``--upsampled-input`` for user models, ``--clamp``)."""

    spec: str
    upsampled_input: bool = False
    clamp: bool = False
    weights_sha256: Optional[str] = None  # a stored run's: the grid must show the model that was scored


def stored_models(store: ResultStore, protocol: str, scale: Optional[int] = None,
                  evaluator: Optional[str] = None) -> Dict[str, ModelSpec]:
    """{row name: ModelSpec} of the stored SR runs of ``protocol`` at ``scale`` (default: the
    protocol's; a protocol with fixed LR sizes has one level, ``sizes``), from each run's
    manifest (the row name as the spec when the manifest has none)."""
    spec = load_protocol(protocol)
    level = SIZES_LEVEL if spec.lr_sizes else level_name(spec.default_scale if scale is None else scale)
    runs = [r for r in store.runs(protocol=protocol, level=level, evaluator=evaluator) if not r.reference]
    if not runs:
        raise FhbenchError(f"no stored runs of {protocol} at {describe_level(level)} to take models from; "
                           "pass --models")
    out = {}
    for r in runs:
        if r.model == HR_MODEL:
            continue
        m = r.manifest.get("model", {})
        out[r.model] = ModelSpec(m.get("spec", r.model), bool(m.get("wants_upsampled_input", False)),
                                 bool(m.get("clamp", False)), m.get("weights_sha256"))
    return out


def parse_weights(items: Sequence[str]) -> Dict[str, str]:
    """``["MODEL=FILE", ...]`` -> {MODEL: FILE}."""
    out = {}
    for item in items:
        model, sep, path = item.partition("=")
        if not sep or not model or not path:
            raise ConfigError(f"--weights {item!r}: expected MODEL=FILE")
        out[model] = path
    return out


def render_samples(protocol: str, models: Dict[str, Union[str, ModelSpec]],
                   images: Optional[Sequence[Union[int, str]]] = None,
                   scale: Optional[int] = None, data_root="data", weights: Optional[Dict[str, str]] = None,
                   device: str = "cpu", clamp: bool = False, cache_dir: Optional[str] = None,
                   skip_unavailable: bool = False, level: Optional[str] = None) -> SampleGrid:
    """LR | models | HR for ``images`` of ``protocol``.

    ``models`` maps a column label to a ``--model`` spec or a ``ModelSpec``; ``weights``
    maps a label to its weights file. ``images`` are indices into the protocol's face list
    or relative paths (default: ``N_DEFAULT_IMAGES`` evenly spread over the list). A
    protocol with fixed LR sizes needs ``level`` (its bicubic degradation to that size, as a
    run does); one with scales uses ``scale`` (default: the protocol's). With
    ``skip_unavailable`` a model that cannot be built or fails (with any exception: the report
    must not die of one user model) is left out and named in ``skipped``.
    """
    spec = load_protocol(protocol)
    level = resolve_level(spec, level, scale)
    if level is not None:
        lr_size = level_size(spec, level)
        degradation = make_degradation(spec.degradation, size=tuple(lr_size), **spec.degradation_options)
        scale, model_scale, lr_column = None, None, f"LR ({lr_size[0]}×{lr_size[1]})"
    else:
        scale = scale or spec.default_scale
        if scale not in spec.scales:
            raise ConfigError(f"protocol {protocol} runs at scales {spec.scales}, not {scale}")
        degradation = make_degradation(spec.degradation, scale=scale, **spec.degradation_options)
        model_scale, lr_column = scale, f"LR (×{scale})"
    if not models:
        raise FhbenchError("sample grids need at least one model (--models a,b)")
    faces = TASKS.get(spec.task)(spec, data_root).faces()
    idx = pick_images(faces.relpaths, images)
    keys = [faces.relpaths[i] for i in idx]
    hr = HRSource(faces, spec.hr_size, cache_dir, device).load(idx)
    level_run = Level(level or f"x{scale}", degradation)
    lr = degrade(degradation, hr, faces.image_keys(idx))
    columns, shown, skipped = [lr_column], [_enlarge(lr, hr.shape[-2:])], {}
    for label, model_spec in models.items():
        if not isinstance(model_spec, ModelSpec):
            model_spec = ModelSpec(model_spec, clamp=clamp)
        try:
            sr = _super_resolve(label, model_spec, level_run, hr, idx, keys, faces, model_scale,
                                (weights or {}).get(label), device)
        except Exception as err:  # noqa: BLE001 - a user model may raise anything; the report goes on
            if not skip_unavailable:
                raise
            skipped[label] = str(err) if isinstance(err, FhbenchError) else f"{type(err).__name__}: {err}"
            continue
        if sr is not None:
            columns.append(label)
            shown.append(sr)
    columns.append("HR")
    shown.append(hr)
    return SampleGrid(protocol, scale, keys, columns, np.stack(shown, axis=1), skipped, level)


def pick_images(relpaths: Sequence[str], images) -> List[int]:
    n = len(relpaths)
    if not images:
        return sorted(set(np.linspace(0, n - 1, min(N_DEFAULT_IMAGES, n)).round().astype(int).tolist()))
    where = {p: i for i, p in enumerate(relpaths)}
    out = []
    for item in images:
        if isinstance(item, str) and not item.lstrip("-").isdigit():
            if item not in where:
                raise DataError(f"image {item!r} is not in the protocol's face list (e.g. {relpaths[0]})")
            out.append(where[item])
        else:
            i = int(item)
            if not 0 <= i < n:
                raise DataError(f"image index {i} is outside the protocol's {n} faces (0..{n - 1})")
            out.append(i)
    return out


def _super_resolve(label, model_spec: ModelSpec, level, hr, idx, names, faces, scale, weights,
                   device) -> Optional[np.ndarray]:
    """The model's SR of the faces at ``level``, or None for the hr reference (the HR column
    shows it). ``scale`` is None for a fixed LR size (the runner builds those models without one)."""
    model = create_model(model_spec.spec, scale=scale, weights=weights, clamp=model_spec.clamp, device=device,
                         upsampled_input=model_spec.upsampled_input)
    want = model_spec.weights_sha256
    got = model.weights_sha256() if want else None  # hashes the file: once
    if want and got != want:
        raise ConfigError(f"{label}: the weights loaded ({weights or 'the default location'}) are not those its "
                          f"stored run was scored with (SHA256 {str(got)[:12]}..., the run's "
                          f"{want[:12]}...); pass --weights {label}=FILE with that run's file")
    if model.pinned_degradation == "none":  # SR = HR: the HR column shows it
        return None
    model.check_compatible(level.degradation.lr_size(hr.shape[-2:]), hr.shape[-2:], scale)
    pipeline = ImagePipeline(model, batch_size=max(1, len(idx)))
    return pipeline.super_resolve(pipeline.model_input(level, hr, faces.image_keys(idx)), hr.shape, idx, names)


def _enlarge(lr: np.ndarray, hr_hw) -> np.ndarray:
    """Nearest-neighbour enlargement to the HR size (pixel replication shows the LR pixels)."""
    h, w = lr.shape[-2:]
    rows = np.arange(hr_hw[0]) * h // hr_hw[0]
    cols = np.arange(hr_hw[1]) * w // hr_hw[1]
    return lr[..., rows[:, None], cols[None, :]]

