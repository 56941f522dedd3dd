"""Sample images for figures: LR | each model's SR | HR for a few faces of a protocol.

The faces are read (or MTCNN-aligned) as the runner reads them, degraded with the
protocol's degradation at the scale asked for, and super-resolved by each model through
the same adapter path as a run (``create_model``, ``check_compatible``, the bicubic
upsampling for models that want it, ``check_sr_batch``). Nothing is stored.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from .adapters import check_sr_batch, create_model
from .degrade import make_degradation, upsample_bicubic
from .errors import ConfigError, DataError, FhbenchError
from .leaderboard import HR_MODEL
from .protocols import load_protocol
from .registry import TASKS
from .runner import RunOptions, StageTimer, HRSource
from .store import ResultStore

N_DEFAULT_IMAGES = 4


@dataclass
class SampleGrid:
    """``images[i, j]``: image i (``keys[i]``) in column j (``columns[j]``), (3, H, W) RGB in [0, 1];
    column 0 is the LR face enlarged by pixel replication, the last column the HR face."""

    protocol: str
    scale: int
    keys: List[str]
    columns: List[str]
    images: np.ndarray
    skipped: Dict[str, str] = field(default_factory=dict)  # model label: why it is not shown


def stored_models(store: ResultStore, protocol: str, scale: Optional[int] = None,
                  evaluator: Optional[str] = None) -> Dict[str, str]:
    """{row name: model spec} of the stored SR runs of ``protocol`` at ``scale`` (default:
    the protocol's), from the spec each run's manifest recorded (the name when none)."""
    scale = scale or load_protocol(protocol).default_scale
    runs = store.runs(protocol=protocol, scale=scale, evaluator=evaluator)
    if not runs:
        raise FhbenchError(f"no stored runs of {protocol} at x{scale} to take models from; pass --models")
    return {r.model: r.manifest.get("model", {}).get("spec", r.model) for r in runs if r.model != HR_MODEL}


def parse_weights(items: Sequence[str]) -> Dict[str, str]:
    """``["MODEL=FILE", ...]`` -> {MODEL: FILE}."""
    out = {}
    for item in items:
        model, sep, path = item.partition("=")
        if not sep or not model or not path:
            raise ConfigError(f"--weights {item!r}: expected MODEL=FILE")
        out[model] = path
    return out


def render_samples(protocol: str, models: Dict[str, str], images: Optional[Sequence[Union[int, str]]] = None,
                   scale: Optional[int] = None, data_root="data", weights: Optional[Dict[str, str]] = None,
                   device: str = "cpu", clamp: bool = False, cache_dir: Optional[str] = None,
                   skip_unavailable: bool = False) -> SampleGrid:
    """LR | models | HR for ``images`` of ``protocol``.

    ``models`` maps a column label to a ``--model`` spec; ``weights`` maps a label to its
    weights file. ``images`` are indices into the protocol's face list or relative paths
    (default: ``N_DEFAULT_IMAGES`` evenly spread over the list). With ``skip_unavailable``
    a model that cannot be built or fails is left out and named in ``skipped``.
    """
    spec = load_protocol(protocol)
    scale = scale or spec.default_scale
    if scale not in spec.scales:
        raise ConfigError(f"protocol {protocol} runs at scales {spec.scales}, not {scale}")
    if not models:
        raise FhbenchError("sample grids need at least one model (--models a,b)")
    faces = TASKS.get(spec.task)(spec, data_root).faces()
    idx = pick_images(faces.relpaths, images)
    keys = [faces.relpaths[i] for i in idx]
    hr_source = HRSource(faces, spec.hr_size, RunOptions(model="", protocol=protocol, data_root=str(data_root),
                                            cache_dir=cache_dir, device=device), StageTimer())
    hr = hr_source.load(idx)
    degradation = make_degradation(spec.degradation, scale=scale, **spec.degradation_options)
    lr = degradation(hr)
    columns, shown, skipped = [f"LR (×{scale})"], [_enlarge(lr, hr.shape[-2:])], {}
    for label, model_spec in models.items():
        try:
            sr = _super_resolve(model_spec, lr, hr, keys, scale, (weights or {}).get(label), device, clamp)
        except FhbenchError as err:
            if not skip_unavailable:
                raise
            skipped[label] = str(err)
            continue
        if sr is not None:
            columns.append(label)
            shown.append(sr)
    columns.append("HR")
    shown.append(hr)
    return SampleGrid(protocol, scale, keys, columns, np.stack(shown, axis=1), skipped)


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


def _super_resolve(model_spec, lr, hr, keys, scale, weights, device, clamp) -> Optional[np.ndarray]:
    """The model's SR of ``lr``, or None for the hr reference (the HR column shows it)."""
    model = create_model(model_spec, scale=scale, weights=weights, clamp=clamp, device=device)
    if model.is_reference_hr:
        return None
    model.check_compatible(lr.shape[-2:], hr.shape[-2:], scale)
    x = upsample_bicubic(lr, hr.shape[-2:]) if model.wants_upsampled_input else lr
    out = model.super_resolve(torch.from_numpy(np.ascontiguousarray(x)), keys)
    return check_sr_batch(model.name, out, hr.shape, keys=keys)


def _enlarge(lr: np.ndarray, hr_hw) -> np.ndarray:
    """Nearest-neighbour enlargement to the HR size (pixel replication shows the LR pixels)."""
    h, w = lr.shape[-2:]
    rows = np.arange(hr_hw[0]) * h // hr_hw[0]
    cols = np.arange(hr_hw[1]) * w // hr_hw[1]
    return lr[..., rows[:, None], cols[None, :]]

